"""Detection + semantic fusion (Panoptic FPN / EfficientPS / YOLO-seg), case by case."""

from __future__ import annotations

import pytest
import torch

from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import FusionInputError
from panoptic_ros.fusion.detection_semantic import (
    Detections,
    DetectionSemanticParams,
    fuse_detection_semantic,
    instance_masks,
    paste_order_keep,
)

# classes: 0 person (thing), 1 car (thing), 2 road (stuff), 3 sky (stuff)
THINGS = [0, 1]
H, W = 20, 30
ON, OFF = 10.0, -10.0


def semantic_map(top: int = 3, bottom: int = 2, split: int = 10) -> torch.Tensor:
    """Logits: class ``top`` above row ``split``, class ``bottom`` below."""
    logits = torch.zeros(4, H, W)
    logits[top, :split] = 5.0
    logits[bottom, split:] = 5.0
    return logits


def box_mask(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.full((H, W), OFF)
    mask[y0:y1, x0:x1] = ON
    return mask


def detections(*items: tuple[tuple[int, int, int, int], float, int]) -> Detections:
    """Image-format detections from ``((y0, y1, x0, x1), score, class)``."""
    return Detections(
        boxes=torch.tensor([[x0, y0, x1, y1] for (y0, y1, x0, x1), _, _ in items], dtype=torch.float32),
        scores=torch.tensor([s for _, s, _ in items]),
        classes=torch.tensor([c for _, _, c in items]),
        masks=torch.stack([box_mask(*r) for r, _, _ in items]),
    )


def fuse(dets: Detections, semantic: torch.Tensor | None = None, **params: object) -> object:
    defaults = {"stuff_area": 0}
    return fuse_detection_semantic(
        dets,
        semantic if semantic is not None else semantic_map(),
        THINGS,
        DetectionSemanticParams(**{**defaults, **params}),
    )


def test_confidence_filter_drops_low_scores_and_non_thing_classes() -> None:
    dets = detections(((2, 6, 2, 6), 0.9, 0), ((2, 6, 10, 14), 0.49, 1), ((2, 6, 20, 24), 0.8, 2))
    out = fuse(dets)
    assert out.detections.tolist() == [0]
    assert out.panoptic[3, 3] == 1  # person 1
    assert out.panoptic[3, 11] == 3000  # the dropped car's pixels are the semantic stuff (sky)
    assert out.panoptic[3, 21] == 3000  # a detection of a stuff class is not an instance


def test_instances_are_pasted_in_score_order() -> None:
    # the lower-score person comes first in the input; the car (higher score) wins the overlap
    dets = detections(((2, 8, 2, 8), 0.7, 0), ((4, 10, 4, 10), 0.9, 1))
    out = fuse(dets, overlap_threshold=0.9)
    assert out.detections.tolist() == [1, 0]
    assert out.panoptic[5, 5] == 1001  # overlap -> car
    assert out.panoptic[2, 2] == 1  # person keeps its free pixels
    assert out.segments.ids.tolist()[:2] == [1001, 1]
    assert out.segments.scores.tolist()[:2] == pytest.approx([0.9, 0.7])


def test_overlap_rule_drops_an_instance_mostly_taken() -> None:
    # car (0.9) covers 6x6; person (0.8) 6x6 shifted by 2 columns: 24 of 36 pixels taken (0.67)
    dets = detections(((2, 8, 2, 8), 0.9, 1), ((2, 8, 4, 10), 0.8, 0))
    dropped = fuse(dets, overlap_threshold=0.5)
    assert dropped.detections.tolist() == [0]
    assert dropped.panoptic[2:8, 8:10].eq(3000).all()  # the dropped person's free pixels: stuff
    kept = fuse(dets, overlap_threshold=0.7)
    assert kept.detections.tolist() == [0, 1]
    assert kept.panoptic[2:8, 8:10].eq(1).all() and kept.panoptic[2:8, 4:8].eq(1001).all()
    # exactly at the threshold it is kept (the rule drops only when taken / area > threshold)
    at = fuse(dets, overlap_threshold=24 / 36)
    assert at.detections.tolist() == [0, 1]


def test_overlap_counts_only_pixels_of_kept_instances() -> None:
    """A dropped instance does not take pixels: the third one overlaps only the dropped second."""
    dets = detections(
        ((0, 10, 0, 10), 0.95, 1),  # A
        ((0, 10, 5, 15), 0.9, 1),  # B: half taken by A -> dropped at 0.4
        ((0, 10, 11, 20), 0.85, 0),  # C: overlaps only B's region
    )
    out = fuse(dets, overlap_threshold=0.4)
    assert out.detections.tolist() == [0, 2]
    assert out.panoptic[0:10, 11:20].eq(1).all()
    assert out.panoptic[0:10, 10].eq(3000).all()  # B's free pixels (after A) became stuff


def test_keep_rule_equals_sequential_pasting_on_random_masks() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        num = int(torch.randint(1, 12, (1,), generator=gen))
        masks = torch.zeros(num, 12, 12, dtype=torch.bool)
        for k in range(num):
            y, x = torch.randint(0, 10, (2,), generator=gen).tolist()
            h, w = torch.randint(1, 8, (2,), generator=gen).tolist()
            masks[k, y : y + h, x : x + w] = True
        threshold = float(torch.rand(1, generator=gen))
        taken = torch.zeros(12, 12, dtype=torch.bool)
        expected = []
        for k in range(num):  # detectron2's loop
            area = int(masks[k].sum())
            inter = int((masks[k] & taken).sum())
            keep = area > 0 and not inter / area > threshold
            expected.append(keep)
            if keep:
                taken |= masks[k]
        assert paste_order_keep(masks, threshold).tolist() == expected


def test_free_pixels_get_stuff_and_thing_pixels_without_instance_are_void() -> None:
    logits = semantic_map()  # sky above row 10, road below
    logits[1, 15:, 25:] = 9.0  # a 5 x 5 "car" patch in the semantic map, no detection there
    logits[3, 18:, :3] = 9.0  # 2 x 3 pixels of sky below the split
    person = detections(((2, 6, 2, 6), 0.9, 0))
    out = fuse(person, logits)
    assert out.panoptic[0, 20] == 3000 and out.panoptic[12, 12] == 2000
    assert out.panoptic[15:, 25:].eq(-1).all()  # a thing class without an instance: void
    assert out.panoptic[18:, :3].eq(3000).all()  # a class's pixels need not be connected
    assert out.semantic[16, 26] == 1
    areas = dict(zip(out.segments.ids.tolist(), out.segments.areas.tolist(), strict=True))
    assert areas == {1: 16, 3000: 10 * 30 - 16 + 6, 2000: 10 * 30 - 25 - 6}
    # the stuff area counts a class's free pixels: 290 of sky
    assert 3000 in fuse(person, logits, stuff_area=290).segments.ids.tolist()
    assert fuse(person, logits, stuff_area=291).panoptic[0, 20] == -1


def test_stuff_area_filter() -> None:
    logits = torch.zeros(4, H, W)
    logits[2] = 5.0
    logits[3, :2, :5] = 9.0  # 10 pixels of sky
    dets = detections(((5, 9, 5, 9), 0.9, 0))
    kept = fuse(dets, logits, stuff_area=10)
    assert kept.panoptic[:2, :5].eq(3000).all()
    dropped = fuse(dets, logits, stuff_area=11)
    assert dropped.panoptic[:2, :5].eq(-1).all()
    assert dropped.segments.ids.tolist() == [1, 2000]


def test_instance_numbers_segments_and_statistics() -> None:
    dets = detections(((0, 4, 0, 4), 0.9, 0), ((0, 4, 10, 14), 0.8, 0), ((10, 14, 0, 6), 0.95, 1))
    out = fuse(dets)
    assert out.segments.ids.tolist() == [1001, 1, 2, 2000, 3000]
    assert out.segments.is_thing.tolist() == [True, True, True, False, False]
    assert out.segments.areas.tolist()[:3] == [24, 16, 16]
    assert out.segments.bboxes.tolist()[:3] == [[0, 10, 6, 4], [0, 0, 4, 4], [10, 0, 4, 4]]
    assert out.instance[11, 1] == 1 and out.instance[1, 1] == 2 and out.instance[1, 11] == 3
    assert out.instance[19, 29] == 0
    assert 0.5 < float(out.segments.scores[3]) <= 1.0  # stuff: mean semantic probability


def test_box_masks_are_pasted_into_their_boxes() -> None:
    """Mask R-CNN style: a 4 x 4 mask covering its box, bilinear inside, zero outside."""
    mask = torch.full((4, 4), ON)
    mask[:, 2:] = OFF  # left half of the box
    dets = Detections(
        boxes=torch.tensor([[4.0, 2.0, 12.0, 10.0]]),
        scores=torch.tensor([0.9]),
        classes=torch.tensor([1]),
        masks=mask[None],
    )
    out = fuse(dets, mask_format="box")
    assert out.panoptic[2:10, 4:8].eq(1001).all()  # left half of the box
    assert not out.panoptic[2:10, 9:12].eq(1001).any()
    assert not out.panoptic[:2].eq(1001).any() and not out.panoptic[10:].eq(1001).any()


def test_yolo_prototypes_and_coefficients() -> None:
    prototypes = torch.full((2, 10, 15), -5.0)
    prototypes[0, :, :8] = 5.0  # left part of the image
    prototypes[1, 5:] = 5.0  # bottom part
    coefficients = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 8.0], [15.0, 12.0, 30.0, 20.0]])  # xyxy
    dets = Detections(
        boxes=boxes,
        scores=torch.tensor([0.9, 0.8]),
        classes=torch.tensor([0.0, 1.0]),  # float classes, as many exports give
        prototypes=prototypes,
        coefficients=coefficients,
    )
    out = fuse(dets, mask_format="prototypes")
    assert out.panoptic[0:8, 0:10].eq(1).all()  # left part, cut to the first box
    assert out.panoptic[12:20, 15:30].eq(1001).all()  # bottom part, cut to the second box
    assert out.panoptic[0:8, 12:16].eq(3000).all()  # outside both boxes: stuff


def test_cxcywh_boxes_and_integer_semantic_maps() -> None:
    mask = torch.full((1, 4, 4), ON)
    dets = Detections(
        boxes=torch.tensor([[8.0, 6.0, 8.0, 8.0]]),
        scores=torch.tensor([0.9]),
        classes=torch.tensor([0]),
        masks=mask,
    )
    semantic = torch.full((10, 15), 2, dtype=torch.int64)  # half resolution: resized by nearest
    out = fuse_detection_semantic(
        dets,
        semantic,
        THINGS,
        DetectionSemanticParams(mask_format="box", box_format="cxcywh", stuff_area=0),
        output_size=(H, W),
        num_classes=4,
    )
    assert out.panoptic[2:10, 4:12].eq(1).all()
    assert out.panoptic[15, 20] == 2000
    assert out.segments.scores[-1] == 1.0


def test_parameters_and_inputs_are_checked() -> None:
    with pytest.raises(ConfigError, match="mask_format"):
        DetectionSemanticParams(mask_format="polygon")
    with pytest.raises(ConfigError, match="stuff_area"):
        DetectionSemanticParams(stuff_area=-1)
    with pytest.raises(ConfigError, match=r"unknown detection-semantic fusion parameter"):
        DetectionSemanticParams.from_spec({"top_k": 3})
    with pytest.raises(FusionInputError, match="prototypes"):
        instance_masks(None, torch.zeros(1, 4), (H, W), DetectionSemanticParams(mask_format="prototypes"))
    with pytest.raises(FusionInputError, match=r"\[D, 4\]"):
        fuse_detection_semantic(
            Detections(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2)), semantic_map(), THINGS
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_result() -> None:
    dets = detections(((2, 8, 2, 8), 0.9, 1), ((2, 8, 4, 10), 0.8, 0), ((12, 18, 3, 9), 0.7, 0))
    cpu = fuse(dets, overlap_threshold=0.7)
    cuda = fuse(
        Detections(*(t.cuda() if t is not None else None for t in dets)),
        semantic_map().cuda(),
        overlap_threshold=0.7,
    )
    assert torch.equal(cuda.panoptic.cpu(), cpu.panoptic)
    assert torch.equal(cuda.segments.ids.cpu(), cpu.segments.ids)
