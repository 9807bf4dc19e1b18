"""The compiled CPU fusion (:mod:`panoptic_ros.fusion.center_offset_cpu`) gives what the tensor
steps give, bit for bit: every map, every segment row, every statistic, with the same dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from panoptic_ros.core.preprocess import pixel_frame, plan
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion import (
    CenterOffsetOutput,
    CenterOffsetParams,
    FusionInputError,
    center_offset_cpu,
    fuse_center_offset,
    nearest_cpu,
)
from panoptic_ros.fusion import center_offset as tensor_steps
from panoptic_ros.fusion.center_offset_cpu import compile_kernels, semantic_argmax_cpu
from tests.fusion.reference import synthetic_center_offset_outputs

THINGS = (11, 12, 13)
CPU = torch.device("cpu")


def _both(
    logits: torch.Tensor,
    heat: torch.Tensor,
    offsets: torch.Tensor,
    things: tuple[int, ...],
    params: CenterOffsetParams,
    *,
    frame: PixelFrame | None = None,
) -> tuple[CenterOffsetOutput, CenterOffsetOutput]:
    """The fusion by the tensor steps and by the compiled loops, checked equal field by field: bit for
    bit, except the scores, whose softmax probabilities differ by float32 rounding (another ``exp``)."""
    tensor = fuse_center_offset(logits, heat, offsets, things, params, frame=frame, kernels=False)
    compiled = fuse_center_offset(logits, heat, offsets, things, params, frame=frame, kernels=True)
    for name in ("semantic", "panoptic", "instance", "centers", "center_scores"):
        _assert_identical(getattr(compiled, name), getattr(tensor, name), name)
    for name in tensor.segments._fields:
        ours, theirs = getattr(compiled.segments, name), getattr(tensor.segments, name)
        if name == "scores":
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0, equal_nan=True, msg="scores differ")
        else:
            _assert_identical(ours, theirs, f"segments.{name}")
    return tensor, compiled


def _assert_identical(ours: torch.Tensor, theirs: torch.Tensor, name: str) -> None:
    assert ours.dtype == theirs.dtype, f"{name}: {ours.dtype} != {theirs.dtype}"
    assert ours.shape == theirs.shape, f"{name}: {tuple(ours.shape)} != {tuple(theirs.shape)}"
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True, msg=f"{name} differs")


CASES = [
    # (seed, height, width, instances, quantize, params)
    (0, 96, 128, 15, False, {"stuff_area": 200}),
    (1, 64, 160, 25, False, {"stuff_area": 50, "top_k": 8}),
    (2, 120, 80, 10, True, {"stuff_area": 100}),
    (3, 80, 96, 20, True, {"nms_kernel": 3, "stuff_area": 30}),
    (4, 72, 72, 30, False, {"nms_kernel": 5, "top_k": None, "stuff_area": 0}),
    (6, 50, 70, 40, True, {"nms_kernel": 1, "top_k": 20, "stuff_area": 10}),
    (8, 90, 110, 18, True, {"top_k": 3, "stuff_area": 64, "label_divisor": 256}),
    (9, 192, 384, 30, False, {}),
]


@pytest.mark.parametrize(("seed", "height", "width", "instances", "quantize", "overrides"), CASES)
@pytest.mark.parametrize("camera", [None, "resize", "letterbox"])
def test_compiled_fusion_equals_the_tensor_steps(
    *,
    seed: int,
    height: int,
    width: int,
    instances: int,
    quantize: bool,
    overrides: dict[str, object],
    camera: str | None,
) -> None:
    outputs = synthetic_center_offset_outputs(
        height, width, num_instances=instances, seed=seed, quantize=quantize
    )
    frame = None
    if camera is not None:  # a camera frame of another size and aspect: weighted geometry
        frame = pixel_frame(
            plan((3 * height + 1, 2 * width - 3), (height, width), camera), (height, width), CPU
        )  # type: ignore[arg-type]
    params = CenterOffsetParams(**overrides)  # type: ignore[arg-type]
    tensor, _ = _both(
        outputs.semantic_logits,
        outputs.center_heatmap,
        outputs.offsets,
        outputs.thing_classes,
        params,
        frame=frame,
    )
    assert tensor.centers.shape[0] > 0
    assert bool(tensor.segments.is_thing.any()) and bool((~tensor.segments.is_thing).any())


@st.composite
def _tiny_scene(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, CenterOffsetParams]:
    """Small maps full of ties: logits of a few integer levels (argmax ties), heat plateaus and values
    at the threshold, integer and half-integer offsets (pixels equally far from two centers)."""
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 12))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    logits = torch.randint(0, 3, (14, height, width), generator=generator)
    levels = torch.tensor([0.0, 0.05, 0.1, 0.2, 0.5, 0.9])
    heat = levels[torch.randint(0, levels.numel(), (1, height, width), generator=generator)]
    offsets = torch.randint(-3, 4, (2, height, width), generator=generator).float()
    if draw(st.booleans()):
        offsets += 0.5 * torch.randint(-1, 2, (2, height, width), generator=generator)
    params = CenterOffsetParams(
        center_threshold=draw(st.sampled_from([0.1, 0.0, 0.2])),
        nms_kernel=draw(st.sampled_from([1, 3, 5, 7])),
        top_k=draw(st.sampled_from([None, 1, 2, 3, 5, 200])),
        stuff_area=draw(st.integers(0, 8)),
        label_divisor=draw(st.sampled_from([1000, 300])),
    )
    return logits.float(), heat, offsets, params


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tiny_scene())
def test_compiled_fusion_equals_the_tensor_steps_on_tiny_scenes_full_of_ties(
    scene: tuple[torch.Tensor, torch.Tensor, torch.Tensor, CenterOffsetParams],
) -> None:
    _both(*scene[:3], THINGS, scene[3])


def test_half_integer_offsets_tie_pixels_between_centers_and_they_go_to_the_lower_center() -> None:
    """Every pixel of a row pointed exactly between two centers: both paths send it to center 0."""
    logits = torch.zeros((14, 4, 9))
    logits[12] = 1.0  # a thing everywhere
    heat = torch.zeros((1, 4, 9))
    heat[0, 0, 1] = heat[0, 0, 7] = 0.9  # centers (0, 1) and (0, 7)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(9.0), indexing="ij")
    offsets = torch.stack((0.0 - rows, 4.0 - cols))  # every pixel lands on (0, 4): 3 from each center
    tensor, _ = _both(logits, heat, offsets, THINGS, CenterOffsetParams(stuff_area=1))
    assert torch.equal(tensor.instance, torch.ones((4, 9), dtype=torch.int32))


def _ops_of_compiled_fusion(centers: int, tied: bool) -> int:
    """Top-level PyTorch ops of the compiled fusion of a one-row thing map with ``centers`` centers
    along the first row; with ``tied``, every pixel points exactly between the first two."""
    width = 4 * centers + 1
    logits = torch.zeros((14, 3, width))
    logits[12] = 1.0
    heat = torch.zeros((1, 3, width))
    heat[0, 0, 1 : 4 * centers : 4] = 0.9  # centers (0, 1), (0, 5), ...
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(float(width)), indexing="ij")
    target = 3.0 if tied else 1.0  # (0, 3) is 2 from (0, 1) and from (0, 5)
    offsets = torch.stack((0.0 - rows, target - cols))
    params = CenterOffsetParams(stuff_area=1, top_k=None)
    fuse_center_offset(logits, heat, offsets, THINGS, params, kernels=True)  # compiled, caches filled
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fused = fuse_center_offset(logits, heat, offsets, THINGS, params, kernels=True)
    assert fused.centers.shape[0] == centers
    assert torch.equal(fused.instance, torch.ones((3, width), dtype=torch.int32))  # ties to center 0
    return sum(1 for event in prof.events() if event.cpu_parent is None)


def test_settling_near_ties_costs_the_same_ops_with_none_and_with_many_centers() -> None:
    """Near-tied pixels are settled inside the compiled search, not by PyTorch ops: a frame's op count
    depends neither on its ties nor on its number of centers."""
    counts = {(k, tied): _ops_of_compiled_fusion(k, tied) for k in (2, 40) for tied in (False, True)}
    assert len(set(counts.values())) == 1, counts


@njit(cache=False)
def _norms(differences: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(differences.shape[:2], dtype=np.float32)
    for i in range(differences.shape[0]):
        for k in range(differences.shape[1]):
            out[i, k] = nearest_cpu._vector_norm(differences[i, k, 0], differences[i, k, 1])
    return out


@pytest.mark.parametrize("centers", [1, 2, 7, 33])
def test_the_compiled_norm_is_torch_vector_norm_bit_for_bit(centers: int) -> None:
    """The near ties' distance is ``torch.linalg.vector_norm`` over ``[P, K, 2]`` differences, as the
    exhaustive search computes it, on spreads from sub-pixel to far beyond any image, with zeros and
    signs mixed (a plain ``sqrt(dy * dy + dx * dx)`` differs from it on about 8 % of such pairs)."""
    rng = np.random.default_rng(centers)
    scale = 10.0 ** rng.integers(-3, 6, size=(20_000, centers, 1))
    differences = (rng.standard_normal((20_000, centers, 2)) * scale).astype(np.float32)
    differences[:50] = np.round(differences[:50])  # integer offsets, exact squares
    differences[50:60, :, 0] = 0.0
    expected = torch.linalg.vector_norm(torch.from_numpy(differences), dim=-1).numpy()
    assert np.array_equal(_norms(differences), expected)
    plain = np.sqrt(differences[..., 0] * differences[..., 0] + differences[..., 1] * differences[..., 1])
    assert centers == 1 or not np.array_equal(plain, expected)  # the check above can tell them apart


def test_nan_logits_heat_and_offsets_follow_torch() -> None:
    """A NaN logit makes its class the pixel's argmax (``torch.argmax``); a NaN heat pixel is never a
    center and never suppresses its neighbours; a thing pixel with a NaN offset is grouped as the
    tensor search groups it."""
    outputs = synthetic_center_offset_outputs(48, 64, num_instances=8, seed=3)
    logits = outputs.semantic_logits.clone()
    logits[5, 10, 10] = math.nan
    logits[0, 20, 30] = logits[12, 20, 30] = math.nan
    heat = outputs.center_heatmap.clone()
    centers = tensor_steps.find_centers(heat).points
    y, x = (int(v) for v in centers[0])
    heat[0, y, x + 1] = math.nan
    heat[0, 0, 0] = math.nan
    offsets = outputs.offsets.clone()
    ys, xs = torch.nonzero(torch.isin(logits.argmax(0), torch.tensor(outputs.thing_classes)), as_tuple=True)
    offsets[0, ys[::5], xs[::5]] = math.nan
    offsets[1, ys[2::7], xs[2::7]] = math.nan
    tensor, _ = _both(logits, heat, offsets, outputs.thing_classes, CenterOffsetParams(stuff_area=16))
    assert int(tensor.semantic[10, 10]) == 5 and int(tensor.semantic[20, 30]) == 0
    assert [y, x] in tensor.centers.tolist()


@pytest.mark.parametrize("classes", [3, 19, 300])
def test_compiled_argmax_is_torch_argmax_with_ties_and_infinities(classes: int) -> None:
    generator = torch.Generator().manual_seed(classes)
    logits = torch.randint(0, 4, (classes, 33, 17), generator=generator).float()
    logits[:, 0, :5] = torch.inf
    logits[1, 1, :] = -torch.inf
    assert torch.equal(semantic_argmax_cpu(logits), logits.argmax(dim=0))


def test_the_kdtree_groups_where_auto_grouping_chooses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the pairs at which ``auto`` grouping takes the k-d tree, the compiled fusion takes it
    too, with the same result as the tensor steps (and as the exhaustive search below the limit)."""
    outputs = synthetic_center_offset_outputs(96, 128, num_instances=25, seed=4)
    inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes)
    params = CenterOffsetParams(stuff_area=64)
    exhaustive = fuse_center_offset(*inputs, params, kernels=True)
    calls = []
    real = tensor_steps._nearest_kdtree
    monkeypatch.setattr(tensor_steps, "KDTREE_FROM_PAIRS", 1)
    monkeypatch.setattr(tensor_steps, "_nearest_kdtree", lambda *a: calls.append(1) or real(*a))
    _, compiled = _both(*inputs, params)
    assert len(calls) == 2  # the tensor steps and the compiled fusion
    assert torch.equal(compiled.panoptic, exhaustive.panoptic)


def test_too_many_instances_for_the_label_divisor_is_refused_as_on_the_tensor_path() -> None:
    outputs = synthetic_center_offset_outputs(96, 128, num_instances=30, seed=2)
    params = CenterOffsetParams(top_k=None, label_divisor=2, stuff_area=1)
    inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, params)
    for kernels in (False, True):
        with pytest.raises(ConfigError, match="label_divisor=2"):
            fuse_center_offset(*inputs, kernels=kernels)


def test_frames_without_centers_or_segments() -> None:
    logits = torch.zeros((14, 8, 8))
    logits[12] = 1.0
    _both(logits, torch.zeros((1, 8, 8)), torch.zeros((2, 8, 8)), THINGS, CenterOffsetParams())  # void
    logits[12] = 0.0
    _both(logits, torch.zeros((1, 8, 8)), torch.zeros((2, 8, 8)), THINGS, CenterOffsetParams(stuff_area=1))


def test_the_compiled_fusion_is_refused_for_what_it_does_not_take() -> None:
    logits = torch.zeros((14, 8, 8), dtype=torch.float64)
    with pytest.raises(FusionInputError, match="float32"):
        fuse_center_offset(logits, torch.zeros((1, 8, 8)), torch.zeros((2, 8, 8)), THINGS, kernels=True)
    # None: used where it applies, the tensor steps elsewhere (float64 here)
    out = fuse_center_offset(
        logits, torch.zeros((1, 8, 8)), torch.zeros((2, 8, 8)), THINGS, CenterOffsetParams(stuff_area=1)
    )
    assert out.panoptic.dtype == torch.int64


def test_compile_kernels_readies_every_loop() -> None:
    compile_kernels()
    from panoptic_ros.core import segments_cpu

    loops = [segments_cpu.argmax_and_top, center_offset_cpu._centers,
             nearest_cpu._nearest, center_offset_cpu._merge, segments_cpu._measure]  # fmt: skip
    assert all(loop.signatures for loop in loops)


def test_shapes_that_disagree_are_refused() -> None:
    with pytest.raises(FusionInputError, match="shapes disagree"):
        fuse_center_offset(
            torch.zeros((14, 8, 8)), torch.zeros((1, 8, 9)), torch.zeros((2, 8, 8)), THINGS, kernels=True
        )
    with pytest.raises(FusionInputError, match=r"\[C, H, W\]"):
        fuse_center_offset(
            torch.zeros((8, 8)), torch.zeros((1, 8, 8)), torch.zeros((2, 8, 8)), THINGS, kernels=True
        )


def test_compiled_scores_are_the_numpy_formula_bit_for_bit() -> None:
    """Mean class probability over at least one pixel (float64 division, then float32), times the
    center's score for things (float32)."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        rows = 40
        prob_sum = rng.random(rows) * rng.integers(1, 10_000, rows)
        areas = rng.integers(0, 10_000, rows)  # some 0: divided by 1
        centers = np.where(rng.random(rows) < 0.5, rng.integers(0, 20, rows), -1)
        center_scores = rng.random(20).astype(np.float32)
        expected = (prob_sum / np.maximum(areas, 1)).astype(np.float32)
        things = centers >= 0
        expected[things] *= center_scores[centers[things]]
        assert np.array_equal(
            center_offset_cpu.segment_scores_cpu(prob_sum, areas, centers, center_scores), expected
        )
