"""Center-offset (Panoptic-DeepLab) fusion: each rule by hand, then equivalence with the reference."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.counting import count_host_reads
from panoptic_ros.errors import ConfigError, PanopticRosError
from panoptic_ros.fusion import (
    CenterOffsetOutput,
    CenterOffsetParams,
    FusionInputError,
    find_centers,
    fuse_center_offset,
    fuse_center_offset_batch,
    group_pixels,
    grouping_chunk_size,
    merge_segments,
    semantic_argmax,
    thing_class_mask,
)
from tests.fusion.reference import (
    ReferenceOutput,
    reference_find_centers,
    reference_fusion,
    reference_group_pixels,
    reference_merge,
    reference_segment_stats,
    synthetic_center_offset_outputs,
)

THINGS = (11, 12, 13)
NUM_CLASSES = 14


def _params(**overrides: object) -> CenterOffsetParams:
    """Hand-built cases are small: stuff is kept from one pixel on unless a test says otherwise."""
    return CenterOffsetParams(**{"stuff_area": 1, **overrides})  # type: ignore[arg-type]


def _heat(height: int, width: int, peaks: dict[tuple[int, int], float]) -> torch.Tensor:
    heat = torch.zeros(1, height, width)
    for (y, x), value in peaks.items():
        heat[0, y, x] = value
    return heat


def _offsets_to(height: int, width: int, targets: torch.Tensor) -> torch.Tensor:
    """Offsets that move each pixel exactly onto ``targets[:, y, x]`` (``[2, H, W]`` of (y, x))."""
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return targets.float() - torch.stack((rows, cols))


def _fuse_ids(
    semantic: torch.Tensor,
    heat: torch.Tensor,
    offsets: torch.Tensor,
    params: CenterOffsetParams,
    things: tuple[int, ...] = THINGS,
) -> CenterOffsetOutput:
    return fuse_center_offset(semantic, heat, offsets, things, params, num_classes=NUM_CLASSES)


def _centers(heat: torch.Tensor, **kwargs: object) -> list[tuple[int, int]]:
    ours = find_centers(heat, **kwargs).points  # type: ignore[arg-type]
    reference = reference_find_centers(heat.clone(), **kwargs)  # type: ignore[arg-type]
    assert torch.equal(ours, reference), (ours.tolist(), reference.tolist())
    return [tuple(p) for p in ours.tolist()]


# ---------------------------------------------------------------------------------------------------
# centers


@pytest.mark.parametrize("top_k", [None, 200])
def test_center_threshold_is_strict(top_k: int | None) -> None:
    assert _centers(_heat(9, 9, {(4, 4): 0.1}), top_k=top_k) == []
    assert _centers(_heat(9, 9, {(4, 4): 0.1001}), top_k=top_k) == [(4, 4)]
    assert _centers(_heat(9, 9, {(4, 4): 0.4}), center_threshold=0.4, top_k=top_k) == []
    assert _centers(_heat(9, 9, {(4, 4): 0.41}), center_threshold=0.4, top_k=top_k) == [(4, 4)]


def test_nms_kernel_7_suppresses_peaks_3_px_apart_but_not_4() -> None:
    assert _centers(_heat(15, 15, {(7, 4): 0.9, (7, 7): 0.8})) == [(7, 4)]
    assert _centers(_heat(15, 15, {(4, 4): 0.7, (7, 7): 0.8})) == [(7, 7)]  # diagonal, 3 px
    assert _centers(_heat(15, 15, {(7, 3): 0.9, (7, 7): 0.8})) == [(7, 3), (7, 7)]
    assert _centers(_heat(15, 15, {(3, 7): 0.5, (7, 7): 0.8})) == [(3, 7), (7, 7)]


def test_nms_kernel_is_a_parameter() -> None:
    peaks = {(7, 5): 0.9, (7, 7): 0.8}
    assert _centers(_heat(15, 15, peaks), nms_kernel=3) == [(7, 5), (7, 7)]
    assert _centers(_heat(15, 15, peaks), nms_kernel=5) == [(7, 5)]


def test_plateau_maxima_all_survive_in_row_major_order() -> None:
    heat = _heat(12, 12, {(6, 6): 0.5, (6, 5): 0.5, (5, 6): 0.5, (1, 1): 0.3})
    assert _centers(heat) == [(1, 1), (5, 6), (6, 5), (6, 6)]
    scores = find_centers(heat).scores
    assert scores.dtype == torch.float32
    assert scores.tolist() == pytest.approx([0.3, 0.5, 0.5, 0.5])


def test_top_k_keeps_only_scores_strictly_above_the_kth() -> None:
    scores = [0.9, 0.8, 0.7, 0.7, 0.6]
    heat = _heat(10, 50, {(5, 5 + 10 * i): s for i, s in enumerate(scores)})
    assert _centers(heat, top_k=1) == []  # nothing is above the best score
    assert _centers(heat, top_k=2) == [(5, 5)]
    assert _centers(heat, top_k=3) == [(5, 5), (5, 15)]
    assert _centers(heat, top_k=4) == [(5, 5), (5, 15)]  # ties at the k-th score are dropped
    assert _centers(heat, top_k=5) == [(5, 5), (5, 15), (5, 25), (5, 35)]
    # the 6th score is -1 (suppressed), clamped to 0: every positive center stays
    assert len(_centers(heat, top_k=6)) == 5
    assert len(_centers(heat, top_k=None)) == 5


def test_top_k_larger_than_the_map_uses_the_smallest_value() -> None:
    assert _centers(_heat(3, 3, {(1, 1): 0.5}), top_k=200) == [(1, 1)]
    assert _centers(_heat(2, 2, {(0, 0): 0.5, (1, 1): 0.5}), top_k=200, nms_kernel=1) == [(0, 0), (1, 1)]


# ---------------------------------------------------------------------------------------------------
# grouping


def test_offsets_decide_the_instance_not_proximity() -> None:
    height, width = 5, 10
    centers = torch.tensor([[2, 1], [2, 8]])
    targets = torch.empty(2, height, width, dtype=torch.int64)
    targets[0] = 2
    targets[1, :, :5] = 8  # the left half points at the right center
    targets[1, :, 5:] = 1
    thing = torch.ones(height, width, dtype=torch.bool)
    thing[0, 0] = False
    instance = group_pixels(thing, _offsets_to(height, width, targets), centers)
    expected = torch.full((height, width), 2, dtype=torch.int64)
    expected[:, 5:] = 1
    expected[0, 0] = 0  # not a thing pixel
    assert torch.equal(instance, expected)


def test_equidistant_pixels_go_to_the_lower_center_index() -> None:
    # centers in row-major order: index 0 = (0, 4), index 1 = (4, 0); (0, 0) and (4, 4) are 4 px
    # from both, (2, 2) is sqrt(8) from both
    centers = torch.tensor([[0, 4], [4, 0]])
    thing = torch.ones(5, 5, dtype=torch.bool)
    offsets = torch.zeros(2, 5, 5)
    instance = group_pixels(thing, offsets, centers)
    for y, x in [(0, 0), (4, 4), (2, 2), (1, 1), (3, 3)]:
        assert instance[y, x] == 1, (y, x)
    assert instance[4, 1] == 2
    centers_ref = torch.tensor([[0, 4], [4, 0]])
    assert torch.equal(instance, reference_group_pixels(centers_ref, offsets))


def test_grouping_chunk_size_follows_the_memory_budget() -> None:
    assert grouping_chunk_size(50, 1) == 1
    assert grouping_chunk_size(50, 50 * 12 + 32) == 1
    assert grouping_chunk_size(50, 10 * (50 * 12 + 32)) == 10
    assert grouping_chunk_size(0, 1000) == 31


@pytest.mark.parametrize("seed", range(4))
def test_kdtree_grouping_equals_the_exhaustive_search_ties_included(seed: int) -> None:
    """The CPU default (k-d tree over the centers) assigns every pixel as the exhaustive search does,
    with exact ties (zero offsets on a grid of centers 2 pixels apart) going to the lower index."""
    g = torch.Generator().manual_seed(seed)
    height, width = 40, 56
    thing = torch.rand(height, width, generator=g) < 0.7
    offsets = torch.randn(2, height, width, generator=g) * 6
    if seed % 2:
        offsets.zero_()  # every pixel on the integer grid: many equidistant centers
        offsets[:, ::3] = 0.5  # and some halfway between two
    grid = torch.stack(
        torch.meshgrid(torch.arange(0, height, 2), torch.arange(0, width, 2), indexing="ij"), -1
    )
    shuffled = grid.reshape(-1, 2)[torch.randperm(grid.shape[0] * grid.shape[1], generator=g)[:150]]
    for centers in (shuffled, shuffled[:1], shuffled[:3]):
        expected = group_pixels(thing, offsets, centers, strategy="per_center")
        assert torch.equal(group_pixels(thing, offsets, centers, strategy="kdtree"), expected)
        assert torch.equal(group_pixels(thing, offsets, centers, strategy="chunked"), expected)


def test_kdtree_grouping_settles_many_way_ties_like_the_exhaustive_search() -> None:
    """Half-integer locations among integer centers (repeated ones too) can lie at one distance from
    five or more centers; the lowest index must win as in the exhaustive search (hypothesis found a
    scene where a k-d tree's few nearest missed it)."""
    for seed in range(120):
        g = torch.Generator().manual_seed(seed)
        thing = torch.rand(10, 9, generator=g) < 0.8
        offsets = torch.randint(-4, 5, (2, 10, 9), generator=g).float() * 0.5
        count = int(torch.randint(8, 30, (1,), generator=g))
        centers = torch.stack(
            [torch.randint(0, 10, (count,), generator=g), torch.randint(0, 9, (count,), generator=g)], 1
        )
        expected = group_pixels(thing, offsets, centers, strategy="per_center")
        assert torch.equal(group_pixels(thing, offsets, centers, strategy="kdtree"), expected), seed


def test_chunked_grouping_is_identical_for_a_tiny_budget() -> None:
    outputs = synthetic_center_offset_outputs(64, 96, num_instances=12, seed=5)
    semantic = outputs.semantic_logits.argmax(0)
    thing = thing_class_mask(outputs.thing_classes, 19, "cpu")[semantic]
    centers = find_centers(outputs.center_heatmap).points
    assert centers.shape[0] >= 5
    assert int(thing.sum()) > 100  # many chunks of one pixel
    default = group_pixels(thing, outputs.offsets, centers, strategy="chunked")
    tiny = group_pixels(thing, outputs.offsets, centers, memory_budget_bytes=1, strategy="chunked")
    small = group_pixels(thing, outputs.offsets, centers, memory_budget_bytes=4096, strategy="chunked")
    per_center = group_pixels(thing, outputs.offsets, centers, strategy="per_center")
    assert torch.equal(group_pixels(thing, outputs.offsets, centers, strategy="kdtree"), per_center)
    assert torch.equal(default, tiny)
    assert torch.equal(default, small)
    assert torch.equal(default, per_center)  # the CPU's default strategy gives the same assignment
    assert torch.equal(group_pixels(thing, outputs.offsets, centers), per_center)
    with pytest.raises(FusionInputError, match="strategy"):
        group_pixels(thing, outputs.offsets, centers, strategy="fast")  # type: ignore[arg-type]
    whole = fuse_center_offset(
        outputs.semantic_logits,
        outputs.center_heatmap,
        outputs.offsets,
        outputs.thing_classes,
        _params(),
        memory_budget_bytes=1,
    )
    reference = reference_fusion(
        outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, stuff_area=1
    )
    assert torch.equal(whole.panoptic, reference.panoptic)


# ---------------------------------------------------------------------------------------------------
# merge


def _one_instance(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1 x n row of thing pixels with one center at (0, 0) and zero offsets."""
    semantic = torch.tensor([labels])
    return semantic, _heat(1, len(labels), {(0, 0): 0.9}), torch.zeros(2, 1, len(labels))


def test_instance_class_is_the_majority_vote() -> None:
    semantic, heat, offsets = _one_instance([12, 12, 12, 11, 11, 11, 11, 11])
    out = _fuse_ids(semantic, heat, offsets, _params())
    assert out.panoptic.unique().tolist() == [11001]
    assert out.segments.classes.tolist() == [11]


def test_majority_vote_tie_goes_to_the_smallest_class() -> None:
    # torch.mode, which the published code calls, returns the smallest of tied values on the CPU
    assert int(torch.mode(torch.tensor([13, 13, 12, 12])).values) == 12
    assert int(torch.mode(torch.tensor([12, 13, 13, 12, 11, 11])).values) == 11
    semantic, heat, offsets = _one_instance([13, 13, 13, 12, 12, 12, 11])
    out = _fuse_ids(semantic, heat, offsets, _params())
    assert out.panoptic.unique().tolist() == [12001]
    reference = reference_fusion(semantic, heat, offsets, THINGS, stuff_area=1)
    assert torch.equal(out.panoptic, reference.panoptic)


@pytest.mark.parametrize(("area", "kept"), [(9, True), (10, True), (11, False)])
def test_stuff_area_limit(area: int, kept: bool) -> None:
    semantic = torch.full((4, 5), 3)
    semantic.view(-1)[:10] = 2  # class 2: 10 pixels, class 3: 10 pixels
    out = _fuse_ids(semantic, _heat(4, 5, {}), torch.zeros(2, 4, 5), _params(stuff_area=area))
    expected_2 = 2000 if kept else -1
    expected_3 = 3000 if kept else -1
    assert out.panoptic.view(-1)[:10].tolist() == [expected_2] * 10
    assert out.panoptic.view(-1)[10:].tolist() == [expected_3] * 10
    assert out.segments.ids.tolist() == ([2000, 3000] if kept else [])


def test_default_stuff_area_is_2048() -> None:
    semantic = torch.zeros(32, 64, dtype=torch.int64)
    semantic[:, :1] = 1  # class 1: 32 pixels, class 0: 2016 pixels
    out = _fuse_ids(semantic, _heat(32, 64, {}), torch.zeros(2, 32, 64), CenterOffsetParams())
    assert (out.panoptic == -1).all()
    semantic[:, :1] = 0
    out = _fuse_ids(semantic, _heat(32, 64, {}), torch.zeros(2, 32, 64), CenterOffsetParams())
    assert (out.panoptic == 0).all()


def test_thing_pixels_without_any_center_stay_void() -> None:
    semantic = torch.tensor([[0, 0, 11, 11], [0, 12, 12, 0]])
    out = _fuse_ids(semantic, _heat(2, 4, {(0, 2): 0.05}), torch.zeros(2, 2, 4), _params())
    assert out.centers.shape == (0, 2)
    assert out.panoptic.tolist() == [[0, 0, -1, -1], [0, -1, -1, 0]]
    assert (out.instance == 0).all()
    assert out.segments.ids.tolist() == [0]


def test_a_center_without_thing_pixels_makes_no_segment() -> None:
    semantic = torch.tensor([[11, 11, 0, 0, 0, 0]])
    heat = _heat(1, 6, {(0, 0): 0.9, (0, 5): 0.8})
    out = _fuse_ids(semantic, heat, torch.zeros(2, 1, 6), _params(nms_kernel=3))
    assert out.centers.tolist() == [[0, 0], [0, 5]]
    assert out.panoptic.tolist() == [[11001, 11001, 0, 0, 0, 0]]
    assert out.segments.ids.tolist() == [11001, 0]


@pytest.mark.parametrize("label_divisor", [1000, 256])
def test_ids_number_the_instances_of_each_class_in_center_order(label_divisor: int) -> None:
    # three instances (centers in row-major order: classes 12, 11, 12) beside stuff class 0
    semantic = torch.tensor(
        [
            [12, 12, 0, 11, 11, 0, 12, 12],
            [12, 12, 0, 11, 11, 0, 12, 12],
        ]
    )
    heat = _heat(2, 8, {(0, 0): 0.9, (0, 3): 0.8, (0, 6): 0.7})
    out = _fuse_ids(semantic, heat, torch.zeros(2, 2, 8), _params(nms_kernel=1, label_divisor=label_divisor))
    a, b, c = 12 * label_divisor + 1, 11 * label_divisor + 1, 12 * label_divisor + 2
    assert out.panoptic.tolist() == [[a, a, 0, b, b, 0, c, c]] * 2
    assert out.instance.dtype == torch.int32
    assert out.instance.tolist() == [[1, 1, 0, 2, 2, 0, 3, 3]] * 2
    assert out.segments.ids.tolist() == [a, b, c, 0]
    assert out.segments.is_thing.tolist() == [True, True, True, False]
    reference = reference_fusion(
        semantic, heat, torch.zeros(2, 2, 8), THINGS, nms_kernel=1, stuff_area=1, label_divisor=label_divisor
    )
    assert torch.equal(out.panoptic, reference.panoptic)


# ---------------------------------------------------------------------------------------------------
# statistics


def test_segment_statistics_by_hand() -> None:
    height, width = 6, 8
    semantic = torch.zeros(height, width, dtype=torch.int64)
    semantic[1:4, 2:6] = 11  # 12 thing pixels
    boost = torch.arange(height * width, dtype=torch.float32).view(height, width) / 20.0
    logits = torch.zeros(NUM_CLASSES, height, width)
    logits.scatter_(0, semantic[None], boost[None] + 1.0)
    heat = _heat(height, width, {(2, 3): 0.8})
    offsets = torch.zeros(2, height, width)
    out = fuse_center_offset(logits, heat, offsets, THINGS, _params())
    stats = out.segments
    assert stats.ids.tolist() == [11001, 0]
    assert stats.classes.tolist() == [11, 0]
    assert stats.is_thing.tolist() == [True, False]
    assert stats.areas.tolist() == [12, 36]
    assert stats.bboxes.tolist() == [[2, 1, 4, 3], [0, 0, 8, 6]]
    assert stats.centroids[0].tolist() == pytest.approx([3.5, 2.0])
    assert stats.centroids[1].tolist() == pytest.approx([(168 - 42) / 36, (120 - 24) / 36])

    def probability(value: float) -> float:  # softmax of one logit `value` among 13 zeros
        return math.exp(value) / (math.exp(value) + NUM_CLASSES - 1)

    thing_pixels = [(y, x) for y in range(1, 4) for x in range(2, 6)]
    stuff_pixels = [(y, x) for y in range(height) for x in range(width) if (y, x) not in thing_pixels]
    thing_p = sum(probability(float(boost[p]) + 1.0) for p in thing_pixels) / 12
    stuff_p = sum(probability(float(boost[p]) + 1.0) for p in stuff_pixels) / 36
    assert stats.scores.tolist() == pytest.approx([0.8 * thing_p, stuff_p], rel=1e-5)

    without_logits = fuse_center_offset(semantic, heat, offsets, THINGS, _params(), num_classes=NUM_CLASSES)
    assert without_logits.segments.scores.tolist() == pytest.approx([0.8, 1.0])
    assert torch.equal(without_logits.panoptic, out.panoptic)
    assert torch.equal(without_logits.segments.bboxes, stats.bboxes)


# ---------------------------------------------------------------------------------------------------
# parameters and inputs


def test_params_defaults_and_from_spec() -> None:
    params = CenterOffsetParams()
    assert (params.center_threshold, params.nms_kernel, params.top_k) == (0.1, 7, 200)
    assert (params.stuff_area, params.label_divisor) == (2048, 1000)
    spec = CenterOffsetParams.from_spec({"center_threshold": 0.3, "top_k": None, "stuff_area": 64})
    assert spec == CenterOffsetParams(center_threshold=0.3, top_k=None, stuff_area=64)
    assert CenterOffsetParams.from_spec({}) == params
    with pytest.raises(ConfigError, match=r"unknown .*nms_size.*valid: center_threshold, nms_kernel, top_k"):
        CenterOffsetParams.from_spec({"nms_size": 3})
    with pytest.raises(ConfigError, match="nms_kernel"):
        CenterOffsetParams.from_spec({"nms_kernel": "7"})
    with pytest.raises(AttributeError):
        params.top_k = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("center_threshold", float("nan")),
        ("center_threshold", "0.1"),
        ("center_threshold", True),
        ("nms_kernel", 0),
        ("nms_kernel", 4),
        ("nms_kernel", 7.0),
        ("top_k", 0),
        ("top_k", False),
        ("stuff_area", -1),
        ("label_divisor", 0),
    ],
)
def test_params_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        CenterOffsetParams(**{field: value})  # type: ignore[arg-type]


def test_top_k_must_fit_the_label_divisor() -> None:
    with pytest.raises(ConfigError, match=r"top_k=300 .*label_divisor=256"):
        CenterOffsetParams(top_k=300, label_divisor=256)
    CenterOffsetParams(top_k=256, label_divisor=256)


def test_too_many_instances_of_one_class_for_the_label_divisor() -> None:
    semantic = torch.full((1, 12), 11)
    heat = _heat(1, 12, {(0, x): 0.9 for x in range(0, 12, 2)})  # 6 centers
    params = _params(nms_kernel=1, top_k=None, label_divisor=5)
    with pytest.raises(ConfigError, match="label_divisor=5"):
        _fuse_ids(semantic, heat, torch.zeros(2, 1, 12), params)
    ok = _fuse_ids(semantic, heat, torch.zeros(2, 1, 12), _params(nms_kernel=1, top_k=None, label_divisor=7))
    assert ok.segments.ids.tolist() == [11 * 7 + n for n in range(1, 7)]


def test_bad_inputs_raise_fusion_input_error() -> None:
    assert issubclass(FusionInputError, PanopticRosError)
    assert issubclass(FusionInputError, ValueError)
    logits = torch.zeros(NUM_CLASSES, 4, 5)
    heat = torch.zeros(1, 4, 5)
    offsets = torch.zeros(2, 4, 5)
    with pytest.raises(FusionInputError, match="offsets"):
        fuse_center_offset(logits, heat, torch.zeros(2, 4, 6), THINGS)
    with pytest.raises(FusionInputError, match="heatmap"):
        fuse_center_offset(logits, torch.zeros(2, 4, 5), offsets, THINGS)
    with pytest.raises(FusionInputError, match=r"\[C, H, W\]"):
        fuse_center_offset(logits[None], heat, offsets, THINGS)
    with pytest.raises(FusionInputError, match="thing_classes"):
        fuse_center_offset(logits, heat, offsets, (11, 14))
    with pytest.raises(FusionInputError, match="batch"):
        fuse_center_offset_batch(logits[None], heat[None], offsets, THINGS)


def test_semantic_argmax_ties_go_to_the_lower_class() -> None:
    logits = torch.zeros(NUM_CLASSES, 2, 3)
    logits[[4, 9], 0, 1] = 2.0  # tie between 4 and 9
    logits[[13, 12, 11], 1, 2] = 5.0  # three-way tie among things
    logits[7, 1, 0] = -1.0  # all others tie at 0
    quantized = torch.round(torch.randn(NUM_CLASSES, 32, 32, generator=torch.Generator().manual_seed(0)))
    for case in (logits, quantized):
        out = fuse_center_offset(case, torch.zeros(case.shape[1:]), torch.zeros(2, *case.shape[1:]), THINGS)
        assert torch.equal(out.semantic, torch.argmax(case, dim=0))
    assert out.semantic.dtype == torch.int64
    out = fuse_center_offset(logits, torch.zeros(2, 3), torch.zeros(2, 2, 3), THINGS)
    assert out.semantic.tolist() == [[0, 4, 0], [0, 0, 11]]


@pytest.mark.parametrize("classes", [3, 19, 300])
def test_semantic_argmax_by_equality_is_torch_argmax_with_ties_infinities_and_nan(classes: int) -> None:
    generator = torch.Generator().manual_seed(classes)
    logits = torch.round(torch.randn(classes, 24, 40, generator=generator) * 2)  # many ties
    logits[classes - 1, 1, 1] = math.inf
    logits[[1, classes - 1], 1, 2] = math.inf  # tied at +inf: the lower class
    logits[:, 2, 2] = -math.inf  # every class at -inf: class 0
    assert torch.equal(semantic_argmax(logits), torch.argmax(logits, dim=0))
    assert torch.equal(semantic_argmax(logits, fewest_ops=True), torch.argmax(logits, dim=0))
    logits[[classes // 2, classes - 1], 5, 7] = math.nan  # NaN: its first NaN, as torch.argmax
    out = semantic_argmax(logits)
    assert torch.equal(out, torch.argmax(logits, dim=0))
    assert int(out[5, 7]) == classes // 2
    assert out.dtype == torch.int64


def test_integer_semantic_input_gives_the_same_segments_as_logits() -> None:
    outputs = synthetic_center_offset_outputs(48, 64, num_instances=8, seed=3)
    from_logits = fuse_center_offset(
        outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, _params()
    )
    semantic = outputs.semantic_logits.argmax(0).to(torch.int32)
    for num_classes in (None, 19):
        from_ids = fuse_center_offset(
            semantic,
            outputs.center_heatmap[0],
            outputs.offsets,
            outputs.thing_classes,
            _params(),
            num_classes=num_classes,
        )
        assert torch.equal(from_ids.panoptic, from_logits.panoptic)
        assert torch.equal(from_ids.instance, from_logits.instance)
        assert torch.equal(from_ids.segments.areas, from_logits.segments.areas)


def test_batch_matches_per_image_fusion() -> None:
    images = [synthetic_center_offset_outputs(40, 56, num_instances=6, seed=seed) for seed in (1, 2)]
    params = _params()
    batch = fuse_center_offset_batch(
        torch.stack([o.semantic_logits for o in images]),
        torch.stack([o.center_heatmap for o in images]),
        torch.stack([o.offsets for o in images]),
        images[0].thing_classes,
        params,
    )
    assert len(batch) == 2
    for result, o in zip(batch, images, strict=True):
        single = fuse_center_offset(o.semantic_logits, o.center_heatmap, o.offsets, o.thing_classes, params)
        assert torch.equal(result.panoptic, single.panoptic)
        assert torch.equal(result.segments.scores, single.segments.scores)


# ---------------------------------------------------------------------------------------------------
# equivalence with the reference


def assert_same_segments(ours: torch.Tensor, theirs: torch.Tensor, label_divisor: int = 1000) -> None:
    """Equal partitions of the pixels with equal classes per segment (instance numbers aside)."""
    assert ours.shape == theirs.shape
    assert torch.equal(ours < 0, theirs < 0), "void pixels differ"
    pairs = torch.unique(torch.stack((ours.reshape(-1), theirs.reshape(-1)), dim=1), dim=0)
    assert pairs[:, 0].unique().numel() == pairs.shape[0], "one of our segments spans several reference ones"
    assert pairs[:, 1].unique().numel() == pairs.shape[0], "one reference segment spans several of ours"
    valid = pairs[:, 0] >= 0
    assert torch.equal(pairs[valid, 0] // label_divisor, pairs[valid, 1] // label_divisor), "classes differ"


def _check_against_reference(
    semantic: torch.Tensor,
    heat: torch.Tensor,
    offsets: torch.Tensor,
    things: tuple[int, ...],
    params: CenterOffsetParams,
    *,
    num_classes: int | None = None,
) -> tuple[CenterOffsetOutput, ReferenceOutput]:
    ours = fuse_center_offset(semantic, heat, offsets, things, params, num_classes=num_classes)
    reference = reference_fusion(
        semantic,
        heat,
        offsets,
        things,
        center_threshold=params.center_threshold,
        nms_kernel=params.nms_kernel,
        top_k=params.top_k,
        stuff_area=params.stuff_area,
        label_divisor=params.label_divisor,
    )
    assert torch.equal(ours.semantic, reference.semantic)
    assert torch.equal(ours.centers, reference.centers)
    assert_same_segments(ours.panoptic, reference.panoptic, params.label_divisor)
    # the instance numbering rule is the published one too, so the ids agree exactly
    assert torch.equal(ours.panoptic, reference.panoptic)
    # our contiguous instance map is a relabeling of the reference's thing segments
    thing_pixels = ours.instance > 0
    is_thing_segment = torch.isin(reference.panoptic // params.label_divisor, torch.tensor(things))
    assert torch.equal(thing_pixels, (reference.panoptic >= 0) & is_thing_segment)
    assert_same_segments(
        torch.where(thing_pixels, ours.instance.long(), -1), torch.where(thing_pixels, reference.instance, -1)
    )
    return ours, reference


def _check_stats(
    ours: CenterOffsetOutput,
    reference: ReferenceOutput,
    *,
    heat: torch.Tensor,
    things: tuple[int, ...],
    logits: torch.Tensor | None,
    label_divisor: int,
) -> None:
    expected = reference_segment_stats(
        reference, heat, things, semantic_logits=logits, label_divisor=label_divisor
    )
    stats = ours.segments
    assert sorted(stats.ids.tolist()) == sorted(expected)
    for i, segment_id in enumerate(stats.ids.tolist()):
        segment = expected[segment_id]
        assert stats.classes[i] == segment.category
        assert bool(stats.is_thing[i]) == segment.is_thing
        assert stats.areas[i] == segment.area
        assert tuple(stats.bboxes[i].tolist()) == segment.bbox
        assert stats.centroids[i].tolist() == pytest.approx(segment.centroid, rel=1e-6)
        assert float(stats.scores[i]) == pytest.approx(segment.score, rel=1e-4)
        if segment.is_thing:
            assert int((ours.instance == i + 1).sum()) == segment.area


CASES = [
    # (seed, height, width, instances, quantize, params)
    (0, 96, 128, 15, False, {"stuff_area": 200}),
    (1, 64, 160, 25, False, {"stuff_area": 50, "top_k": 8}),
    (2, 120, 80, 10, True, {"stuff_area": 100}),
    (3, 80, 96, 20, True, {"nms_kernel": 3, "stuff_area": 30}),
    (4, 72, 72, 30, False, {"nms_kernel": 5, "top_k": None, "stuff_area": 0}),
    (5, 100, 140, 12, False, {"center_threshold": 0.3, "stuff_area": 2048}),
    (6, 50, 70, 40, True, {"nms_kernel": 1, "top_k": 20, "stuff_area": 10}),
    (7, 128, 192, 35, False, {}),
    (8, 90, 110, 18, True, {"top_k": 3, "stuff_area": 64, "label_divisor": 256}),
    (9, 60, 90, 22, False, {"nms_kernel": 9, "stuff_area": 1}),
]


@pytest.mark.parametrize(("seed", "height", "width", "instances", "quantize", "overrides"), CASES)
def test_matches_reference_on_realistic_outputs(
    *, seed: int, height: int, width: int, instances: int, quantize: bool, overrides: dict[str, object]
) -> None:
    outputs = synthetic_center_offset_outputs(
        height, width, num_instances=instances, seed=seed, quantize=quantize
    )
    params = CenterOffsetParams(**overrides)  # type: ignore[arg-type]
    ours, reference = _check_against_reference(
        outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, params
    )
    assert ours.centers.shape[0] > 0
    _check_stats(
        ours,
        reference,
        heat=outputs.center_heatmap,
        things=outputs.thing_classes,
        logits=outputs.semantic_logits,
        label_divisor=params.label_divisor,
    )


def test_random_cases_cover_the_interesting_situations() -> None:
    """The realistic cases above are not trivial: several instances per class, majority votes that
    are not unanimous, voided stuff and thing pixels of several classes in one instance."""
    multi_instance = not_unanimous = voided_stuff = 0
    for seed, height, width, instances, quantize, overrides in CASES:
        outputs = synthetic_center_offset_outputs(
            height, width, num_instances=instances, seed=seed, quantize=quantize
        )
        params = CenterOffsetParams(**overrides)  # type: ignore[arg-type]
        out = fuse_center_offset(
            outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, params
        )
        thing_classes = out.segments.classes[out.segments.is_thing]
        multi_instance += int((thing_classes.bincount() > 1).any())
        inside = out.instance > 0
        not_unanimous += int((out.semantic[inside] != (out.panoptic[inside] // params.label_divisor)).any())
        stuff_pixels = ~torch.isin(out.semantic, torch.tensor(outputs.thing_classes))
        voided_stuff += int((out.panoptic[stuff_pixels] < 0).any())
    assert multi_instance >= 5
    assert not_unanimous >= 5
    assert voided_stuff >= 3


@st.composite
def _tiny_scene(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, CenterOffsetParams]:
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 12))
    size = height * width
    semantic = torch.tensor(draw(st.lists(st.sampled_from([0, 1, 11, 12, 13]), min_size=size, max_size=size)))
    levels = [0.0, 0.05, 0.1, 0.2, 0.5, 0.9]  # plateaus, and values exactly at the threshold
    heat = torch.tensor(draw(st.lists(st.sampled_from(levels), min_size=size, max_size=size)))
    offsets = torch.tensor(
        draw(st.lists(st.integers(-3, 3), min_size=2 * size, max_size=2 * size)), dtype=torch.float32
    )
    if draw(st.booleans()):
        offsets = offsets + 0.5 * torch.tensor(
            draw(st.lists(st.integers(-1, 1), min_size=2 * size, max_size=2 * size)), dtype=torch.float32
        )
    params = CenterOffsetParams(
        center_threshold=draw(st.sampled_from([0.1, 0.0, 0.2])),
        nms_kernel=draw(st.sampled_from([1, 3, 5, 7])),
        top_k=draw(st.sampled_from([None, 1, 2, 3, 5, 200])),
        stuff_area=draw(st.integers(0, 8)),
        label_divisor=draw(st.sampled_from([1000, 300])),
    )
    return (
        semantic.view(height, width),
        heat.view(1, height, width),
        offsets.view(2, height, width),
        params,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tiny_scene())
def test_matches_reference_on_tiny_adversarial_scenes(
    scene: tuple[torch.Tensor, torch.Tensor, torch.Tensor, CenterOffsetParams],
) -> None:
    semantic, heat, offsets, params = scene
    things = (11, 12, 13)
    ours, reference = _check_against_reference(semantic, heat, offsets, things, params, num_classes=14)
    _check_stats(ours, reference, heat=heat, things=things, logits=None, label_divisor=params.label_divisor)


# ---------------------------------------------------------------------------------------------------
# no per-instance syncs


def test_device_reads_do_not_grow_with_the_number_of_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    few = synthetic_center_offset_outputs(96, 128, num_instances=2, seed=11)
    many = synthetic_center_offset_outputs(96, 128, num_instances=40, seed=11)
    thing_class_mask(few.thing_classes, 19, "cpu")  # warm the class-mask cache
    results = []
    for outputs in (few, many):
        with count_host_reads() as counts:
            out = fuse_center_offset(
                outputs.semantic_logits,
                outputs.center_heatmap,
                outputs.offsets,
                outputs.thing_classes,
                _params(),
                memory_budget_bytes=4096,
                kernels=False,  # the tensor steps (the compiled CPU loops read no tensor: below)
            )
        results.append((out.segments.ids.numel(), dict(counts)))
        with count_host_reads() as counts:
            fuse_center_offset(
                outputs.semantic_logits,
                outputs.center_heatmap,
                outputs.offsets,
                outputs.thing_classes,
                _params(),
            )
        assert dict(counts) == {}
    (few_segments, few_counts), (many_segments, many_counts) = results
    assert many_segments > few_segments + 20
    assert few_counts == many_counts
    # CPU path: the pixels above the center threshold, the centers kept, the thing pixels, the pixels
    # with near-tied centers, the segments' runs along the rows (nonzero), the segment count; no
    # boolean-mask indexing. Fixed per frame, whatever the number of instances.
    assert few_counts == {"nonzero": 5, "__int__": 1}
    assert "item" not in few_counts
    assert "tolist" not in few_counts


# ---------------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.gpu
@pytest.mark.parametrize("quantize", [True, False])
def test_cuda_matches_cpu_and_syncs_do_not_grow_with_instances(quantize: bool) -> None:
    """On CUDA: the same segments as the reference (on the same device), a fixed number of syncs.

    With whole-pixel offsets every distance is exact, so CPU and CUDA agree bit for bit. With
    continuous offsets CUDA's norm may add the two squares in another order than the CPU's (1 ulp),
    which can only move a pixel whose two nearest centers are that close: a few pixels at most.
    """
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    params = CenterOffsetParams(stuff_area=256)
    sync_counts = []
    for seed, instances in ((21, 3), (22, 60)):
        outputs = synthetic_center_offset_outputs(
            256, 512, num_instances=instances, seed=seed, quantize=quantize
        )
        inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets)
        cpu = fuse_center_offset(*inputs, outputs.thing_classes, params)
        cuda_inputs = [t.cuda() for t in inputs]
        fuse_center_offset(*cuda_inputs, outputs.thing_classes, params)  # warm-up, class-mask cache
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                gpu = fuse_center_offset(*cuda_inputs, outputs.thing_classes, params)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        sync_counts.append(sum("synchroniz" in str(w.message) for w in caught))
        assert gpu.panoptic.device.type == "cuda"
        assert gpu.segments.scores.device.type == "cuda"
        # the reference's grouping on the same device; its merge on the CPU, whose torch.mode tie
        # rule (the smallest class) is the one we reproduce
        reference = reference_fusion(*cuda_inputs, outputs.thing_classes, stuff_area=256)
        expected = reference_merge(
            reference.semantic.cpu(), reference.instance.cpu(), outputs.thing_classes, stuff_area=256
        )
        assert torch.equal(gpu.panoptic.cpu(), expected)
        assert torch.equal(gpu.centers.cpu(), cpu.centers)
        assert torch.equal(gpu.semantic.cpu(), cpu.semantic)
        if quantize:
            for name in ("panoptic", "instance"):
                assert torch.equal(getattr(gpu, name).cpu(), getattr(cpu, name)), name
            for name in ("ids", "classes", "is_thing", "areas", "bboxes"):
                assert torch.equal(getattr(gpu.segments, name).cpu(), getattr(cpu.segments, name)), name
            torch.testing.assert_close(gpu.segments.centroids.cpu(), cpu.segments.centroids)
            torch.testing.assert_close(gpu.segments.scores.cpu(), cpu.segments.scores, rtol=1e-4, atol=1e-6)
        else:
            assert int((gpu.panoptic.cpu() != cpu.panoptic).sum()) <= 3
    assert sync_counts[0] == sync_counts[1]
    assert sync_counts[0] <= 4


def test_merge_of_a_map_without_segments_is_empty() -> None:
    """An image without pixels of any segment yields empty statistics, not an error."""
    semantic = torch.full((3, 3), 12)
    merged = merge_segments(
        semantic, torch.zeros(3, 3, dtype=torch.int64), 0, thing_class_mask(THINGS, NUM_CLASSES, "cpu")
    )
    assert merged.segment_ids.numel() == 0
    assert (merged.panoptic == -1).all()
    assert (merged.segment_of_pixel == 0).all()  # 0 == S, the void segment


def test_thing_classes_as_bool_mask_or_indices() -> None:
    """A bool mask is read as a mask (never as indices 0/1), and gives the same fusion as indices."""
    from panoptic_ros.fusion.center_offset import thing_class_mask

    mask = torch.tensor([False, False, True, False, True])
    assert thing_class_mask(mask, 5, "cpu").tolist() == [False, False, True, False, True]
    assert thing_class_mask((2, 4), 5, "cpu").tolist() == [False, False, True, False, True]
    with pytest.raises(FusionInputError, match="num_classes=6"):
        thing_class_mask(mask, 6, "cpu")


@given(seed=st.integers(0, 10_000), centers=st.integers(0, 12), stuff_area=st.integers(1, 40))
@settings(max_examples=40, deadline=None)
def test_merge_counts_each_segments_pixels_from_the_votes(seed: int, centers: int, stuff_area: int) -> None:
    """The pixel count of every segment, summed from the (instance, class) votes, equals counting the
    segment map (void pixels belong to no segment)."""
    generator = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, 6, (17, 23), generator=generator)
    instance = torch.randint(0, centers + 1, (17, 23), generator=generator)
    things = torch.tensor([False, False, True, True, False, True])
    merged = merge_segments(semantic, instance, centers, things, stuff_area=stuff_area)
    segments = merged.segment_ids.numel()
    counted = torch.bincount(merged.segment_of_pixel.reshape(-1), minlength=segments + 1)[:segments]
    assert merged.segment_pixels is not None
    assert torch.equal(merged.segment_pixels, counted)
