"""The demo job and the bag decoding tool behind ``panoptic-ros demo`` / ``panoptic-ros decode``.

The demo records a short multi-camera rosbag2 file of synthetic driving sequences in the encodings
robots publish (rgb8 from a USB camera, uyvy from a GMSL camera, a Bayer mosaic from a
machine-vision camera, JPEG from a compressed stream), with one malformed frame of each kind that
drivers produce (a truncated raw image, a corrupt JPEG). It then replays the bag the way the node
will: every frame through the image codec (malformed ones counted with their reason, not fatal),
then the shipped model, fusion and one tracker per camera, writing COCO panoptic predictions with
track ids and overlay images.
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

from panoptic_ros.core.decode import color_frame
from panoptic_ros.core.image_encode import CompressedFields, ImageFields, array_to_compressed, array_to_image
from panoptic_ros.data.bags import FrameToWrite, Storage, read_images, write_images
from panoptic_ros.errors import ImageDecodeError

FRAME_PERIOD_NS = 100_000_000  # 10 Hz
DEMO_START_NS = 1_700_000_000_000_000_000


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


#: Camera image size of the demo (the model input is 192 x 384, so frames are resized on the device).
DEMO_SIZE = (240, 480)


def demo_frames(frames: int, *, bad_frame: int | None = 7, seed: int = 2024) -> Iterator[FrameToWrite]:
    """The demo bag's messages: one synthetic sequence per camera, all cameras interleaved in time;
    frame ``bad_frame`` of two cameras is malformed."""
    from panoptic_ros.data.synthetic import generate

    sequences = [
        generate(1, seed=seed + camera, height=DEMO_SIZE[0], width=DEMO_SIZE[1], sequence_length=frames)
        for camera in range(len(DEMO_CAMERAS))
    ]
    for index, samples in enumerate(zip(*sequences, strict=True)):
        stamp = DEMO_START_NS + index * FRAME_PERIOD_NS
        for camera, ((topic, encode), sample) in enumerate(zip(DEMO_CAMERAS.items(), samples, strict=True)):
            fields = encode(sample.image)
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
    """Decode every image of ``bag`` by the node's decoder (in BGR, for OpenCV's PNG writer), writing
    every ``every``-th frame of each topic as PNG under ``out/<topic>/``. Malformed frames are counted
    with their reason, not fatal."""
    report = DecodeReport()
    seen: Counter[str] = Counter()
    for item in tqdm(read_images(bag, topics), desc=f"decoding {bag.name}", unit="frame", leave=False):
        try:
            if item.msg is None:
                raise ImageDecodeError(f"not deserializable: {item.error}")
            bgr = color_frame(item.msg, compressed=item.compressed, order="bgr")
        except ImageDecodeError as err:
            report.malformed[item.topic] += 1
            report.reasons[item.topic].append(f"stamp {item.stamp_ns}: {err}")
            continue
        report.decoded[item.topic] += 1
        if seen[item.topic] % max(every, 1) == 0:
            path = out / _folder_name(item.topic) / f"{item.stamp_ns}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), bgr)
            report.written.append(path)
        seen[item.topic] += 1
    return report


def run_demo(
    out: Path,
    *,
    frames: int = 30,
    storage: Storage = "sqlite3",
    model: Path | None = None,
    backend: str = "auto",
    device: str = "auto",
) -> int:
    """Record the demo bag under ``out/camera_bag``, decode it (counting malformed frames), then run
    panoptic segmentation with tracking over it into ``out/panoptic`` and ``out/overlay``."""
    import shutil

    from panoptic_ros.apps.infer import run_infer
    from panoptic_ros.resources import default_model
    from panoptic_ros.runtime import EngineParams, FrameEngine

    for stale in ("camera_bag", "frames", "panoptic", "overlay", "images", "panoptic.json"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    bag = out / "camera_bag"
    written = write_images(
        bag,
        tqdm(
            demo_frames(frames), total=frames * len(DEMO_CAMERAS), desc="recording", unit="msg", leave=False
        ),
        storage=storage,
    )
    print(f"recorded {written} messages from {len(DEMO_CAMERAS)} cameras into {bag} ({storage})")
    report = decode_bag(bag, out / "frames", every=10)
    print(report.table())
    with FrameEngine.open(
        model or default_model(), backend=backend, device=device, params=EngineParams(tracking=True)
    ) as engine:
        count = run_infer(engine, bag, out, overwrite=True)
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in engine.stage_times().items())
        print(f"segmentation + tracking of {count} frames ({engine.describe()}; per frame: {stages})")
    summary = {**report.to_json(), "segmented_frames": count}
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"overlays: {out / 'overlay'}; predictions: {out / 'panoptic.json'}; report: {out / 'report.json'}")
    return 0 if count else 1
