"""``panoptic-ros infer``: run the pipeline over images, a folder, a video or a bag, and write
COCO-panoptic predictions (``panoptic/``, ``panoptic.json``) plus overlay images (``overlay/``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

from panoptic_ros.core.overlay import overlay
from panoptic_ros.core.pipeline import PanopticPipeline
from panoptic_ros.data.coco_panoptic import CocoPanopticWriter, segments_from_panoptic
from panoptic_ros.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class Frame(NamedTuple):
    """An input frame: a unique stem for its output files and the pixels (``H x W x 3`` uint8 RGB)."""

    stem: str
    rgb: np.ndarray


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"{path} is not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iterate_input(source: Path) -> tuple[int | None, Iterator[Frame]]:
    """(frame count if known, frames) of an image file, a folder of images (or a COCO panoptic
    folder's ``images/``), a video file, or a rosbag2 folder."""
    if not source.exists():
        raise ConfigError(f"input {source} does not exist")
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        return 1, iter([Frame(source.stem, _read_image(source))])
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        return _video(source)
    if source.is_dir() and (source / "metadata.yaml").is_file():
        return _bag(source)
    if source.is_dir():
        folder = source / "images" if (source / "images").is_dir() else source
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return len(files), (Frame(p.stem, _read_image(p)) for p in files)
    raise ConfigError(
        f"{source}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}), a folder of images, or a rosbag2 folder"
    )


def _video(path: Path) -> tuple[int | None, Iterator[Frame]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConfigError(f"{path}: OpenCV cannot open this video")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def frames() -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield Frame(f"{path.stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            capture.release()

    return count, frames()


def _bag(path: Path) -> tuple[int | None, Iterator[Frame]]:
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
            yield Frame(f"{topic}_{item.stamp_ns}", np.ascontiguousarray(rgb))

    return None, frames()


def run_infer(
    pipeline: PanopticPipeline, source: Path, out: Path, *, overlays: bool = True, overwrite: bool = False
) -> int:
    """Run ``pipeline`` over ``source`` and write predictions under ``out``; returns the frame count."""
    total, frames = iterate_input(source)
    label_set = pipeline.label_set
    divisor = pipeline.params.label_divisor
    overlay_dir = out / "overlay"
    if overlays:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    batch_size = pipeline.spec.input.max_batch
    count = 0
    with CocoPanopticWriter(out, label_set, overwrite=overwrite) as writer:
        batch: list[Frame] = []
        bar = tqdm(total=total, desc=f"infer ({pipeline.backend.describe()})", unit="frame")

        def flush() -> None:
            nonlocal count
            for frame, result in zip(batch, pipeline([f.rgb for f in batch]), strict=True):
                panoptic = result.panoptic.cpu().numpy()
                segment_map, segments = segments_from_panoptic(panoptic, label_divisor=divisor)
                writer.add(frame.stem, None, segment_map, segments)
                if overlays:
                    shown = overlay(
                        torch.from_numpy(frame.rgb), result.panoptic, label_set, label_divisor=divisor
                    )
                    cv2.imwrite(
                        str(overlay_dir / f"{frame.stem}.jpg"),
                        cv2.cvtColor(shown.cpu().numpy(), cv2.COLOR_RGB2BGR),
                    )
                count += 1
                bar.update(1)
            batch.clear()

        for frame in frames:
            batch.append(frame)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        bar.close()
    return count
