"""The label maps' compiled expansion to the camera's size equals PyTorch's resampling of the map on
the device (``PixelFrame.resample``) for every label type the engine publishes, stretched and
letterboxed, for camera frames larger and smaller than the model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.core import resample_cpu
from panoptic_ros.core.preprocess import pixel_frame, plan
from panoptic_ros.core.resample_cpu import EXPANDED_TYPES, expand_map
from panoptic_ros.core.segments import PixelFrame

MODEL = (24, 40)


def frame_for(camera: tuple[int, int], mode: str) -> PixelFrame:
    return pixel_frame(plan(camera, MODEL, mode), MODEL, torch.device("cpu"))  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", EXPANDED_TYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("camera", [(48, 64), (30, 41), (13, 17), (24, 40), (97, 203)])
def test_expand_equals_resampling_on_the_device(camera: tuple[int, int], mode: str, dtype: type) -> None:
    rng = np.random.default_rng(camera[0] * 31 + camera[1])
    info = np.iinfo(dtype)
    labels = rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), size=MODEL, dtype=dtype)
    frame = frame_for(camera, mode)
    expanded = frame.expand(labels)
    expected = frame.resample(torch.from_numpy(labels.astype(np.int64))).numpy().astype(dtype)
    assert expanded.dtype == dtype and expanded.flags.c_contiguous
    assert expanded.shape == camera and np.array_equal(expanded, expected)


def test_a_strided_map_is_expanded_as_its_values() -> None:
    frame = frame_for((50, 70), "resize")
    wide = np.arange(MODEL[0] * MODEL[1] * 2, dtype=np.int32).reshape(MODEL[0], 2 * MODEL[1])
    view = wide[:, ::2]
    assert np.array_equal(frame.expand(view), frame.expand(np.ascontiguousarray(view)))


def test_an_image_with_channels_takes_the_same_pixels() -> None:
    frame = frame_for((30, 41), "letterbox")
    image = np.random.default_rng(3).integers(0, 256, size=(*MODEL, 3), dtype=np.uint8)
    expanded = frame.expand(image)
    for channel in range(3):
        assert np.array_equal(expanded[..., channel], frame.expand(np.ascontiguousarray(image[..., channel])))


def test_a_map_smaller_than_the_frame_is_refused() -> None:
    frame = frame_for((48, 64), "resize")
    with pytest.raises(IndexError, match="up to"):
        frame.expand(np.zeros((MODEL[0] - 1, MODEL[1]), dtype=np.int32))
    with pytest.raises(IndexError, match="up to"):
        frame.expand(np.zeros((MODEL[0], MODEL[1] - 1), dtype=np.int32))


def test_negative_positions_are_refused() -> None:
    """The compiled gathers read positions as unsigned (no negative-index check in their loops): a
    negative position is refused before them, as one past the map is."""
    frame = frame_for((48, 64), "resize")
    for axis, first in (("rows", r"\(-1, 0\)"), ("cols", r"\(0, -1\)")):
        positions = getattr(frame, axis).host_index
        shifted = getattr(frame, axis)._replace(host_index=positions - positions[0] - 1)
        with pytest.raises(IndexError, match="from " + first):
            frame._replace(**{axis: shifted}).expand(np.zeros(MODEL, dtype=np.int32))
    image, positions = np.zeros((4, 5), dtype=np.float32), np.arange(3)
    with pytest.raises(IndexError, match="negative"):
        resample_cpu.sample_map(image, positions - 1, positions)
    with pytest.raises(IndexError, match="negative"):
        resample_cpu.sample_map(image, positions, positions - 1)


def test_rows_copying_the_row_above_are_its_copies() -> None:
    """The pass copies a camera row from the one above only where both copy one model row: rows
    that go back to an earlier model row (not a frame's mapping, but the loop allows it) are
    gathered."""
    labels = np.arange(12, dtype=np.int64).reshape(3, 4)
    rows = np.array([0, 0, 2, 1, 1, 0], dtype=np.int64)
    cols = np.array([3, 0, 0, 2], dtype=np.int64)
    assert np.array_equal(expand_map(labels, rows, cols), labels[rows][:, cols])


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("camera", [(48, 64), (30, 41), (13, 17), (24, 40), (97, 203)])
def test_sampling_a_depth_image_gathers_the_middle_camera_pixels(camera: tuple[int, int], mode: str) -> None:
    """A float32 depth image (NaN where invalid) sampled at the model's pixels by the compiled gather
    equals numpy's two ``take`` calls, bit for bit; other layouts and types still take that path."""
    rng = np.random.default_rng(camera[0] * 7 + camera[1])
    depth = rng.uniform(0.1, 80.0, size=camera).astype(np.float32)
    depth[rng.random(camera) < 0.2] = np.nan
    frame = frame_for(camera, mode)
    expected = depth.take(frame.rows.host_middle, axis=0).take(frame.cols.host_middle, axis=1)
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        gather = resample_cpu.sample_rows
        patch.setattr(resample_cpu, "sample_rows", lambda *a: calls.append(a) or gather(*a))
        sampled = frame.sample(depth)
        read_only = depth.view()
        read_only.flags.writeable = False  # a layout the gather is not compiled for: numpy's path
        assert np.array_equal(frame.sample(read_only), expected, equal_nan=True)
    assert len(calls) == 1, "the writable float32 image took the compiled gather"
    assert sampled.shape == MODEL and sampled.dtype == np.float32
    assert np.array_equal(sampled, expected, equal_nan=True)
    padded = np.zeros((camera[0], camera[1] + 3), dtype=np.float32)[:, : camera[1]]
    padded[:] = depth  # rows with padding: not C-contiguous
    assert np.array_equal(frame.sample(padded), expected, equal_nan=True)
    assert np.array_equal(frame.sample(depth.astype(np.float64)), expected.astype(np.float64), equal_nan=True)


def test_sampling_an_image_smaller_than_the_frame_is_refused() -> None:
    frame = frame_for((48, 64), "resize")
    with pytest.raises(IndexError, match="smaller than the frame"):
        frame.sample(np.zeros((20, 64), dtype=np.float32))
