"""``panoptic-ros bag process``: the frame engine over a bag's cameras, outputs into a new bag.

Frames come from :class:`~panoptic_ros.apps.bag_frames.BagFrames` (cameras, depth and camera_info
matched by stamp, batches across cameras, malformed messages counted and skipped); each batch goes
through the same :class:`~panoptic_ros.runtime.FrameEngine` as in the node, and each result's outputs
are described once (:mod:`panoptic_ros.runtime.outputs`) and written with ``rosbags`` on the node's
topics (:mod:`panoptic_ros.core.topics`): ``<ns>/panoptic/semantic``, ``instance_ids`` (or, with
``labels="png"``, the lossless ``semantic/compressed`` and ``instance_ids/compressed``),
``instances``, ``overlay``, ``markers`` and ``points`` (with depth; points when asked for) and, once
per camera, ``categories``; each with the input's header and the input message's bag time.

The ground truth topics and camera_info of the processed cameras are copied through unchanged, so the
output bag can be evaluated on its own (``bag eval``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from panoptic_ros.apps.bag_frames import BagFrames, ReadOptions
from panoptic_ros.core.messages import Message, header_message
from panoptic_ros.core.topics import (
    GROUND_TRUTH,
    camera_info_topic,
    ground_truth_topic,
    output_topic,
)
from panoptic_ros.core.topics import (
    OUTPUTS as OUTPUT_NAMES,
)
from panoptic_ros.data.bag_io import BagMessage, BagWriter, message_counts
from panoptic_ros.data.bag_types import Storage, to_rosbags
from panoptic_ros.runtime import FrameEngine, FrameResult
from panoptic_ros.runtime.outputs import CAMERA_OUTPUTS, FRAME_OUTPUTS, OutputContext

#: The outputs a processed bag can hold: those of types in the bag type store (not ``vision_msgs``).
BAG_OUTPUTS = tuple(o.name for o in (*FRAME_OUTPUTS, *CAMERA_OUTPUTS) if not o.package)
#: The label images in each ``labels`` choice.
LABEL_OUTPUTS = {
    "raw": ("semantic", "instance_ids"),
    "png": ("semantic/compressed", "instance_ids/compressed"),
}


@dataclass(frozen=True)
class ProcessOptions:
    """How ``bag process`` runs.

    Attributes:
        cameras: the camera topics; None for every camera topic (see :func:`camera_topics`).
        overlay: also write ``panoptic/overlay``.
        labels: the label images as ``raw`` ``Image`` or lossless ``png`` ``CompressedImage``.
        points: also write ``panoptic/points`` (frames with depth and camera_info).
        storage: storage of the output bag.
        batch_window_ns: frames of different cameras this close in stamp are batched.
        max_pending: newer images of a camera after which an image stops waiting for its depth.
        copy_through: copy ground truth and camera_info of the processed cameras into the output.
        progress: show a progress bar.
    """

    cameras: tuple[str, ...] | None = None
    overlay: bool = True
    labels: Literal["raw", "png"] = "raw"
    points: bool = False
    storage: Storage = "sqlite3"
    batch_window_ns: int = 5_000_000
    max_pending: int = 3
    copy_through: bool = True
    progress: bool = True


@dataclass(frozen=True)
class ProcessReport:
    """What :func:`process_bag` did.

    Attributes:
        input, output: the bags.
        cameras: the processed camera topics.
        frames_in: camera messages read; ``frames_out``: frames processed and written.
        batches: inference batches (fewer than ``frames_out`` when cameras were batched).
        with_depth: frames processed with an aligned depth image and camera_info.
        malformed: per topic, messages skipped as malformed; ``reasons``: the first few, per topic.
        copied: messages copied through (ground truth, camera_info).
        written: messages written per output topic.
        seconds: wall time of the whole run.
    """

    input: Path
    output: Path
    cameras: tuple[str, ...]
    frames_in: int
    frames_out: int
    batches: int
    with_depth: int
    malformed: dict[str, int]
    reasons: dict[str, tuple[str, ...]]
    copied: int
    written: dict[str, int]
    seconds: float

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def summary(self) -> str:
        """A few lines for the terminal."""
        rate = self.frames_out / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.input} -> {self.output}: {len(self.cameras)} camera(s), {self.frames_in} frames in, "
            f"{self.frames_out} out ({self.batches} batches, {self.with_depth} with depth), "
            f"{self.malformed_total} malformed skipped, {self.copied} messages copied, "
            f"{self.seconds:.1f} s ({rate:.1f} frames/s)"
        ]
        for topic in sorted(self.malformed):
            first = self.reasons.get(topic, ("",))[0]
            lines.append(f"  malformed {topic}: {self.malformed[topic]} (first: {first})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "cameras": list(self.cameras),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "batches": self.batches,
            "with_depth": self.with_depth,
            "malformed": dict(self.malformed),
            "reasons": {k: list(v) for k, v in self.reasons.items()},
            "copied": self.copied,
            "written": dict(self.written),
            "seconds": self.seconds,
        }


def process_bag(
    source: str | Path, out: str | Path, engine: FrameEngine, options: ProcessOptions | None = None
) -> ProcessReport:
    """Run ``engine`` over the camera frames of the bag ``source`` and write the outputs into the new
    bag ``out`` (see the module docstring).

    Raises:
        BagError: ``source`` cannot be read, has no (or not the requested) camera topics, or ``out``
            exists.
    """
    options = options or ProcessOptions()
    source, out = Path(source), Path(out)
    start = time.perf_counter()
    reader = BagFrames(
        source,
        ReadOptions(
            cameras=options.cameras,
            overlay=options.overlay,
            points=options.points,
            batch_window_ns=options.batch_window_ns,
            max_pending=options.max_pending,
        ),
    )
    copied_topics: list[str] = []
    if options.copy_through:
        for topic in reader.cameras:
            candidates = [ground_truth_topic(topic, name) for name in GROUND_TRUTH]
            candidates.append(camera_info_topic(topic))
            copied_topics.extend(t for t in candidates if t in reader.types and t not in copied_topics)
    total = sum(message_counts(source, list(reader.cameras)).values())
    context = OutputContext(engine.label_set, engine.label_divisor, engine.score_threshold())
    frames_out = batches = 0
    with BagWriter(out, options.storage) as writer:
        outputs = _BagOutputs(writer, context, reader.cameras, options)

        def copy(message: BagMessage) -> None:
            writer.write_raw(message.topic, message.msgtype, message.raw, message.log_time_ns)

        with tqdm(
            total=total, desc=f"processing {source.name}", unit="frame", disable=not options.progress
        ) as bar:
            for batch in reader.batches(also=copied_topics, on_other=copy):
                results = engine.process([item.frame for item in batch])
                batches += 1
                for item, result in zip(batch, results, strict=True):
                    outputs.write(result, item.log_time_ns)
                frames_out += len(batch)
                bar.n = reader.frames_in
                bar.refresh()
        copied = sum(writer.counts.get(t, 0) for t in copied_topics)
        written = {t: n for t, n in writer.counts.items() if t not in copied_topics}
    return ProcessReport(
        input=source,
        output=out,
        cameras=tuple(reader.cameras),
        frames_in=reader.frames_in,
        frames_out=frames_out,
        batches=batches,
        with_depth=reader.with_depth,
        malformed=dict(reader.malformed),
        reasons={k: tuple(v) for k, v in reader.reasons.items()},
        copied=copied,
        written=written,
        seconds=time.perf_counter() - start,
    )


class _BagOutputs:
    """Writes each result's outputs (described once, wrapped with ``rosbags``) on its camera's topics."""

    def __init__(
        self, writer: BagWriter, context: OutputContext, cameras: Mapping[str, Any], options: ProcessOptions
    ) -> None:
        self.writer = writer
        self.context = context
        self.topics = {camera: {o: output_topic(camera, o) for o in OUTPUT_NAMES} for camera in cameras}
        skipped = {
            name for choice, names in LABEL_OUTPUTS.items() if choice != options.labels for name in names
        }
        skipped |= {
            name for name, wanted in (("overlay", options.overlay), ("points", options.points)) if not wanted
        }
        self.frame_outputs = [o for o in FRAME_OUTPUTS if o.name in BAG_OUTPUTS and o.name not in skipped]
        self.started: set[str] = set()

    def write(self, result: FrameResult, log_time_ns: int) -> None:
        topics = self.topics[result.camera]
        if result.camera not in self.started:
            self.started.add(result.camera)
            header = header_message(result.stamp_ns, result.frame_id)
            for output in CAMERA_OUTPUTS:
                if output.name in BAG_OUTPUTS:
                    self._write(topics[output.name], output.describe(header, self.context), log_time_ns)
        for output in self.frame_outputs:
            if output.name == "markers" and not result.instances.position_valid.any():
                continue
            self._write(topics[output.name], output.describe(result, self.context), log_time_ns)

    def _write(self, topic: str, message: Message | None, log_time_ns: int) -> None:
        if message is not None:
            self.writer.write(topic, message.type, to_rosbags(message), log_time_ns)
