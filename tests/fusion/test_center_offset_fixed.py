"""Fixed-shape center-offset fusion: the data-dependent fusion's segments in fixed shapes, no host read."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.counting import count_host_reads
from panoptic_ros.core.preprocess import pixel_frame, plan
from panoptic_ros.fusion import CenterOffsetParams, FusionInputError, fuse_center_offset, thing_class_mask
from panoptic_ros.fusion.center_offset_fixed import (
    FixedCenterOffsetOutput,
    center_slots,
    find_centers_fixed,
    fuse_center_offset_fixed,
)
from tests.fusion.reference import synthetic_center_offset_outputs

NUM_CLASSES = 19


def _check_equal(
    fixed: FixedCenterOffsetOutput, dynamic_out: object, *, slots: int, num_classes: int = NUM_CLASSES
) -> None:
    """The fixed output holds the dynamic one: same maps, the same rows first, padding after."""
    for name in ("semantic", "panoptic", "instance"):
        assert torch.equal(getattr(fixed, name), getattr(dynamic_out, name)), name
    count = int(fixed.centers.valid.sum())
    assert torch.equal(fixed.centers.points[:count], dynamic_out.centers)  # type: ignore[attr-defined]
    assert torch.equal(fixed.centers.scores[:count], dynamic_out.center_scores)  # type: ignore[attr-defined]
    assert not bool(fixed.centers.valid[count:].any())
    expected = dynamic_out.segments  # type: ignore[attr-defined]
    got = fixed.segments
    rows = expected.ids.numel()
    assert got.ids.numel() == slots + num_classes
    for name in ("ids", "classes", "is_thing", "areas", "bboxes"):
        assert torch.equal(getattr(got, name)[:rows], getattr(expected, name)), name
    torch.testing.assert_close(got.centroids[:rows], expected.centroids)
    torch.testing.assert_close(got.scores[:rows], expected.scores)
    # padding rows: no segment
    assert bool((got.ids[rows:] == -1).all())
    assert bool((got.areas[rows:] == 0).all())
    assert not bool(got.is_thing[rows:].any())
    assert bool((got.scores[rows:] == 0).all())


@pytest.mark.parametrize(
    ("instances", "seed", "quantize", "top_k"),
    [(3, 1, False, 200), (40, 2, False, 200), (25, 3, True, 200), (30, 4, False, 12), (20, 5, True, None)],
)
def test_equals_the_data_dependent_fusion(
    instances: int, seed: int, quantize: bool, top_k: int | None
) -> None:
    outputs = synthetic_center_offset_outputs(96, 128, num_instances=instances, seed=seed, quantize=quantize)
    params = CenterOffsetParams(stuff_area=64, top_k=top_k)
    inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, params)
    dynamic_out = fuse_center_offset(*inputs, num_classes=NUM_CLASSES)
    fixed = fuse_center_offset_fixed(*inputs, num_classes=NUM_CLASSES, memory_budget_bytes=64 * 1024)
    _check_equal(fixed, dynamic_out, slots=center_slots(top_k))
    assert int(fixed.centers.dropped) == 0
    if top_k == 12:
        assert int(fixed.centers.valid.sum()) == 11  # the 12th largest and below are not kept


def test_measures_in_the_camera_frame_as_the_data_dependent_fusion() -> None:
    outputs = synthetic_center_offset_outputs(96, 128, num_instances=15, seed=9)
    frame = pixel_frame(plan((190, 250), (96, 128), "letterbox"), (96, 128), torch.device("cpu"))
    params = CenterOffsetParams(stuff_area=64)
    inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, params)
    dynamic_out = fuse_center_offset(*inputs, num_classes=NUM_CLASSES, frame=frame)
    fixed = fuse_center_offset_fixed(*inputs, num_classes=NUM_CLASSES, frame=frame)
    _check_equal(fixed, dynamic_out, slots=200)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    instances=st.integers(0, 30),
    top_k=st.sampled_from([None, 1, 5, 200]),
    kernel=st.sampled_from([1, 3, 7]),
    quantize=st.booleans(),
)
def test_equals_the_data_dependent_fusion_on_random_scenes(
    seed: int, instances: int, top_k: int | None, kernel: int, quantize: bool
) -> None:
    outputs = synthetic_center_offset_outputs(
        40, 56, num_instances=instances, seed=seed, quantize=quantize, heat_noise=0.1
    )
    params = CenterOffsetParams(stuff_area=16, top_k=top_k, nms_kernel=kernel)
    inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes, params)
    dynamic_out = fuse_center_offset(*inputs, num_classes=NUM_CLASSES)
    found = dynamic_out.centers.shape[0]
    fixed = fuse_center_offset_fixed(*inputs, num_classes=NUM_CLASSES, max_centers=max(found, 1) + 2)
    _check_equal(fixed, dynamic_out, slots=center_slots(top_k, max(found, 1) + 2))


def test_centers_beyond_the_slots_are_dropped_and_counted() -> None:
    heat = torch.zeros(1, 20, 40)
    peaks = [(2, 2, 0.5), (2, 12, 0.9), (2, 22, 0.7), (12, 2, 0.6), (12, 12, 0.8)]
    for y, x, value in peaks:
        heat[0, y, x] = value
    centers = find_centers_fixed(heat, top_k=None, max_centers=3)
    assert int(centers.dropped) == 2
    # the three highest stay, in row-major order
    assert centers.points.tolist() == [[2, 12], [2, 22], [12, 12]]
    assert centers.valid.tolist() == [True, True, True]
    roomy = find_centers_fixed(heat, top_k=None, max_centers=8)
    assert int(roomy.dropped) == 0
    assert roomy.points[:5].tolist() == [[2, 2], [2, 12], [2, 22], [12, 2], [12, 12]]
    assert roomy.points[5:].tolist() == [[-1, -1]] * 3
    assert roomy.scores[5:].tolist() == [0.0] * 3


def test_no_host_read_and_the_same_shapes_whatever_the_scene() -> None:
    few = synthetic_center_offset_outputs(96, 128, num_instances=2, seed=11)
    many = synthetic_center_offset_outputs(96, 128, num_instances=40, seed=11)
    thing_class_mask(few.thing_classes, NUM_CLASSES, "cpu")  # warm the class-mask cache
    shapes = []
    for outputs in (few, many):
        with count_host_reads() as counts:
            out = fuse_center_offset_fixed(
                outputs.semantic_logits,
                outputs.center_heatmap,
                outputs.offsets,
                outputs.thing_classes,
                CenterOffsetParams(stuff_area=64),
                num_classes=NUM_CLASSES,
            )
        assert dict(counts) == {}
        shapes.append([tuple(t.shape) for t in (*out.segments, *out.centers, out.panoptic)])
    assert shapes[0] == shapes[1]
    assert int(few.center_heatmap.gt(0.1).sum()) > 0


def test_logits_must_match_the_class_count() -> None:
    outputs = synthetic_center_offset_outputs(24, 32, num_instances=2, seed=1)

    with pytest.raises(FusionInputError, match="expected 7"):
        fuse_center_offset_fixed(
            outputs.semantic_logits, outputs.center_heatmap, outputs.offsets, outputs.thing_classes,
            num_classes=7,
        )  # fmt: skip


@pytest.mark.gpu
def test_cuda_equals_the_cpu_and_makes_no_sync() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    outputs = synthetic_center_offset_outputs(192, 384, num_instances=30, seed=21, quantize=True)
    params = CenterOffsetParams(stuff_area=256)
    inputs = (outputs.semantic_logits, outputs.center_heatmap, outputs.offsets)
    cpu = fuse_center_offset(*inputs, outputs.thing_classes, params, num_classes=NUM_CLASSES)
    cuda_inputs = [t.cuda() for t in inputs]
    fuse_center_offset_fixed(*cuda_inputs, outputs.thing_classes, params, num_classes=NUM_CLASSES)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = fuse_center_offset_fixed(*cuda_inputs, outputs.thing_classes, params, num_classes=NUM_CLASSES)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    moved = FixedCenterOffsetOutput(
        gpu.semantic.cpu(),
        gpu.panoptic.cpu(),
        gpu.instance.cpu(),
        type(gpu.centers)(*(t.cpu() for t in gpu.centers)),
        type(gpu.segments)(*(t.cpu() for t in gpu.segments)),
    )
    _check_equal(moved, cpu, slots=200)
