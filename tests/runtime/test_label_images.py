"""The label images at the camera's size: the same pixels on the side thread and on the caller's; large
images expanded beside the caller, small ones on it; and the engine's results the same with or
without the side thread, with the shipped model."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.core.preprocess import pixel_frame, plan
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.data.synthetic import generate
from panoptic_ros.runtime import FrameEngine, InputFrame
from panoptic_ros.runtime.label_images import SIDE_BYTES, LabelImages
from panoptic_ros.runtime.pipeline import PanopticPipeline
from panoptic_ros.runtime.side_thread import THREAD_NAME
from tests.conftest import REPO

MODEL = (48, 96)


def _label_set(largest_id: int) -> LabelSet:
    return LabelSet(
        "test", (Category(1, "road", False, (1, 2, 3)), Category(largest_id, "car", True, (4, 5, 6)))
    )


class _Recorded(LabelImages):
    """Notes the thread each expansion ran on."""

    def __init__(self, label_set: LabelSet) -> None:
        super().__init__(label_set)
        self.threads: list[str] = []

    def _expand(self, *args: object) -> tuple:  # type: ignore[override]
        self.threads.append(threading.current_thread().name)
        return super()._expand(*args)  # type: ignore[arg-type]


def _frame(camera: tuple[int, int]) -> PixelFrame:
    return pixel_frame(plan(camera, MODEL, "letterbox"), MODEL, torch.device("cpu"))  # type: ignore[arg-type]


@pytest.mark.parametrize("map_type", [np.int64, np.int32], ids=["cpu-maps", "downloaded-maps"])
@pytest.mark.parametrize("largest_id, dtype", [(200, np.uint8), (300, np.uint16)])
@pytest.mark.parametrize("camera", [(120, 160), (1080, 1920)], ids=["small", "large"])
def test_images_equal_the_expanded_maps_on_either_thread(
    camera: tuple[int, int], largest_id: int, dtype: type, map_type: type
) -> None:
    rng = np.random.default_rng(camera[0] + largest_id)
    semantic = rng.integers(0, largest_id + 1, size=MODEL).astype(map_type)
    ids = rng.integers(0, 5000, size=MODEL).astype(map_type)
    images = _Recorded(_label_set(largest_id))
    frame = _frame(camera)
    try:
        both = images.start(frame, semantic, ids).result()
        semantic_only = images.start(frame, semantic, None).result()
        ids_only = images.start(frame, None, ids).result()
        neither = images.start(frame, None, None).result()
    finally:
        images.close()
    expected = (frame.expand(semantic.astype(dtype)), frame.expand(ids.astype(np.int32)))
    for got, want in zip(both, expected, strict=True):
        assert got is not None and got.dtype == want.dtype and got.shape == camera
        assert np.array_equal(got, want)
    assert semantic_only[1] is None and np.array_equal(semantic_only[0], expected[0])
    assert ids_only[0] is None and np.array_equal(ids_only[1], expected[1])
    assert semantic_only[0].dtype == dtype and ids_only[1].dtype == np.int32
    assert neither == (None, None)
    large = [
        camera[0] * camera[1] * size >= SIDE_BYTES
        for size in (np.dtype(dtype).itemsize + 4, np.dtype(dtype).itemsize, 4, 0)
    ]
    assert camera == (120, 160) or large[0], "the large frame's images are large enough for the side thread"
    for thread, beside in zip(images.threads, large, strict=True):
        assert (thread == THREAD_NAME) == beside, (thread, beside)


def test_a_map_smaller_than_the_frame_s_is_refused() -> None:
    images = LabelImages(_label_set(200), side_thread=False)
    small = np.zeros((MODEL[0] - 1, MODEL[1]), dtype=np.int64)
    with pytest.raises(IndexError, match="of a"):
        images.start(_frame((120, 160)), small, None).result()
    with pytest.raises(IndexError, match="of a"):
        images.start(_frame((120, 160)), np.zeros(MODEL, dtype=np.int64), small).result()
    # positions read as unsigned by the compiled gather: a negative one is refused before it
    frame = _frame((120, 160))
    cols = frame.cols.host_index
    negative = frame._replace(cols=frame.cols._replace(host_index=cols - cols[0] - 1))
    with pytest.raises(IndexError, match=rf"from \({frame.rows.host_index[0]}, -1\)"):
        images.start(negative, np.zeros(MODEL, dtype=np.int64), None).result()


@pytest.fixture(scope="module")
def pipeline() -> PanopticPipeline:
    return PanopticPipeline(REPO / "engines" / "panoptic_synthetic.onnx", backend="onnxruntime", device="cpu")


def test_the_engine_gives_the_same_results_with_and_without_the_side_thread(
    pipeline: PanopticPipeline,
) -> None:
    """1280x720 frames (4.6 MB of label images: on the side thread) tracked over a sequence."""
    images = [cv2.resize(s.image, (1280, 720)) for s in generate(1, seed=8, sequence_length=5)]
    runs = []
    for side_thread in (True, False):
        engine = FrameEngine(pipeline, side_thread=side_thread)
        runs.append(
            [
                engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])[0]
                for k, image in enumerate(images)
            ]
        )
    for beside, inline in zip(*runs, strict=True):
        assert beside.semantic is not None and beside.instance_ids is not None
        assert np.array_equal(beside.semantic, inline.semantic)
        assert np.array_equal(beside.instance_ids, inline.instance_ids)
        assert np.array_equal(beside.overlay_bgr, inline.overlay_bgr)
        for name in beside.instances._fields:
            assert np.array_equal(getattr(beside.instances, name), getattr(inline.instances, name)), name
    assert any((r.instance_ids > 0).any() for r in runs[0]), "things are tracked in the frames compared"


def test_warm_up_frames_take_the_side_thread_whatever_their_size(pipeline: PanopticPipeline) -> None:
    """The thread starts, and pays for its first passes, before the first camera frame."""
    images = _Recorded(_label_set(200))
    try:
        maps = np.zeros(MODEL, dtype=np.int64)
        images.start(_frame((120, 160)), maps, maps, warm_up=True).result()
        images.start(_frame((120, 160)), maps, maps).result()
    finally:
        images.close()
    assert images.threads[0] == THREAD_NAME and images.threads[1] != images.threads[0]
    before = set(threading.enumerate())
    engine = FrameEngine(pipeline)
    engine.warm_up(1)
    started = [t for t in set(threading.enumerate()) - before if t.name.startswith(THREAD_NAME)]
    assert len(started) == 1, "the engine's warm-up started its side thread"
