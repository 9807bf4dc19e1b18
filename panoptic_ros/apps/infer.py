"""``panoptic-ros infer``: the frame engine over images, a folder, sequences, a video or a bag; COCO
panoptic predictions (``panoptic/``, ``panoptic.json``), overlay images (``overlay/``), the instance
table of every frame (``instances.jsonl``: the fields of ``panoptic/instances``, one line per frame)
and, with ``--label-maps``, the label images (``labels/<stem>.npz``: ``semantic``, ``instance_ids``).

Frames go through the same :class:`~panoptic_ros.runtime.FrameEngine` as in the node and ``bag
process``; a bag is read by the same :class:`~panoptic_ros.apps.bag_frames.BagFrames` (depth and
camera_info matched, so instances carry 3D positions), so ``infer --track`` on a bag gives the label
images and instance tables that ``bag process`` writes. With tracking, each stream (a folder of
frames, each ``seq_*`` sub-folder of a sequences folder, a video, each camera topic of a bag) gets
its own tracker, and the segment id of every thing in the written PNGs is its track id, stable across
the stream's frames, so ``eval --video`` can score it. Frame stamps come from the bag headers, the
video's timestamps, or ``index / fps`` for image folders.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from panoptic_ros.apps.bag_frames import BagFrames, ReadOptions
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.bag_io import message_counts
from panoptic_ros.data.coco_format import SegmentInfo
from panoptic_ros.data.coco_panoptic import JSON_NAME, CocoPanopticWriter
from panoptic_ros.data.label_maps import label_segments
from panoptic_ros.errors import ConfigError
from panoptic_ros.runtime import FrameEngine, FrameResult, InputFrame

log = logging.getLogger(__name__)

#: The instance tables of a folder, one JSON line per frame.
INSTANCES_NAME = "instances.jsonl"

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class Frame(NamedTuple):
    """An input frame: a unique stem for its output files, the pixels (``H x W x 3`` uint8 BGR, as
    OpenCV reads files and videos; the engine takes them in that order), its stamp in nanoseconds,
    and the camera it came from (a bag topic; empty otherwise)."""

    stem: str
    bgr: np.ndarray
    stamp_ns: int
    camera: str = ""


class Stream(NamedTuple):
    """Frames written to one output folder (``name`` below ``--out``; empty for ``--out`` itself)."""

    name: str
    count: int | None
    frames: Iterator[Frame]


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"{path} is not a readable image")
    return bgr


def _image_files(folder: Path) -> list[Path]:
    folder = folder / "images" if (folder / "images").is_dir() else folder
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _is_sequence_folder(folder: Path) -> bool:
    return (folder / JSON_NAME).is_file() or (folder / "images").is_dir()


def iterate_streams(source: Path, *, fps: float = 10.0) -> list[Stream]:
    """The streams of an input that is not a bag: an image file, a folder of images (or a COCO
    panoptic folder's ``images/``), a folder of sequence folders, or a video file."""
    if not source.exists():
        raise ConfigError(f"input {source} does not exist")
    if fps <= 0:
        raise ConfigError(f"--fps {fps} must be positive")
    period = round(1e9 / fps)
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [Stream("", 1, iter([Frame(source.stem, _read_image(source), 0)]))]
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        return [_video(source, fps)]
    if source.is_dir():
        if not _is_sequence_folder(source):
            sequences = sorted(p for p in source.iterdir() if p.is_dir() and _is_sequence_folder(p))
            if sequences:
                return [_folder_stream(p, p.name, period) for p in sequences]
        return [_folder_stream(source, "", period)]
    raise ConfigError(
        f"{source}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}), a folder of images or sequences, or a rosbag2 folder"
    )


def _folder_stream(folder: Path, name: str, period_ns: int) -> Stream:
    files = _image_files(folder)
    if not files:
        raise ConfigError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    frames = (Frame(p.stem, _read_image(p), i * period_ns) for i, p in enumerate(files))
    return Stream(name, len(files), frames)


def _video(path: Path, fps: float) -> Stream:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConfigError(f"{path}: OpenCV cannot open this video")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    video_fps = capture.get(cv2.CAP_PROP_FPS) or fps

    def frames() -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                stamp = round(index * 1e9 / video_fps)
                yield Frame(f"{path.stem}_{index:06d}", bgr, stamp)
                index += 1
        finally:
            capture.release()

    return Stream("", count, frames())


def run_infer(
    engine: FrameEngine,
    source: Path,
    out: Path,
    *,
    overlays: bool = True,
    overwrite: bool = False,
    label_maps: bool = False,
    fps: float = 10.0,
) -> int:
    """Run ``engine`` over ``source`` and write predictions under ``out`` (one COCO panoptic folder
    per stream). Tracking follows ``engine.params``. Returns the number of frames."""
    if source.is_dir() and (source / "metadata.yaml").is_file():
        reader = BagFrames(source, ReadOptions(overlay=overlays))
        total = sum(message_counts(source, list(reader.cameras)).values())
        batches: Iterator[list[tuple[str, InputFrame]]] = (
            [(_bag_stem(item.frame), item.frame) for item in batch] for batch in reader.batches()
        )
        streams = [("", total, batches)]
    else:
        streams = [
            (s.name, s.count, _batches(s, engine.spec.input.max_batch, overlays))
            for s in iterate_streams(source, fps=fps)
        ]
    total_frames = sum(count or 0 for _, count, _ in streams) or None
    count = 0
    with tqdm(total=total_frames, desc=f"infer ({engine.describe()})", unit="frame") as bar:
        for name, _, stream_batches in streams:
            folder = out / name if name else out
            with _Writer(
                folder, engine, overwrite=overwrite, overlays=overlays, label_maps=label_maps
            ) as writer:
                for batch in stream_batches:
                    for (stem, _), result in zip(batch, engine.process([f for _, f in batch]), strict=True):
                        writer.add(stem, result)
                        count += 1
                        bar.update(1)
            engine.reset()  # a new stream starts without history
    return count


def _bag_stem(frame: InputFrame) -> str:
    return f"{frame.camera.strip('/').replace('/', '_')}_{frame.stamp_ns}"


def _batches(stream: Stream, size: int, overlays: bool) -> Iterator[list[tuple[str, InputFrame]]]:
    """Consecutive frames of one stream, ``size`` at a time."""
    batch: list[tuple[str, InputFrame]] = []
    for frame in stream.frames:
        camera = frame.camera or stream.name or "frames"
        batch.append(
            (
                frame.stem,
                InputFrame(
                    camera=camera, image=frame.bgr, stamp_ns=frame.stamp_ns, overlay=overlays, order="bgr"
                ),
            )
        )
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Writer:
    """The files of one output folder: COCO panoptic PNGs and JSON, overlays, ``instances.jsonl`` and
    optionally the label maps."""

    def __init__(
        self, folder: Path, engine: FrameEngine, *, overwrite: bool, overlays: bool, label_maps: bool
    ) -> None:
        self.folder = folder
        self.label_set = engine.label_set
        self.names = {c.id: c.name for c in engine.label_set.categories}
        self.coco = CocoPanopticWriter(folder, engine.label_set, overwrite=overwrite)
        self.overlays = overlays
        self.label_maps = label_maps
        for sub in (["overlay"] if overlays else []) + (["labels"] if label_maps else []):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self._jsonl = None

    def __enter__(self) -> _Writer:
        self.coco.__enter__()
        self._jsonl = (self.folder / INSTANCES_NAME).open("w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        self.coco.__exit__(*exc)  # type: ignore[arg-type]

    def add(self, stem: str, result: FrameResult) -> None:
        segment_map, segments = coco_segments(result, self.label_set)
        self.coco.add(stem, None, segment_map, segments)
        record = {
            "file": stem,
            "camera": result.camera,
            "stamp_ns": result.stamp_ns,
            "frame_id": result.frame_id,
            "height": result.height,
            "width": result.width,
            "instances": list(result.instances.rows(self.names)),
        }
        self._jsonl.write(json.dumps(record) + "\n")  # type: ignore[union-attr]
        if self.label_maps:
            np.savez_compressed(
                self.folder / "labels" / f"{stem}.npz",
                semantic=result.semantic,
                instance_ids=result.instance_ids,
            )
        if self.overlays and result.overlay_bgr is not None:
            cv2.imwrite(str(self.folder / "overlay" / f"{stem}.jpg"), result.overlay_bgr)


def coco_segments(result: FrameResult, label_set: LabelSet) -> tuple[np.ndarray, list[SegmentInfo]]:
    """A result as a COCO segment map and its ``segments_info`` by the rule of
    :mod:`panoptic_ros.data.label_maps`: things keep their instance (track) ids, things without a
    published track form one crowd segment per category, stuff of category ``c`` is
    ``STUFF_SEGMENT_BASE + c``, void is 0."""
    table = result.instances
    things = table.is_thing & (table.areas > 0)
    categories = dict(zip(table.ids[things].tolist(), table.category_ids[things].tolist(), strict=True))
    return label_segments(
        result.semantic, result.instance_ids, label_set, thing_categories=categories, source=result.camera
    )
