"""The warm-up frames: every part of the frame path a camera frame may take (a resize with letterbox
padding, depth and a camera model, every output), batched alone and as the cameras, each size with
cameras of its own and stamps that increase; what they leave in the engine is forgotten."""

from __future__ import annotations

import pytest

from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine
from panoptic_ros.runtime.pipeline import PanopticPipeline
from panoptic_ros.runtime.warm_up import is_warm_up, warm_up_batches, warm_up_sizes


@pytest.fixture(scope="module")
def engine() -> FrameEngine:
    return FrameEngine(PanopticPipeline(default_model(), backend="onnxruntime", device="cpu"))


@pytest.mark.parametrize("model", [(192, 384), (480, 640), (512, 512)])
def test_the_second_size_is_a_larger_four_by_three_frame(model: tuple[int, int]) -> None:
    first, second = warm_up_sizes(*model)
    assert first == model
    assert second[1] > model[1] and second[0] * 4 == second[1] * 3


def test_batches_cover_every_size_alone_and_batched_with_depth_and_every_output(engine: FrameEngine) -> None:
    spec = engine.pipeline.spec.input
    batches = list(warm_up_batches(engine.pipeline, 2, cameras=3))
    sizes = warm_up_sizes(spec.height, spec.width)
    assert [len(b) for b in batches] == [1, 3] * len(sizes) * 2
    assert [b[0].image.shape[:2] for b in batches] == [s for s in sizes for _ in (1, 3)] * 2
    stamps: dict[str, list[int]] = {}
    for batch in batches:
        for frame in batch:
            assert is_warm_up(frame.camera) and frame.depth is not None and frame.camera_model is not None
            assert frame.depth.shape == frame.image.shape[:2]
            assert (frame.camera_model.height, frame.camera_model.width) == frame.image.shape[:2]
            assert frame.overlay and frame.points and frame.positions
            assert frame.semantic_image and frame.instance_image
            stamps.setdefault(frame.camera, []).append(frame.stamp_ns)
    assert all(s == sorted(set(s)) for s in stamps.values()), "stamps increase per camera"
    sizes_of = {c: {f.image.shape[:2] for b in batches for f in b if f.camera == c} for c in stamps}
    assert all(len(s) == 1 for s in sizes_of.values()), "no camera changes geometry"
    assert {batch[0].order for batch in batches} == {"rgb", "bgr"}
    assert len(list(warm_up_batches(engine.pipeline, 1, cameras=99))[1]) == spec.max_batch


def test_no_frames_no_batches_and_forgetting_drops_only_the_warm_up(engine: FrameEngine) -> None:
    assert list(warm_up_batches(engine.pipeline, 0, cameras=3)) == []
    engine.reset()
    for batch in warm_up_batches(engine.pipeline, 1, cameras=2):
        engine.process(batch)
    from panoptic_ros.runtime import InputFrame

    first = next(warm_up_batches(engine.pipeline, 1))[0]
    engine.process([InputFrame("/camera/image_raw", first.image, 0)])
    assert any(is_warm_up(c) for c in engine._streams) and engine.stage_times()
    engine.forget_warm_up()
    assert list(engine._streams) == ["/camera/image_raw"] and engine.stage_times() == {}
