"""INT8 calibration data for TensorRT: images from a folder or a rosbag2, preprocessed like inference.

TensorRT's INT8 (implicit quantization) needs the range of every activation, measured by running
representative inputs through the network. :func:`calibration_batches` reads those inputs — PNG/JPEG
files under a folder (recursively, in sorted path order) or the image messages of a rosbag2 folder
— and turns them into normalized ``N x 3 x H x W`` float32 batches with the same
:class:`~panoptic_ros.core.preprocess.Preprocessor` the pipeline uses, so the measured ranges are
those the network sees at run time.

Batches have a fixed size (TensorRT's calibrator declares one). A last, partial batch is padded by
repeating its own frames (``partial="pad"``, the default: every image is used, a few count twice)
or dropped (``partial="drop"``). ``max_images`` caps how many frames are read (TensorRT's guidance
is a few hundred representative images); ``stride`` takes every n-th frame, which matters for bags,
where neighbouring frames are nearly identical.

:func:`make_entropy_calibrator` wraps such batches in a ``tensorrt.IInt8EntropyCalibrator2``
(TensorRT is imported only when it is called) that hands TensorRT the CUDA tensors' device pointers
and reads and writes the calibration cache file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from panoptic_ros.backends.engine_cache import atomic_write_bytes
from panoptic_ros.backends.trt_common import import_tensorrt
from panoptic_ros.core.preprocess import Preprocessor
from panoptic_ros.errors import ImageDecodeError, PanopticRosError
from panoptic_ros.models.spec import InputSpec

log = logging.getLogger(__name__)

#: image files read from a calibration folder
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
DEFAULT_MAX_IMAGES = 500
DEFAULT_BATCH_SIZE = 8
PartialBatch = Literal["pad", "drop"]
SourceKind = Literal["images", "bag"]


class CalibrationError(PanopticRosError, ValueError):
    """Calibration data is missing, empty or unreadable; the message says which and what to give."""


@dataclass(frozen=True)
class CalibrationData:
    """Where calibration frames come from and how many to use.

    Attributes:
        source: a folder of PNG/JPEG images (searched recursively) or a rosbag2 folder.
        max_images: at most this many frames are used.
        batch_size: frames per calibration batch.
        stride: use every ``stride``-th frame of the source.
        topics: for a bag, the image topics to read (all image topics when empty).
        partial: what to do with a last batch of fewer than ``batch_size`` frames: ``pad`` it by
            repeating its frames, or ``drop`` it.
    """

    source: Path
    max_images: int = DEFAULT_MAX_IMAGES
    batch_size: int = DEFAULT_BATCH_SIZE
    stride: int = 1
    topics: tuple[str, ...] = ()
    partial: PartialBatch = "pad"

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "topics", tuple(self.topics))
        if self.max_images < 1:
            raise CalibrationError(f"max_images={self.max_images} must be >= 1")
        if self.batch_size < 1:
            raise CalibrationError(f"batch_size={self.batch_size} must be >= 1")
        if self.stride < 1:
            raise CalibrationError(f"stride={self.stride} must be >= 1")
        if self.partial not in ("pad", "drop"):
            raise CalibrationError(f"partial={self.partial!r} must be 'pad' or 'drop'")


def source_kind(source: Path) -> SourceKind:
    """``bag`` for a rosbag2 folder (it holds ``metadata.yaml``), ``images`` for another folder."""
    source = Path(source)
    if not source.exists():
        raise CalibrationError(
            f"calibration data {source} does not exist; give a folder of images or a rosbag2"
        )
    if not source.is_dir():
        raise CalibrationError(
            f"calibration data {source} is a file; give a folder of {'/'.join(IMAGE_SUFFIXES)} images or a "
            "rosbag2 folder"
        )
    return "bag" if (source / "metadata.yaml").is_file() else "images"


def image_files(folder: Path) -> list[Path]:
    """The PNG/JPEG files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"{path} is not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _folder_frames(folder: Path) -> Iterator[tuple[str, np.ndarray | Exception]]:
    files = image_files(folder)
    if not files:
        raise CalibrationError(
            f"calibration folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images; give a folder of "
            "representative camera images (a few hundred) or a rosbag2 folder"
        )
    for path in files:
        try:
            yield str(path), _read_image(path)
        except ImageDecodeError as err:
            yield str(path), err


def _bag_frames(bag: Path, topics: Sequence[str]) -> Iterator[tuple[str, np.ndarray | Exception]]:
    from panoptic_ros.core.image_codec import compressed_to_color, image_to_color
    from panoptic_ros.data.bags import BagError, read_images

    try:
        for item in read_images(bag, list(topics) or None):
            where = f"{bag} {item.topic} @ {item.log_time_ns}"
            if item.msg is None:
                yield where, CalibrationError(f"unreadable message: {item.error}")
                continue
            try:
                rgb = (
                    compressed_to_color(item.msg, "rgb")
                    if item.compressed
                    else image_to_color(item.msg, "rgb")
                )
            except ImageDecodeError as err:
                yield where, err
                continue
            # decoded frames may be read-only views of the message buffer; calibration keeps its own copy
            yield where, rgb if rgb.flags.writeable else rgb.copy()
    except BagError as err:
        raise CalibrationError(f"cannot read calibration bag: {err}") from err


def iter_frames(data: CalibrationData) -> Iterator[np.ndarray]:
    """The calibration frames of ``data`` as ``H x W x 3`` uint8 RGB arrays (every ``stride``-th,
    at most ``max_images``). Frames that cannot be decoded are skipped with a warning.

    Raises:
        CalibrationError: the source is missing or yields no usable frame.
    """
    kind = source_kind(data.source)
    frames = _bag_frames(data.source, data.topics) if kind == "bag" else _folder_frames(data.source)
    used = skipped = 0
    first_problem = ""
    for index, (where, frame) in enumerate(frames):
        if used >= data.max_images:
            break
        if index % data.stride:
            continue
        if isinstance(frame, Exception):
            skipped += 1
            first_problem = first_problem or f"{where}: {frame}"
            log.warning("calibration: skipping %s: %s", where, frame)
            continue
        used += 1
        yield frame
    if used == 0:
        detail = f" ({skipped} could not be decoded, first: {first_problem})" if skipped else ""
        raise CalibrationError(f"calibration data {data.source} gave no usable color image{detail}")
    if skipped:
        log.warning("calibration: used %d frames, skipped %d undecodable ones", used, skipped)


def batch_frames(
    frames: Iterable[np.ndarray], batch_size: int, partial: PartialBatch = "pad"
) -> Iterator[list[np.ndarray]]:
    """Group frames into lists of exactly ``batch_size``; a last partial group is padded by repeating
    its own frames in order (``pad``) or left out (``drop``)."""
    if batch_size < 1:
        raise CalibrationError(f"batch_size={batch_size} must be >= 1")
    group: list[np.ndarray] = []
    for frame in frames:
        group.append(frame)
        if len(group) == batch_size:
            yield group
            group = []
    if group and partial == "pad":
        yield [group[i % len(group)] for i in range(batch_size)]


def calibration_batches(
    data: CalibrationData, spec: InputSpec, device: torch.device
) -> Iterator[torch.Tensor]:
    """Preprocessed calibration batches (``batch_size x 3 x H x W`` float32 on ``device``), exactly as
    the pipeline preprocesses camera frames for ``spec``."""
    preprocess = Preprocessor(spec, device)
    for group in batch_frames(iter_frames(data), data.batch_size, data.partial):
        batch, _ = preprocess(group, order="rgb")
        yield batch.contiguous()


def make_entropy_calibrator(
    batches: Iterable[torch.Tensor],
    *,
    input_name: str,
    batch_size: int,
    cache_path: Path,
    read_cache: bool = True,
) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` fed by ``batches`` (CUDA tensors, ``batch_size`` each).

    TensorRT asks for batches with ``get_batch`` and is given each tensor's device pointer (the tensor
    is kept alive until the next call, and its stream is synchronized first, since TensorRT reads it
    on its own stream). With ``read_cache`` an existing ``cache_path`` is handed to TensorRT, which
    then skips calibration; the cache TensorRT computes is written to ``cache_path`` atomically.
    An error inside a callback (which TensorRT cannot carry back) ends calibration and is kept in the
    calibrator's ``error`` attribute for the caller to raise.

    Raises:
        BackendError: TensorRT is not installed.
    """
    trt = import_tensorrt()
    cache_path = Path(cache_path)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: BaseException | None = None
            self.batches_given = 0
            self._batches = iter(batches)
            self._current: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                unknown = [name for name in names if name != input_name]
                if unknown:
                    raise CalibrationError(
                        f"TensorRT asks for calibration inputs {unknown}; calibration data feeds only "
                        f"{input_name!r} (models with several inputs need their own calibrator)"
                    )
                batch = next(self._batches, None)
                if batch is None:
                    self._current = None
                    return None
                if batch.device.type != "cuda" or batch.shape[0] != batch_size:
                    raise CalibrationError(
                        f"calibration batch {tuple(batch.shape)} on {batch.device} must be a CUDA tensor of "
                        f"batch size {batch_size}"
                    )
                self._current = batch.contiguous().float()
                torch.cuda.current_stream(batch.device).synchronize()
                self.batches_given += 1
                return [int(self._current.data_ptr()) for _ in names]
            except Exception as err:  # TensorRT cannot receive a Python exception; keep it for the caller
                self.error = err
                log.error("INT8 calibration stopped: %s", err)
                return None

        def read_calibration_cache(self) -> bytes | None:
            if read_cache and cache_path.is_file():
                log.info("INT8 calibration: using the existing cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                atomic_write_bytes(cache_path, bytes(cache))
            except PanopticRosError as err:
                self.error = err
                log.error("INT8 calibration cache not written: %s", err)

    return EntropyCalibrator()
