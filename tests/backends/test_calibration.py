"""INT8 calibration data: image folders and rosbag2 files, preprocessed like inference."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.calibration import (
    CalibrationData,
    CalibrationError,
    batch_frames,
    calibration_batches,
    image_files,
    iter_frames,
    make_entropy_calibrator,
    source_kind,
)
from panoptic_ros.backends.trt_common import tensorrt_available
from panoptic_ros.core.image_encode import array_to_compressed, array_to_image
from panoptic_ros.core.preprocess import Preprocessor
from panoptic_ros.data.bags import FrameToWrite, write_images
from panoptic_ros.models.spec import InputSpec
from panoptic_ros.models.train import TrainConfig, synthetic_model_spec

TRT_MISSING = tensorrt_available()
requires_tensorrt = pytest.mark.skipif(
    TRT_MISSING is not None, reason=f"needs TensorRT and a CUDA GPU: {TRT_MISSING}"
)


@pytest.fixture(scope="module")
def input_spec() -> InputSpec:
    spec = synthetic_model_spec(TrainConfig(width=8)).input
    return replace(spec, height=32, width=64)


def rgb_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (24 + 2 * k, 40, 3), dtype=np.uint8) for k in range(count)]


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    folder = tmp_path / "calib"
    (folder / "sub").mkdir(parents=True)
    frames = rgb_frames(5)
    names = ["a.png", "b.PNG", "sub/c.png", "sub/d.png", "e.png"]
    for name, rgb in zip(names, frames, strict=True):
        assert cv2.imwrite(str(folder / name), np.ascontiguousarray(rgb[..., ::-1]))
    (folder / "notes.txt").write_text("not an image")
    return folder, [frames[i] for i in np.argsort([str(folder / n) for n in names])]


def test_image_folder_frames_are_rgb_in_path_order(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, expected = image_folder
    assert source_kind(folder) == "images"
    assert [p.name for p in image_files(folder)] == ["a.png", "b.PNG", "e.png", "c.png", "d.png"]
    frames = list(iter_frames(CalibrationData(folder)))
    assert len(frames) == 5
    for got, want in zip(frames, expected, strict=True):
        assert np.array_equal(got, want)


def test_jpeg_images_are_read(tmp_path: Path) -> None:
    rgb = np.full((16, 16, 3), (200, 40, 10), dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "x.jpg"), rgb[..., ::-1].copy())
    assert cv2.imwrite(str(tmp_path / "y.jpeg"), rgb[..., ::-1].copy())
    frames = list(iter_frames(CalibrationData(tmp_path)))
    assert len(frames) == 2
    assert all(np.abs(f.astype(int) - rgb).max() <= 3 for f in frames)  # JPEG is lossy, but RGB order


def test_cap_and_stride(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, expected = image_folder
    assert len(list(iter_frames(CalibrationData(folder, max_images=3)))) == 3
    strided = list(iter_frames(CalibrationData(folder, stride=2)))
    assert len(strided) == 3
    for got, want in zip(strided, expected[::2], strict=True):
        assert np.array_equal(got, want)


def test_corrupt_images_are_skipped_with_a_warning(
    image_folder: tuple[Path, list[np.ndarray]], caplog: pytest.LogCaptureFixture
) -> None:
    folder, _ = image_folder
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.backends.calibration"):
        frames = list(iter_frames(CalibrationData(folder)))
    assert len(frames) == 5
    assert "broken.png" in caplog.text


def test_missing_or_empty_sources_are_errors(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        list(iter_frames(CalibrationData(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match=r"holds no \.png/\.jpg/\.jpeg images"):
        list(iter_frames(CalibrationData(tmp_path / "empty")))
    (tmp_path / "one.png").write_bytes(b"x")
    with pytest.raises(CalibrationError, match="is a file"):
        list(iter_frames(CalibrationData(tmp_path / "one.png")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match=r"no usable color image.*1 could not be decoded"):
        list(iter_frames(CalibrationData(tmp_path / "bad")))
    for bad in ({"max_images": 0}, {"batch_size": 0}, {"stride": 0}, {"partial": "wrap"}):
        with pytest.raises(CalibrationError):
            CalibrationData(tmp_path, **bad)  # type: ignore[arg-type]


def test_partial_batches_are_padded_or_dropped() -> None:
    frames = rgb_frames(5)
    padded = list(batch_frames(frames, 2, "pad"))
    assert [len(b) for b in padded] == [2, 2, 2]
    assert padded[-1][0] is frames[4] and padded[-1][1] is frames[4]
    three = list(batch_frames(frames, 3, "pad"))
    assert [id(f) for f in three[-1]] == [id(frames[3]), id(frames[4]), id(frames[3])]
    assert [len(b) for b in batch_frames(frames, 2, "drop")] == [2, 2]
    assert [len(b) for b in batch_frames(frames, 5, "drop")] == [5]
    assert list(batch_frames(frames[:1], 4, "drop")) == []


def test_batches_are_preprocessed_exactly_like_inference(
    image_folder: tuple[Path, list[np.ndarray]], input_spec: InputSpec
) -> None:
    folder, expected = image_folder
    device = torch.device("cpu")
    batches = list(calibration_batches(CalibrationData(folder, batch_size=2), input_spec, device))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 32, 64)] * 3
    reference, _ = Preprocessor(input_spec, device)(expected, order="rgb")
    assert torch.equal(torch.cat(batches)[:5], reference)
    assert torch.equal(batches[-1][1], reference[4])  # the padding repeats the last frame
    dropped = list(
        calibration_batches(CalibrationData(folder, batch_size=2, partial="drop"), input_spec, device)
    )
    assert len(dropped) == 2
    bgr_spec = replace(input_spec, color_order="bgr")
    bgr = next(calibration_batches(CalibrationData(folder, batch_size=1), bgr_spec, device))
    bgr_reference, _ = Preprocessor(bgr_spec, device)([expected[0][..., ::-1].copy()], order="bgr")
    assert torch.equal(bgr, bgr_reference)


@pytest.fixture
def bag(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    frames = rgb_frames(4, seed=3)
    records = []
    for k, rgb in enumerate(frames):
        stamp = 1_000_000_000 * (k + 1)
        fields = (
            array_to_image(rgb, "rgb8")
            if k % 2 == 0
            else array_to_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
        )
        records.append(FrameToWrite("/cam/image_raw", stamp, "cam", fields))
        records.append(
            FrameToWrite(
                "/cam/compressed", stamp + 1, "cam", array_to_compressed(rgb, codec="png", order="rgb")
            )
        )
        records.append(
            FrameToWrite("/cam/depth", stamp + 2, "cam", array_to_image(np.zeros((8, 8), np.uint16), "16UC1"))
        )
    path = tmp_path / "bag"
    write_images(path, records)
    return path, frames


def test_bag_frames_decode_raw_and_compressed(bag: tuple[Path, list[np.ndarray]]) -> None:
    path, frames = bag
    assert source_kind(path) == "bag"
    raw = list(iter_frames(CalibrationData(path, topics=("/cam/image_raw",))))
    assert len(raw) == 4
    for got, want in zip(raw, frames, strict=True):  # rgb8 and bgr8 messages both come back RGB
        assert np.array_equal(got, want)
    compressed = list(iter_frames(CalibrationData(path, topics=("/cam/compressed",))))
    for got, want in zip(compressed, frames, strict=True):
        assert np.array_equal(got, want)


def test_bag_skips_non_color_topics_and_caps(
    bag: tuple[Path, list[np.ndarray]], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = bag
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.backends.calibration"):
        everything = list(iter_frames(CalibrationData(path)))
    assert len(everything) == 8  # the 16UC1 depth frames are skipped
    assert "/cam/depth" in caplog.text
    assert len(list(iter_frames(CalibrationData(path, max_images=3)))) == 3
    with pytest.raises(CalibrationError, match=r"no usable color image.*4 could not be decoded"):
        list(iter_frames(CalibrationData(path, topics=("/cam/depth",))))
    with pytest.raises(CalibrationError, match="no image topic"):
        list(iter_frames(CalibrationData(path, topics=("/other",))))


def test_bag_batches(bag: tuple[Path, list[np.ndarray]], input_spec: InputSpec) -> None:
    path, frames = bag
    data = CalibrationData(path, topics=("/cam/image_raw",), batch_size=3)
    batches = list(calibration_batches(data, input_spec, torch.device("cpu")))
    reference, _ = Preprocessor(input_spec, torch.device("cpu"))(frames, order="rgb")
    assert len(batches) == 2 and torch.equal(torch.cat(batches)[:4], reference)


@pytest.mark.skipif(TRT_MISSING != "TensorRT is not installed", reason="TensorRT is installed here")
def test_calibrator_without_tensorrt_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"TensorRT is not installed.*--backend onnxruntime or torch"):
        make_entropy_calibrator(iter(()), input_name="image", batch_size=1, cache_path=tmp_path / "c")


@pytest.mark.tensorrt
@requires_tensorrt
def test_entropy_calibrator_feeds_device_pointers_and_caches(
    image_folder: tuple[Path, list[np.ndarray]], input_spec: InputSpec, tmp_path: Path
) -> None:
    import tensorrt as trt

    folder, _ = image_folder
    device = torch.device("cuda")
    batches = list(calibration_batches(CalibrationData(folder, batch_size=2), input_spec, device))
    cache = tmp_path / "model.int8.calib"
    calibrator = make_entropy_calibrator(iter(batches), input_name="image", batch_size=2, cache_path=cache)
    assert isinstance(calibrator, trt.IInt8EntropyCalibrator2)
    assert calibrator.get_batch_size() == 2
    pointers = [calibrator.get_batch(["image"]) for _ in range(3)]
    assert all(p is not None and len(p) == 1 and p[0] != 0 for p in pointers)
    assert calibrator.get_batch(["image"]) is None and calibrator.error is None
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(b"TRT-calibration-cache")
    assert cache.read_bytes() == b"TRT-calibration-cache"
    assert calibrator.read_calibration_cache() == b"TRT-calibration-cache"
    wrong = make_entropy_calibrator(iter(batches), input_name="image", batch_size=2, cache_path=cache)
    assert wrong.get_batch(["other"]) is None and "other" in str(wrong.error)
