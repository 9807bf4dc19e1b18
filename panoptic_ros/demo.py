"""The demo job and the bag decoding tool behind ``panoptic-ros demo`` / ``panoptic-ros decode``.

The demo records a short multi-camera rosbag2 file in the encodings robots publish (rgb8 from a
USB camera, uyvy from a GMSL camera, a Bayer mosaic from a machine-vision camera, JPEG from a
compressed stream), with one malformed frame of each kind that drivers produce (a truncated raw
image, a corrupt JPEG), then reads it back the way the node does: every frame through the image
codec to RGB. Good frames are written as PNG; malformed ones are counted with their reason.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from panoptic_ros.core.image_codec import (
    CompressedFields,
    ImageFields,
    array_to_compressed,
    array_to_image,
    compressed_to_color,
    image_to_color,
)
from panoptic_ros.data.bags import FrameToWrite, Storage, read_images, write_images
from panoptic_ros.errors import ImageDecodeError

FRAME_PERIOD_NS = 100_000_000  # 10 Hz
DEMO_START_NS = 1_700_000_000_000_000_000


def moving_scene(count: int, *, width: int = 320, height: int = 240, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` RGB frames (``H x W x 3`` uint8): a sky/road gradient with discs and boxes moving at
    their own velocities. Deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    horizon = height // 2
    background = np.zeros((height, width, 3), np.float32)
    background[:horizon] = np.array([110, 160, 220]) * (0.7 + 0.3 * (y[:horizon, :, None] / horizon))
    background[horizon:] = np.array([100, 90, 100]) * (
        0.8 + 0.2 * ((y[horizon:, :, None] - horizon) / horizon)
    )
    objects = [
        (
            rng.uniform(0, width),
            rng.uniform(horizon, height),
            rng.uniform(-6, 6),
            rng.uniform(-1, 1),
            rng.uniform(8, 30),
            rng.integers(0, 255, 3),
        )
        for _ in range(6)
    ]
    for t in range(count):
        frame = background.copy()
        for x0, y0, vx, vy, r, color in objects:
            cx = (x0 + vx * t) % width
            cy = np.clip(y0 + vy * t, horizon, height)
            frame[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = color
        noise = rng.normal(0, 3, frame.shape)
        yield np.clip(frame + noise, 0, 255).astype(np.uint8)


def rgb_to_uyvy(rgb: np.ndarray) -> np.ndarray:
    """RGB (even width) to the ``H x W x 2`` UYVY layout as cameras send it: BT.601 video range
    (Y in 16..235, Cb/Cr in 16..240), chroma averaged over each pixel pair."""
    r, g, b = (rgb[..., k].astype(np.float32) / 255.0 for k in range(3))
    luma = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    out = np.empty((*rgb.shape[:2], 2), np.uint8)
    out[:, 0::2, 0] = np.round((cb[:, 0::2] + cb[:, 1::2]) / 2)
    out[:, 1::2, 0] = np.round((cr[:, 0::2] + cr[:, 1::2]) / 2)
    out[..., 1] = np.round(luma)
    return out


def rgb_to_bayer_rggb(rgb: np.ndarray) -> np.ndarray:
    """RGB to an RGGB Bayer mosaic (``H x W`` uint8): R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)."""
    mosaic = rgb[..., 1].copy()
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return mosaic


#: The demo's cameras: topic -> how a frame is encoded.
DEMO_CAMERAS = {
    "/front/image_raw": lambda rgb: array_to_image(rgb, "rgb8"),
    "/left/image_raw": lambda rgb: array_to_image(rgb_to_uyvy(rgb), "uyvy"),
    "/right/image_raw": lambda rgb: array_to_image(rgb_to_bayer_rggb(rgb), "bayer_rggb8"),
    "/rear/image_raw/compressed": lambda rgb: array_to_compressed(rgb, codec="jpeg", order="rgb"),
}


def _malformed(fields: ImageFields | CompressedFields) -> ImageFields | CompressedFields:
    """The faults drivers produce: a raw image cut short, a JPEG cut in the middle."""
    if isinstance(fields, CompressedFields):
        return fields._replace(data=fields.data[: len(fields.data) // 3])
    return fields._replace(data=fields.data[: fields.step * (fields.height // 2)])


def demo_frames(frames: int, *, bad_frame: int | None = 7) -> Iterator[FrameToWrite]:
    """The demo bag's messages, all cameras interleaved in time; frame ``bad_frame`` is malformed."""
    for index, rgb in enumerate(moving_scene(frames)):
        stamp = DEMO_START_NS + index * FRAME_PERIOD_NS
        for camera, (topic, encode) in enumerate(DEMO_CAMERAS.items()):
            fields = encode(rgb)
            if index == bad_frame and camera in (0, 3):
                fields = _malformed(fields)
            yield FrameToWrite(topic, stamp + camera * 1000, topic.split("/")[1] + "_optical", fields)


@dataclass
class DecodeReport:
    """What :func:`decode_bag` found, per topic."""

    decoded: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    written: list[Path] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'topic':32s} {'decoded':>8s} {'malformed':>10s}  first problem"]
        for topic in sorted(set(self.decoded) | set(self.malformed)):
            reason = self.reasons[topic][0] if self.reasons.get(topic) else ""
            lines.append(f"{topic:32s} {self.decoded[topic]:8d} {self.malformed[topic]:10d}  {reason}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "decoded": dict(self.decoded),
            "malformed": dict(self.malformed),
            "reasons": {k: v for k, v in self.reasons.items() if v},
            "frames_written": len(self.written),
        }


def _folder_name(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", topic.strip("/")) or "root"


def decode_bag(bag: Path, out: Path, *, topics: Sequence[str] | None = None, every: int = 1) -> DecodeReport:
    """Decode every image of ``bag`` to RGB as the node does, writing every ``every``-th frame of each
    topic as PNG under ``out/<topic>/``. Malformed frames are counted with their reason, not fatal."""
    report = DecodeReport()
    seen: Counter[str] = Counter()
    for item in tqdm(read_images(bag, topics), desc=f"decoding {bag.name}", unit="frame", leave=False):
        try:
            if item.msg is None:
                raise ImageDecodeError(f"not deserializable: {item.error}")
            decode = compressed_to_color if item.compressed else image_to_color
            rgb = decode(item.msg, "bgr")
        except ImageDecodeError as err:
            report.malformed[item.topic] += 1
            report.reasons[item.topic].append(f"stamp {item.stamp_ns}: {err}")
            continue
        report.decoded[item.topic] += 1
        if seen[item.topic] % max(every, 1) == 0:
            path = out / _folder_name(item.topic) / f"{item.stamp_ns}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.ascontiguousarray(rgb))
            report.written.append(path)
        seen[item.topic] += 1
    return report


def run_demo(out: Path, *, frames: int = 30, storage: Storage = "sqlite3") -> int:
    """Record the demo bag under ``out/camera_bag``, decode it to ``out/frames``, print a report."""
    bag = out / "camera_bag"
    if bag.exists():
        import shutil

        shutil.rmtree(bag)
    written = write_images(
        bag,
        tqdm(
            demo_frames(frames), total=frames * len(DEMO_CAMERAS), desc="recording", unit="msg", leave=False
        ),
        storage=storage,
    )
    print(f"recorded {written} messages from {len(DEMO_CAMERAS)} cameras into {bag} ({storage})")
    report = decode_bag(bag, out / "frames")
    print(report.table())
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    print(f"decoded frames: {out / 'frames'}; report: {out / 'report.json'}")
    return 0 if sum(report.decoded.values()) else 1
