"""``panoptic-ros infer``: run the pipeline over images, a folder, sequences, a video or a bag, and write
COCO-panoptic predictions (``panoptic/``, ``panoptic.json``) plus overlay images (``overlay/``).

With tracking, each stream (a folder of frames, each ``seq_*`` sub-folder of a sequences folder, a
video, or each camera topic of a bag) gets its own tracker, and the segment id of every thing in the
written PNGs is its track id, stable across the stream's frames, so ``eval --video`` can score it.
Frame stamps come from the bag headers, the video's timestamps, or ``index / fps`` for image folders.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from panoptic_ros.core.ids import STUFF_SEGMENT_BASE
from panoptic_ros.core.overlay import overlay, tracked_display_map
from panoptic_ros.core.pipeline import FrameOutput, PanopticPipeline
from panoptic_ros.data.coco_panoptic import (
    JSON_NAME,
    CocoPanopticWriter,
    segments_from_map,
    segments_from_panoptic,
)
from panoptic_ros.errors import ConfigError
from panoptic_ros.tracking import Tracker, TrackerInput, TrackerOutput, TrackerParams

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class Frame(NamedTuple):
    """An input frame: a unique stem for its output files, the pixels (``H x W x 3`` uint8 RGB), its
    stamp in nanoseconds, and the camera it came from (a bag topic; empty otherwise)."""

    stem: str
    rgb: np.ndarray
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
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _image_files(folder: Path) -> list[Path]:
    folder = folder / "images" if (folder / "images").is_dir() else folder
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _is_sequence_folder(folder: Path) -> bool:
    return (folder / JSON_NAME).is_file() or (folder / "images").is_dir()


def iterate_streams(source: Path, *, fps: float = 10.0) -> list[Stream]:
    """The streams of an input: an image file, a folder of images (or a COCO panoptic folder's
    ``images/``), a folder of sequence folders, a video file, or a rosbag2 folder."""
    if not source.exists():
        raise ConfigError(f"input {source} does not exist")
    if fps <= 0:
        raise ConfigError(f"--fps {fps} must be positive")
    period = round(1e9 / fps)
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return [Stream("", 1, iter([Frame(source.stem, _read_image(source), 0)]))]
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        return [_video(source, fps)]
    if source.is_dir() and (source / "metadata.yaml").is_file():
        return [_bag(source)]
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
                yield Frame(f"{path.stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp)
                index += 1
        finally:
            capture.release()

    return Stream("", count, frames())


def _bag(path: Path) -> Stream:
    from panoptic_ros.core.image_codec import compressed_to_color, image_to_color
    from panoptic_ros.data.bags import read_images
    from panoptic_ros.errors import ImageDecodeError

    def frames() -> Iterator[Frame]:
        for item in read_images(path):
            try:
                if item.msg is None:
                    raise ImageDecodeError(item.error)
                rgb = (compressed_to_color if item.compressed else image_to_color)(item.msg, "rgb")
            except ImageDecodeError as err:
                log.warning("skipping a malformed frame on %s: %s", item.topic, err)
                continue
            topic = item.topic.strip("/").replace("/", "_")
            yield Frame(f"{topic}_{item.stamp_ns}", np.ascontiguousarray(rgb), item.stamp_ns, item.topic)

    return Stream("", None, frames())


def tracked_segments(
    result: FrameOutput, tracked: TrackerOutput, label_divisor: int
) -> tuple[torch.Tensor, dict[int, int], torch.Tensor]:
    """A tracked frame as a COCO segment map (things: track ids; stuff: ``STUFF_SEGMENT_BASE +
    category``; untracked things and void: 0), the category of every id, and a display panoptic map
    (``category * label_divisor + n`` with ``n`` derived from the track id) for overlays."""
    panoptic = result.panoptic
    track_map = tracked.track_map.to(panoptic.device).long()
    category = torch.div(panoptic.clamp(min=0), label_divisor, rounding_mode="floor")
    stuff = (panoptic >= 0) & (result.instance == 0)
    segment_map = torch.where(track_map > 0, track_map, torch.where(stuff, STUFF_SEGMENT_BASE + category, 0))
    categories = {
        int(t): int(c) for t, c in zip(tracked.tracks.track_ids, tracked.tracks.category_ids, strict=True)
    }
    for c in torch.unique(category[stuff]).tolist():
        categories[STUFF_SEGMENT_BASE + int(c)] = int(c)
    shown = tracked_display_map(panoptic, result.instance, track_map, label_divisor)
    return segment_map, categories, shown


def run_infer(
    pipeline: PanopticPipeline,
    source: Path,
    out: Path,
    *,
    overlays: bool = True,
    overwrite: bool = False,
    track: TrackerParams | None = None,
    fps: float = 10.0,
) -> int:
    """Run ``pipeline`` over ``source`` and write predictions under ``out`` (one COCO panoptic folder
    per stream); with ``track``, thing segment ids are track ids. Returns the number of frames."""
    streams = iterate_streams(source, fps=fps)
    total = sum(s.count or 0 for s in streams) or None
    bar = tqdm(total=total, desc=f"infer ({pipeline.backend.describe()})", unit="frame")
    count = 0
    for stream in streams:
        count += _run_stream(
            pipeline,
            stream,
            out / stream.name if stream.name else out,
            bar,
            overlays=overlays,
            overwrite=overwrite,
            track=track,
        )
    bar.close()
    return count


def _run_stream(
    pipeline: PanopticPipeline,
    stream: Stream,
    out: Path,
    bar: tqdm,
    *,
    overlays: bool,
    overwrite: bool,
    track: TrackerParams | None,
) -> int:
    label_set = pipeline.label_set
    divisor = pipeline.params.label_divisor
    overlay_dir = out / "overlay"
    if overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    trackers: dict[str, Tracker] = {}
    count = 0
    batch: list[Frame] = []
    with CocoPanopticWriter(out, label_set, overwrite=overwrite) as writer:

        def flush() -> None:
            nonlocal count
            for frame, result in zip(batch, pipeline([f.rgb for f in batch]), strict=True):
                image = torch.from_numpy(frame.rgb).to(result.panoptic.device)
                if track is None:
                    segment_map, segments = segments_from_panoptic(
                        result.panoptic.cpu().numpy(), label_divisor=divisor
                    )
                    shown = result.panoptic
                else:
                    tracker = trackers.setdefault(frame.camera, Tracker(track))
                    tracked = tracker.update(TrackerInput.from_frame(result, frame.stamp_ns, image=image))
                    ids, categories, shown = tracked_segments(result, tracked, divisor)
                    segment_map = ids.cpu().numpy()
                    segments = segments_from_map(segment_map, categories)
                writer.add(frame.stem, None, segment_map, segments)
                if overlays:
                    picture = overlay(image, shown, label_set, label_divisor=divisor)
                    cv2.imwrite(
                        str(overlay_dir / f"{frame.stem}.jpg"),
                        cv2.cvtColor(picture.cpu().numpy(), cv2.COLOR_RGB2BGR),
                    )
                count += 1
                bar.update(1)
            batch.clear()

        for frame in stream.frames:
            batch.append(frame)
            if len(batch) == pipeline.spec.input.max_batch:
                flush()
        if batch:
            flush()
    return count
