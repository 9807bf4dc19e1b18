"""Mask-classification fusion: the transformers mode against transformers itself, the Mask2Former
mode case by case and against a straightforward implementation of the paper's loop."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import FusionInputError
from panoptic_ros.fusion.mask_classification import (
    MaskClassificationParams,
    assign_pixels,
    fuse_mask_classification,
    fuse_mask_classification_batch,
    select_queries,
    transformers_result,
)

transformers = pytest.importorskip(
    "transformers", reason="the transformers comparison needs transformers 4.57"
)

SATURATED = 30.0  # a mask logit whose sigmoid is exactly 1.0 in float32


def class_logits_for(rows: list[tuple[int, float]], num_classes: int) -> torch.Tensor:
    """``[Q, K + 1]`` logits whose softmax gives class ``c`` the score ``s`` per row (others equal);
    ``c = num_classes`` makes "no object" the best column."""
    logits = torch.zeros(len(rows), num_classes + 1)
    for q, (cls, score) in enumerate(rows):
        logits[q, cls] = math.log(score * num_classes / (1 - score))
    return logits


def processor(kind: str, tmp_path: Path) -> Any:
    transformers.utils.logging.set_verbosity_error()
    if kind == "mask2former":
        return transformers.Mask2FormerImageProcessor()
    if kind == "maskformer":
        return transformers.MaskFormerImageProcessor()
    info = tmp_path / "class_info.json"
    info.write_text(json.dumps({str(i): {"name": f"c{i}", "isthing": 0} for i in range(3)}))
    return transformers.OneFormerImageProcessor(class_info_file=info.name, repo_path=str(tmp_path))


def theirs(
    proc: Any,
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    fuse: set[int] | None,
    target: Any,
    **kw: float,
) -> dict[str, Any]:
    outputs = types.SimpleNamespace(
        class_queries_logits=class_logits[None], masks_queries_logits=mask_logits[None]
    )
    return proc.post_process_panoptic_segmentation(
        outputs, label_ids_to_fuse=fuse, target_sizes=[target] if target else None, **kw
    )[0]


def ours(
    kind: str,
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    things: list[int],
    fuse: bool,
    target: Any,
    strategy: str,
    **kw: float,
) -> dict[str, Any]:
    params = MaskClassificationParams.transformers(
        "mask2former" if kind == "mask2former" else kind,
        fuse_stuff=fuse,
        object_threshold=kw["threshold"],
        mask_threshold=kw["mask_threshold"],
        overlap_threshold=kw["overlap_mask_area_threshold"],
    )
    out = fuse_mask_classification(
        class_logits, mask_logits, things, params, output_size=target, strategy=strategy
    )
    return transformers_result(out, target)


def scene(
    *, seed: int, queries: int, classes: int, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a scene: a Voronoi partition with one confident query per region (soft edges),
    the other queries "no object" with random masks."""
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    regions = queries * 2 // 3
    centers = torch.rand(regions, 2, generator=gen) * torch.tensor([height, width])
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    distance = (ys[None] - centers[:, 0, None, None]) ** 2 + (xs[None] - centers[:, 1, None, None]) ** 2
    owner = distance.argmin(dim=0)
    mask_logits = torch.randn(queries, height, width, generator=gen) * 3 - 6
    class_logits = torch.randn(queries, classes + 1, generator=gen)
    class_logits[:, classes] += 4
    for region in range(regions):
        inside = (owner == region).float()[None, None]
        soft = F.avg_pool2d(inside, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
        mask_logits[region] = (soft - 0.5) * 16 + torch.randn(height, width, generator=gen) * 0.5
        class_logits[region, classes] -= 4
        class_logits[region, int(torch.randint(0, classes, (1,), generator=gen))] += 8
    return class_logits, mask_logits


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["segments_info"] == expected["segments_info"]
    assert got["segmentation"].dtype == expected["segmentation"].dtype
    assert got["segmentation"].shape == expected["segmentation"].shape
    assert torch.equal(got["segmentation"], expected["segmentation"])


def random_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int], Any, dict[str, float], bool]:
    gen = torch.Generator().manual_seed(seed)

    def integer(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=gen))

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(1, generator=gen))

    queries, classes = integer(1, 16), integer(1, 7)
    height, width = integer(3, 33), integer(3, 33)
    class_logits = torch.randn(queries, classes + 1, generator=gen) * uniform(0.5, 4)
    confident = torch.rand(queries, generator=gen) < 0.6
    chosen = torch.randint(0, classes, (queries,), generator=gen)
    class_logits[confident, chosen[confident]] += uniform(1, 8)
    coarse = torch.randn(1, queries, max(height // 4, 1), max(width // 4, 1), generator=gen) * uniform(1, 25)
    mask_logits = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    mask_logits += torch.randn(queries, height, width, generator=gen) * uniform(0, 2)
    if seed % 4 == 0:  # coarse logits: saturated probabilities and exact ties
        mask_logits = (mask_logits * 0.5).round() * 4
    things = [c for c in range(classes) if float(torch.rand(1, generator=gen)) < 0.5]
    target = None if seed % 3 == 0 else (integer(4, 96), integer(4, 96))
    kw = {
        "threshold": uniform(0.0, 0.8),
        "mask_threshold": uniform(0.2, 0.8),
        "overlap_mask_area_threshold": uniform(0.0, 1.0),
    }
    return class_logits, mask_logits, things, target, kw, seed % 5 != 0


# --------------------------------------------------------------------------------------------------
# transformers mode == post_process_panoptic_segmentation


@pytest.mark.parametrize("kind", ["mask2former", "maskformer", "oneformer"])
@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_transformers_mode_equals_post_process_panoptic_segmentation(
    kind: str, strategy: str, tmp_path: Path
) -> None:
    proc = processor(kind, tmp_path)
    compared = 0
    for seed in range(60):
        class_logits, mask_logits, things, target, kw, fuse = random_case(seed)
        stuff = set(range(class_logits.shape[1] - 1)) - set(things)
        expected = theirs(proc, class_logits, mask_logits, stuff if fuse else None, target, **kw)
        got = ours(
            kind, class_logits, mask_logits, things=things, fuse=fuse, target=target, strategy=strategy, **kw
        )
        assert_same(got, expected)
        compared += len(expected["segments_info"])
    assert compared > 80, "the random cases must produce segments to compare"


def test_transformers_mode_large_output_uses_the_sparse_path_and_matches(tmp_path: Path) -> None:
    """At a realistic size (384 x 384 intermediate, 480 x 640 output) the automatic strategy is the
    sparse one on the CPU; it must still equal transformers pixel for pixel."""
    proc = processor("mask2former", tmp_path)
    class_logits, mask_logits = scene(seed=7, queries=30, classes=12, size=(32, 48))
    classes = 12
    stuff = set(range(6, classes))
    kw = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.8}
    expected = theirs(proc, class_logits, mask_logits, stuff, (480, 640), **kw)
    got = ours(
        "mask2former",
        class_logits,
        mask_logits,
        things=list(range(6)),
        fuse=True,
        target=(480, 640),
        strategy="auto",
        **kw,
    )
    assert len(expected["segments_info"]) >= 5
    assert_same(got, expected)


def test_transformers_ids_can_collide_and_panoptic_keeps_segments_apart(tmp_path: Path) -> None:
    """transformers' counter restarts at a repeated fused class's id: the query after it reuses an id
    already given. Reproduced in the transformers-format result; the panoptic map keeps them apart."""
    # four queries, each alone in a vertical band: stuff 2, thing 0, stuff 2 again, thing 1
    class_logits = class_logits_for([(2, 0.9), (0, 0.9), (2, 0.9), (1, 0.9)], num_classes=3)
    mask_logits = torch.full((4, 4, 8), -SATURATED)
    for q in range(4):
        mask_logits[q, :, 2 * q : 2 * q + 2] = SATURATED
    kw = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.8}
    expected = theirs(processor("maskformer", tmp_path), class_logits, mask_logits, {2}, None, **kw)
    assert [s["id"] for s in expected["segments_info"]] == [1, 2, 1, 2]  # the collision itself
    got = ours(
        "maskformer", class_logits, mask_logits, things=[0, 1], fuse=True, target=None, strategy="dense", **kw
    )
    assert_same(got, expected)
    params = MaskClassificationParams.transformers("maskformer")
    out = fuse_mask_classification(class_logits, mask_logits, [0, 1], params)
    assert out.panoptic[0, ::2].tolist() == [2000, 1, 2000, 1001]  # thing 0 and thing 1 stay apart


def test_float32_area_ratio_of_transformers(tmp_path: Path) -> None:
    """transformers compares the float32 ratio: 8 / 10 is 0.800000011920929 > 0.8, so a query that won
    exactly 80 % of its mask is kept by a 0.8 threshold; 3 / 4 == 0.75 is not kept by 0.75. The
    Mask2Former rules keep both (``ratio >= threshold``)."""
    proc = processor("maskformer", tmp_path)
    for won, total, threshold in ((8, 10, 0.8), (3, 4, 0.75)):
        # query 0 (score 0.95) takes total - won pixels of query 1's mask (score 0.9)
        class_logits = class_logits_for([(0, 0.95), (1, 0.9)], num_classes=2)
        mask_logits = torch.full((2, 1, total), -SATURATED)
        mask_logits[1] = SATURATED
        mask_logits[0, 0, : total - won] = SATURATED
        kw = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": threshold}
        expected = theirs(proc, class_logits, mask_logits, None, None, **kw)
        assert_same(
            ours(
                "maskformer",
                class_logits,
                mask_logits,
                things=[0, 1],
                fuse=False,
                target=None,
                strategy="dense",
                **kw,
            ),
            expected,
        )
        kept_by_transformers = any(s["label_id"] == 1 for s in expected["segments_info"])
        assert kept_by_transformers == (won == 8)
        paper = fuse_mask_classification(
            class_logits,
            mask_logits,
            [0, 1],
            MaskClassificationParams(object_threshold=0.5, overlap_threshold=threshold),
        )
        assert 1 in paper.segments.classes.tolist()


def test_no_query_above_the_threshold_gives_transformers_empty_result(tmp_path: Path) -> None:
    class_logits = class_logits_for([(3, 0.99), (0, 0.3)], num_classes=3)  # "no object", low score
    mask_logits = torch.zeros(2, 5, 6)
    kw = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.8}
    for target in (None, (9, 11)):
        expected = theirs(processor("maskformer", tmp_path), class_logits, mask_logits, None, target, **kw)
        got = ours(
            "maskformer",
            class_logits,
            mask_logits,
            things=[0],
            fuse=False,
            target=target,
            strategy="dense",
            **kw,
        )
        assert_same(got, expected)
        assert got["segmentation"].eq(-1).all()


# --------------------------------------------------------------------------------------------------
# Mask2Former rules


def reference_mask2former(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    things: set[int],
    size: tuple[int, int],
    *,
    object_threshold: float,
    overlap_threshold: float,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The paper's ``panoptic_inference``, one query at a time: (segment id map, [(id, class)])."""
    scores, labels = F.softmax(class_logits, dim=-1).max(-1)
    keep = labels.ne(class_logits.shape[1] - 1) & (scores > object_threshold)
    scores, labels = scores[keep], labels[keep]
    panoptic = torch.zeros(size, dtype=torch.int32)
    segments: list[tuple[int, int]] = []
    if not bool(keep.any()):
        return panoptic, segments
    resized = F.interpolate(mask_logits[keep][None], size=size, mode="bilinear", align_corners=False)
    masks = resized[0].sigmoid()
    winner = (scores[:, None, None] * masks).argmax(0)
    stuff_memory: dict[int, int] = {}
    current = 0
    for k in range(labels.shape[0]):
        cls = int(labels[k])
        won = winner == k
        area, original = int(won.sum()), int((masks[k] >= 0.5).sum())
        mask = won & (masks[k] >= 0.5)
        if area > 0 and original > 0 and int(mask.sum()) > 0:
            if area / original < overlap_threshold:
                continue
            if cls not in things:
                if cls in stuff_memory:
                    panoptic[mask] = stuff_memory[cls]
                    continue
                stuff_memory[cls] = current + 1
            current += 1
            panoptic[mask] = current
            segments.append((current, cls))
    return panoptic, segments


@pytest.mark.parametrize("strategy", ["dense", "sparse"])
def test_mask2former_mode_equals_the_papers_loop(strategy: str) -> None:
    compared = 0
    for seed in range(60):
        class_logits, mask_logits, things, target, kw, _ = random_case(seed)
        size = target or (mask_logits.shape[1] * 4, mask_logits.shape[2] * 4)
        params = MaskClassificationParams(
            object_threshold=kw["threshold"], overlap_threshold=kw["overlap_mask_area_threshold"]
        )
        out = fuse_mask_classification(
            class_logits, mask_logits, things, params, output_size=size, strategy=strategy
        )
        expected_map, expected_segments = reference_mask2former(
            class_logits,
            mask_logits,
            set(things),
            size,
            object_threshold=params.object_threshold,
            overlap_threshold=params.overlap_threshold,
        )
        assert torch.equal(out.segment_id_map, expected_map), seed
        first = {}
        for i, c in zip(out.kept.ids.tolist(), out.kept.classes.tolist(), strict=True):
            first.setdefault(i, c)
        assert sorted(first.items()) == expected_segments
        compared += len(expected_segments)
    assert compared > 80


def test_score_filter_is_strict_and_no_object_is_dropped() -> None:
    class_logits = class_logits_for([(0, 0.9), (1, 0.6), (2, 0.99)], num_classes=2)  # query 2: no object
    mask_logits = torch.full((3, 2, 6), -SATURATED)
    mask_logits[:, :, :2] = SATURATED
    mask_logits[1, :, 2:4] = SATURATED
    mask_logits[2, :, 4:] = SATURATED
    score_1 = float(select_queries(class_logits, 0.0).scores[1])
    for threshold, expected in ((0.5, [0, 1]), (score_1, [0])):
        selection = select_queries(class_logits, threshold)
        assert selection.queries.tolist() == expected
    out = fuse_mask_classification(
        class_logits, mask_logits, [0, 1], MaskClassificationParams(object_threshold=score_1)
    )
    assert out.num_selected == 1
    assert out.segments.classes.tolist() == [0]


def test_overlap_filter_drops_a_query_that_lost_most_of_its_mask() -> None:
    # query 0 (0.95) covers the left 6 of 10 columns; query 1 (0.9) covers all 10
    class_logits = class_logits_for([(0, 0.95), (1, 0.9)], num_classes=2)
    mask_logits = torch.full((2, 3, 10), SATURATED)
    mask_logits[0, :, 6:] = -SATURATED
    for overlap, kept_classes in ((0.8, [0]), (0.4, [0, 1]), (0.3, [0, 1])):
        params = MaskClassificationParams(object_threshold=0.5, overlap_threshold=overlap)
        out = fuse_mask_classification(class_logits, mask_logits, [0, 1], params)
        assert out.segments.classes.tolist() == kept_classes
        right = out.panoptic[:, 6:]
        assert right.eq(1001).all() if 1 in kept_classes else right.eq(-1).all()  # lost pixels: void


def test_a_kept_query_paints_only_where_its_probability_reaches_the_mask_threshold() -> None:
    class_logits = class_logits_for([(0, 0.9)], num_classes=1)
    mask_logits = torch.full((1, 2, 8), 2.0)  # p = 0.88
    mask_logits[0, :, 5:] = -1.0  # p = 0.27: won (the only query) but below 0.5
    out = fuse_mask_classification(
        class_logits, mask_logits, [0], MaskClassificationParams(object_threshold=0.5)
    )
    assert out.panoptic[:, :5].eq(1).all() and out.panoptic[:, 5:].eq(-1).all()
    params = MaskClassificationParams.transformers("maskformer", overlap_threshold=0.5)
    hf = fuse_mask_classification(class_logits, mask_logits, [0], params)
    assert hf.panoptic.eq(1).all()  # transformers paints every won pixel


def test_original_area_is_unscored_in_mask2former_and_scored_in_transformers() -> None:
    class_logits = class_logits_for([(0, 0.6)], num_classes=1)
    mask_logits = torch.full((1, 3, 3), math.log(0.7 / 0.3))  # p = 0.7: p >= 0.5 but 0.6 * p < 0.5
    paper = fuse_mask_classification(
        class_logits, mask_logits, [0], MaskClassificationParams(object_threshold=0.5)
    )
    assert paper.segments.areas.tolist() == [9]
    hf = fuse_mask_classification(
        class_logits, mask_logits, [0], MaskClassificationParams.transformers("maskformer")
    )
    assert hf.segments.ids.numel() == 0 and hf.panoptic.eq(-1).all()


def test_stuff_of_one_class_merges_and_things_get_their_own_ids() -> None:
    # columns: thing 0 | stuff 2 | thing 0 | stuff 2 | thing 1 (query order)
    rows = [(0, 0.9), (2, 0.85), (0, 0.95), (2, 0.8), (1, 0.99)]
    class_logits = class_logits_for(rows, num_classes=3)
    mask_logits = torch.full((5, 4, 10), -SATURATED)
    for q in range(5):
        mask_logits[q, :, 2 * q : 2 * q + 2] = SATURATED
    out = fuse_mask_classification(
        class_logits, mask_logits, [0, 1], MaskClassificationParams(object_threshold=0.5)
    )
    assert out.panoptic[0, ::2].tolist() == [1, 2000, 2, 2000, 1001]
    seg = out.segments
    assert seg.ids.tolist() == [1, 2, 1001, 2000]  # things in query order, then stuff
    assert seg.is_thing.tolist() == [True, True, True, False]
    assert seg.areas.tolist() == [8, 8, 8, 16]
    assert seg.bboxes.tolist() == [[0, 0, 2, 4], [4, 0, 2, 4], [8, 0, 2, 4], [2, 0, 6, 4]]
    assert seg.centroids[3].tolist() == pytest.approx([4.5, 1.5])
    assert seg.scores.tolist() == pytest.approx([0.9, 0.95, 0.99, 0.85], abs=1e-5)  # stuff: best query
    assert out.segment_queries.tolist() == [0, 2, 4, 1]
    assert out.instance[0, ::2].tolist() == [1, 0, 2, 0, 3]
    assert out.segment_id_map[0, ::2].tolist() == [1, 2, 3, 2, 4]  # the paper's ids: stuff reuses its first


def test_upsampling_to_the_output_size_and_batches() -> None:
    class_logits = class_logits_for([(0, 0.9), (1, 0.9)], num_classes=2)
    mask_logits = torch.full((2, 4, 4), -SATURATED)
    mask_logits[0, :2] = SATURATED
    mask_logits[1, 2:] = SATURATED
    params = MaskClassificationParams(object_threshold=0.5)
    out = fuse_mask_classification(class_logits, mask_logits, [0], params, output_size=(16, 20))
    assert out.panoptic.shape == (16, 20)
    assert out.panoptic[:7].eq(1).all() and out.panoptic[9:].eq(1000).all()
    batch = fuse_mask_classification_batch(
        torch.stack((class_logits, class_logits)),
        torch.stack((mask_logits, mask_logits.flip(1))),
        [0],
        params,
    )
    assert batch[0].panoptic[0, 0] == 1 and batch[1].panoptic[0, 0] == 1000


def test_sparse_and_dense_assignment_agree_on_larger_random_outputs() -> None:
    gen = torch.Generator().manual_seed(3)
    for height, width, size in ((24, 40, (200, 300)), (40, 24, (97, 301)), (30, 30, (30, 90))):
        source = F.interpolate(
            torch.randn(1, 12, 5, 5, generator=gen) * 8, size=(height, width), mode="bilinear"
        )[0]
        scores = torch.rand(12, generator=gen) * 0.5 + 0.5
        for activation, scored in (("sigmoid", False), ("identity", True)):
            values = source.sigmoid() if activation == "identity" else source
            kwargs = {"activation": activation, "mask_threshold": 0.5, "threshold_scored": scored}
            dense = assign_pixels(values, scores, size, strategy="dense", **kwargs)
            sparse = assign_pixels(values, scores, size, strategy="sparse", **kwargs)
            assert torch.equal(dense.winner, sparse.winner)
            assert torch.equal(dense.winner_above, sparse.winner_above)
            assert torch.equal(dense.above_area, sparse.above_area)


def test_invalid_parameters_and_inputs_are_reported() -> None:
    with pytest.raises(ConfigError, match="mode="):
        MaskClassificationParams(mode="detectron")
    with pytest.raises(ConfigError, match="object_threshold"):
        MaskClassificationParams(object_threshold=float("nan"))
    with pytest.raises(ConfigError, match="transformers-mode"):
        MaskClassificationParams(intermediate_height=384, intermediate_width=384)
    with pytest.raises(ConfigError, match="both be 0"):
        MaskClassificationParams(mode="transformers", intermediate_height=384)
    with pytest.raises(ConfigError, match=r"unknown mask-classification fusion parameter.*valid: mode"):
        MaskClassificationParams.from_spec({"center_threshold": 0.1})
    assert MaskClassificationParams.from_spec({"mode": "transformers"}).mode == "transformers"
    with pytest.raises(FusionInputError, match=r"\[Q, K \+ 1\]"):
        select_queries(torch.zeros(4), 0.5)
    with pytest.raises(FusionInputError, match=r"\[Q, h, w\]"):
        fuse_mask_classification(torch.zeros(3, 4), torch.zeros(2, 5, 5), [0])
    with pytest.raises(ConfigError, match="label_divisor"):
        fuse_mask_classification(
            torch.zeros(3, 4), torch.zeros(3, 5, 5), [0], MaskClassificationParams(label_divisor=2)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_result() -> None:
    for seed in range(10):
        class_logits, mask_logits, things, target, kw, _ = random_case(seed)
        params = MaskClassificationParams.transformers(
            "maskformer",
            object_threshold=kw["threshold"],
            overlap_threshold=kw["overlap_mask_area_threshold"],
        )
        cpu = fuse_mask_classification(class_logits, mask_logits, things, params, output_size=target)
        gpu = fuse_mask_classification(
            class_logits.cuda(), mask_logits.cuda(), things, params, output_size=target
        )
        assert gpu.panoptic.device.type == "cuda"
        # the same rules; values may differ in the last bit between devices, so compare segment lists
        assert gpu.segments.classes.cpu().tolist() == cpu.segments.classes.tolist()
        mismatch = (gpu.panoptic.cpu() != cpu.panoptic).float().mean()
        assert mismatch < 1e-3
