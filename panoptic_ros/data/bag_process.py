"""``panoptic-ros bag process``: run the node's frame processor offline over a bag, write a new bag.

For every camera topic (``--camera``, or every ``Image``/``CompressedImage`` topic that is not a
depth, ground-truth or output topic) the frames go through the same
:class:`~panoptic_ros.runtime.FrameProcessor` as in the node, and the outputs land on the node's
topics (:mod:`panoptic_ros.core.topics`): ``<ns>/panoptic/semantic``, ``instance_ids``,
``instances``, ``overlay`` and, once per camera, ``categories``; each with the input's header and the
input message's bag time.

Depth and calibration: a camera's ``<ns>/depth/image_raw`` (``32FC1`` m or ``16UC1`` mm) and
``<ns>/camera_info`` are matched to an image by header stamp, in whatever order the bag holds them:
an image waits until its depth and camera_info arrive (or turn out malformed, or ones of a later
stamp arrive first), at most until ``max_pending`` newer images of its camera came (then it goes
without depth). Without a camera_info of the same stamp the camera's
latest one is used (intrinsics rarely change).

Batching: frames of different cameras whose stamps lie within ``batch_window_ns`` of each other and
arrive together form one inference batch; otherwise frames go one at a time, in bag order per camera.

Malformed frames (undecodable image, depth or camera_info) are counted per topic with their reason
and skipped, never fatal. The ground truth topics and camera_info of the processed cameras are
copied through unchanged, so the output bag can be evaluated on its own (``bag eval``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from panoptic_ros.core.geometry import CameraModel, depth_in_meters
from panoptic_ros.core.image_codec import (
    compressed_to_array,
    compressed_to_color,
    image_to_array,
    image_to_color,
)
from panoptic_ros.core.topics import (
    GROUND_TRUTH,
    OUTPUTS,
    camera_info_topic,
    depth_topic,
    ground_truth_topic,
    is_camera_topic,
    output_topic,
)
from panoptic_ros.data.bag_io import BagMessage, BagWriter, message_counts, read_messages, topic_types
from panoptic_ros.data.bag_types import (
    CAMERA_INFO_TYPE,
    CATEGORY_ARRAY_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    category_array,
    result_messages,
)
from panoptic_ros.data.bags import BagError, Storage
from panoptic_ros.errors import ConfigError, ImageDecodeError
from panoptic_ros.runtime import FrameProcessor, FrameResult, InputFrame

#: Most reasons kept per topic in the report.
MAX_REASONS = 5


def camera_topics(types: dict[str, str]) -> list[str]:
    """The camera topics of a bag, sorted: ``Image``/``CompressedImage`` topics that
    :func:`~panoptic_ros.core.topics.is_camera_topic` accepts."""
    return sorted(t for t, m in types.items() if m in (IMAGE_TYPE, COMPRESSED_TYPE) and is_camera_topic(t))


@dataclass(frozen=True)
class ProcessOptions:
    """How ``bag process`` runs.

    Attributes:
        cameras: the camera topics; None for every camera topic (see :func:`camera_topics`).
        overlay: also write ``panoptic/overlay``.
        storage: storage of the output bag.
        batch_window_ns: frames of different cameras this close in stamp are batched.
        max_pending: newer images of a camera after which an image stops waiting for its depth.
        copy_through: copy ground truth and camera_info of the processed cameras into the output.
        progress: show a progress bar.
    """

    cameras: tuple[str, ...] | None = None
    overlay: bool = True
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


@dataclass
class _Pending:
    """An image waiting for its depth and camera_info."""

    rgb: np.ndarray
    stamp_ns: int
    header: Any
    log_time_ns: int
    depth: np.ndarray | None = None
    model: CameraModel | None = None
    depth_done: bool = False  # its depth came, was malformed, or will not come (a later one came)
    info_done: bool = False


@dataclass
class _Camera:
    """The state of one camera topic during a run."""

    topic: str
    info_topic: str | None
    depth_topic: str | None
    outputs: dict[str, str]
    pending: deque[_Pending] = field(default_factory=deque)
    depths: dict[int, np.ndarray | None] = field(default_factory=dict)  # None: malformed
    infos: dict[int, CameraModel] = field(default_factory=dict)
    latest_info: CameraModel | None = None
    categories_written: bool = False

    def complete(self, item: _Pending) -> bool:
        return (self.depth_topic is None or item.depth_done) and (self.info_topic is None or item.info_done)


def _remember(store: dict[int, Any], stamp: int, value: Any, limit: int) -> None:
    store[stamp] = value
    while len(store) > limit:
        store.pop(next(iter(store)))


class _Run:
    """One ``process_bag`` run: routing of messages, waiting images, batches and the output bag."""

    def __init__(
        self, processor: FrameProcessor, writer: BagWriter, cameras: list[_Camera], options: ProcessOptions
    ) -> None:
        self.processor = processor
        self.writer = writer
        self.options = options
        self.cameras = {c.topic: c for c in cameras}
        self.by_depth = {c.depth_topic: c for c in cameras if c.depth_topic}
        self.by_info = {c.info_topic: c for c in cameras if c.info_topic}
        self.batch: list[tuple[InputFrame, int]] = []
        self.frames_in = 0
        self.frames_out = 0
        self.batches = 0
        self.with_depth = 0
        self.malformed: dict[str, int] = {}
        self.reasons: dict[str, list[str]] = {}

    # ---- malformed input

    def _malformed(self, message: BagMessage, reason: str) -> None:
        self.malformed[message.topic] = self.malformed.get(message.topic, 0) + 1
        reasons = self.reasons.setdefault(message.topic, [])
        if len(reasons) < MAX_REASONS:
            where = f"stamp {message.stamp_ns}" if message.stamp_ns is not None else "bag time"
            reasons.append(f"{where} (bag time {message.log_time_ns}): {reason}")

    # ---- inputs

    def image(self, camera: _Camera, message: BagMessage) -> None:
        self.frames_in += 1
        try:
            if message.msg is None:
                raise ImageDecodeError(f"not deserializable: {message.error}")
            decode = compressed_to_color if message.msgtype == COMPRESSED_TYPE else image_to_color
            rgb = decode(message.msg, "rgb")
        except ImageDecodeError as err:
            self._malformed(message, str(err))
            return
        if not (rgb.flags.writeable and rgb.flags.c_contiguous):  # a view of the message's bytes
            rgb = np.array(rgb, order="C")
        stamp = int(message.stamp_ns or 0)
        item = _Pending(rgb, stamp, message.msg.header, message.log_time_ns)
        item.depth_done = stamp in camera.depths  # came before the image (None: it was malformed)
        item.depth = camera.depths.pop(stamp, None)
        item.model = camera.infos.get(stamp)
        item.info_done = item.model is not None
        camera.pending.append(item)
        self._release(camera)

    def depth(self, camera: _Camera, message: BagMessage) -> None:
        meters: np.ndarray | None
        try:
            if message.msg is None:
                raise ImageDecodeError(f"not deserializable: {message.error}")
            if message.msgtype == COMPRESSED_TYPE:
                decoded = compressed_to_array(message.msg)
                meters = depth_in_meters(decoded.array, decoded.encoding)
            else:
                meters = depth_in_meters(image_to_array(message.msg, native=True), str(message.msg.encoding))
        except (ImageDecodeError, ConfigError) as err:
            self._malformed(message, str(err))
            meters = None
        stamp = message.stamp_ns
        if stamp is None:  # not even a header: nothing to match
            return
        matched = False
        for item in camera.pending:
            if item.stamp_ns == stamp and not item.depth_done:
                item.depth, item.depth_done, matched = meters, True, True
            elif item.stamp_ns < stamp:  # a later depth came first: this image's will not come
                item.depth_done = True
        if not matched:
            _remember(camera.depths, stamp, meters, 2 * self.options.max_pending + 2)
        self._release(camera)

    def camera_info(self, camera: _Camera, message: BagMessage) -> None:
        try:
            if message.msg is None:
                raise ConfigError(f"not deserializable: {message.error}")
            model = CameraModel.from_k(message.msg.k, int(message.msg.width), int(message.msg.height))
        except ConfigError as err:
            self._malformed(message, str(err))
            return
        stamp = int(message.stamp_ns or 0)
        _remember(camera.infos, stamp, model, 2 * self.options.max_pending + 2)
        camera.latest_info = model
        for item in camera.pending:
            if item.stamp_ns == stamp:
                item.model, item.info_done = model, True
            elif item.stamp_ns < stamp:  # a later camera_info came first: use the latest one
                item.info_done = True
        self._release(camera)

    # ---- waiting images -> batches

    def _release(self, camera: _Camera, *, all_of_them: bool = False) -> None:
        while camera.pending and (
            all_of_them
            or camera.complete(camera.pending[0])
            or len(camera.pending) > self.options.max_pending
        ):
            item = camera.pending.popleft()
            model = item.model or camera.latest_info
            depth = item.depth if model is not None else None
            frame = InputFrame(
                camera=camera.topic,
                rgb=item.rgb,
                stamp_ns=item.stamp_ns,
                header=item.header,
                depth=depth,
                camera_model=model if depth is not None else None,
                overlay=self.options.overlay,
            )
            self._add_to_batch(frame, item.log_time_ns)

    def _add_to_batch(self, frame: InputFrame, log_time_ns: int) -> None:
        if self.batch:
            first = self.batch[0][0]
            if any(f.camera == frame.camera for f, _ in self.batch) or (
                abs(frame.stamp_ns - first.stamp_ns) > self.options.batch_window_ns
            ):
                self.flush()
        self.batch.append((frame, log_time_ns))

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        results = self.processor.process([frame for frame, _ in batch])
        self.batches += 1
        for (frame, log_time), result in zip(batch, results, strict=True):
            self._write(self.cameras[frame.camera], result, log_time)
            self.with_depth += int(frame.depth is not None)

    def finish(self) -> None:
        for camera in self.cameras.values():
            self._release(camera, all_of_them=True)
        self.flush()

    # ---- outputs

    def _write(self, camera: _Camera, result: FrameResult, log_time: int) -> None:
        label_set = self.processor.label_set
        if not camera.categories_written:
            self.writer.write(
                camera.outputs["categories"],
                CATEGORY_ARRAY_TYPE,
                category_array(label_set, result.header, label_divisor=self.processor.label_divisor),
                log_time,
            )
            camera.categories_written = True
        for message in result_messages(result, label_set, camera.outputs, overlay=self.options.overlay):
            self.writer.write(message.topic, message.msgtype, message.msg, log_time)
        self.frames_out += 1


def _cameras(types: dict[str, str], wanted: Sequence[str] | None, path: Path) -> list[_Camera]:
    available = camera_topics(types)
    if wanted:
        unknown = [t for t in wanted if types.get(t) not in (IMAGE_TYPE, COMPRESSED_TYPE)]
        if unknown:
            raise BagError(f"bag {path} has no image topic {unknown}; its camera topics: {available}")
        topics = list(dict.fromkeys(wanted))
    else:
        topics = available
    if not topics:
        raise BagError(
            f"bag {path} has no camera topic (Image or CompressedImage); its topics: {sorted(types)}"
        )
    cameras = []
    for topic in topics:
        info, depth = camera_info_topic(topic), depth_topic(topic)
        cameras.append(
            _Camera(
                topic=topic,
                info_topic=info if types.get(info) == CAMERA_INFO_TYPE else None,
                depth_topic=depth if types.get(depth) in (IMAGE_TYPE, COMPRESSED_TYPE) else None,
                outputs={name: output_topic(topic, name) for name in OUTPUTS},
            )
        )
    return cameras


def process_bag(
    source: str | Path, out: str | Path, processor: FrameProcessor, options: ProcessOptions | None = None
) -> ProcessReport:
    """Run ``processor`` over the camera frames of the bag ``source`` and write the outputs into the
    new bag ``out`` (see the module docstring).

    Raises:
        BagError: ``source`` cannot be read, has no (or not the requested) camera topics, or ``out``
            exists.
    """
    options = options or ProcessOptions()
    source, out = Path(source), Path(out)
    start = time.perf_counter()
    types = topic_types(source)
    cameras = _cameras(types, options.cameras, source)
    copied_topics: list[str] = []
    if options.copy_through:
        for camera in cameras:
            candidates = [ground_truth_topic(camera.topic, name) for name in GROUND_TRUTH]
            candidates.append(camera_info_topic(camera.topic))
            copied_topics.extend(t for t in candidates if t in types and t not in copied_topics)
    inputs = [c.topic for c in cameras] + [t for c in cameras for t in (c.depth_topic, c.info_topic) if t]
    wanted = list(dict.fromkeys(inputs + copied_topics))
    total = sum(message_counts(source, [c.topic for c in cameras]).values())
    copied = 0
    with BagWriter(out, options.storage) as writer:
        run = _Run(processor, writer, cameras, options)
        with tqdm(
            total=total, desc=f"processing {source.name}", unit="frame", disable=not options.progress
        ) as bar:
            for message in read_messages(source, wanted):
                if message.topic in copied_topics:
                    writer.write_raw(message.topic, message.msgtype, message.raw, message.log_time_ns)
                    copied += 1
                if message.topic in run.cameras:
                    run.image(run.cameras[message.topic], message)
                    bar.update(1)
                elif message.topic in run.by_depth:
                    run.depth(run.by_depth[message.topic], message)
                elif message.topic in run.by_info:
                    run.camera_info(run.by_info[message.topic], message)
            run.finish()
        written = {t: n for t, n in writer.counts.items() if t not in copied_topics}
    return ProcessReport(
        input=source,
        output=out,
        cameras=tuple(c.topic for c in cameras),
        frames_in=run.frames_in,
        frames_out=run.frames_out,
        batches=run.batches,
        with_depth=run.with_depth,
        malformed=dict(run.malformed),
        reasons={k: tuple(v) for k, v in run.reasons.items()},
        copied=copied,
        written=written,
        seconds=time.perf_counter() - start,
    )
