"""A bag's camera frames as the frame engine takes them: decoded, matched with depth and camera_info,
in batches. ``bag process`` and ``infer`` read bags through this one reader.

Cameras: ``cameras`` given, or every ``Image``/``CompressedImage`` topic that is not a depth,
ground-truth or output topic (:func:`~panoptic_ros.core.topics.is_camera_topic`).

Depth and calibration: a camera's ``<ns>/depth/image_raw`` (``32FC1`` m or ``16UC1`` mm, or a
``compressedDepth`` image) and ``<ns>/camera_info`` are matched to an image by header stamp, in
whatever order the bag holds them: an image waits until its depth and camera_info arrive (or turn out
malformed, or ones of a later stamp arrive first), at most until ``max_pending`` newer images of its
camera came (then it goes without depth). Without a camera_info of the same stamp the camera's latest
one is used (intrinsics rarely change).

Batching: frames of different cameras whose stamps lie within ``batch_window_ns`` of each other and
arrive together form one batch; otherwise frames go one at a time, in bag order per camera.

Malformed messages (undecodable image, depth or camera_info) are counted per topic with their reason
and skipped, never fatal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from panoptic_ros.core.decode import camera_frame, camera_model, depth_frame
from panoptic_ros.core.encodings import ColorOrder
from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.core.topics import camera_info_topic, depth_topic, is_camera_topic
from panoptic_ros.data.bag_io import BagMessage, read_messages, topic_types
from panoptic_ros.data.bag_types import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE, BagError
from panoptic_ros.errors import ConfigError, ImageDecodeError
from panoptic_ros.runtime.records import InputFrame

#: Most reasons kept per topic in a report.
MAX_REASONS = 5


def camera_topics(types: dict[str, str]) -> list[str]:
    """The camera topics of a bag, sorted: ``Image``/``CompressedImage`` topics that
    :func:`~panoptic_ros.core.topics.is_camera_topic` accepts."""
    return sorted(t for t, m in types.items() if m in (IMAGE_TYPE, COMPRESSED_TYPE) and is_camera_topic(t))


@dataclass(frozen=True)
class ReadOptions:
    """How a bag's frames are read.

    Attributes:
        cameras: the camera topics; None for every camera topic (see :func:`camera_topics`).
        overlay: ask the engine for overlays.
        points: ask the engine for point clouds (frames with depth and camera_info).
        batch_window_ns: frames of different cameras this close in stamp are batched.
        max_pending: newer images of a camera after which an image stops waiting for its depth.
    """

    cameras: tuple[str, ...] | None = None
    overlay: bool = False
    points: bool = False
    batch_window_ns: int = 5_000_000
    max_pending: int = 3


class BagFrame(NamedTuple):
    """A frame ready for the engine and the bag time of its image message."""

    frame: InputFrame
    log_time_ns: int


@dataclass
class _Pending:
    """An image waiting for its depth and camera_info."""

    image: np.ndarray
    order: ColorOrder
    stamp_ns: int
    frame_id: str
    log_time_ns: int
    depth: np.ndarray | None = None
    model: CameraModel | None = None
    depth_done: bool = False  # its depth came, was malformed, or will not come (a later one came)
    info_done: bool = False


@dataclass
class _Camera:
    """The state of one camera topic during a read."""

    topic: str
    info_topic: str | None
    depth_topic: str | None
    pending: deque[_Pending] = field(default_factory=deque)
    depths: dict[int, np.ndarray | None] = field(default_factory=dict)  # None: malformed
    infos: dict[int, CameraModel] = field(default_factory=dict)
    latest_info: CameraModel | None = None

    def complete(self, item: _Pending) -> bool:
        return (self.depth_topic is None or item.depth_done) and (self.info_topic is None or item.info_done)


def _remember(store: dict[int, Any], stamp: int, value: Any, limit: int) -> None:
    store[stamp] = value
    while len(store) > limit:
        store.pop(next(iter(store)))


class BagFrames:
    """Reads the camera frames of the bag ``source`` (see the module docstring).

    Raises:
        BagError: ``source`` cannot be read or has no (or not the requested) camera topics.
    """

    def __init__(self, source: str | Path, options: ReadOptions | None = None) -> None:
        self.source = Path(source)
        self.options = options or ReadOptions()
        self.types = topic_types(self.source)
        self.cameras = {c.topic: c for c in self._cameras()}
        self.by_depth = {c.depth_topic: c for c in self.cameras.values() if c.depth_topic}
        self.by_info = {c.info_topic: c for c in self.cameras.values() if c.info_topic}
        self.frames_in = 0
        self.with_depth = 0
        self.malformed: dict[str, int] = {}
        self.reasons: dict[str, list[str]] = {}
        self._batch: list[BagFrame] = []
        self._ready: list[list[BagFrame]] = []

    def _cameras(self) -> list[_Camera]:
        types, wanted = self.types, self.options.cameras
        available = camera_topics(types)
        if wanted:
            unknown = [t for t in wanted if types.get(t) not in (IMAGE_TYPE, COMPRESSED_TYPE)]
            if unknown:
                raise BagError(
                    f"bag {self.source} has no image topic {unknown}; its camera topics: {available}"
                )
            topics = list(dict.fromkeys(wanted))
        else:
            topics = available
        if not topics:
            raise BagError(
                f"bag {self.source} has no camera topic (Image or CompressedImage); "
                f"its topics: {sorted(types)}"
            )
        cameras = []
        for topic in topics:
            info, depth = camera_info_topic(topic), depth_topic(topic)
            cameras.append(
                _Camera(
                    topic=topic,
                    info_topic=info if types.get(info) == CAMERA_INFO_TYPE else None,
                    depth_topic=depth if types.get(depth) in (IMAGE_TYPE, COMPRESSED_TYPE) else None,
                )
            )
        return cameras

    @property
    def input_topics(self) -> list[str]:
        """The topics read: cameras, then their depth and camera_info topics."""
        cameras = list(self.cameras.values())
        return [c.topic for c in cameras] + [t for c in cameras for t in (c.depth_topic, c.info_topic) if t]

    def batches(
        self, *, also: Sequence[str] = (), on_other: Callable[[BagMessage], None] | None = None
    ) -> Iterator[list[BagFrame]]:
        """The frames in batches, in bag order. Messages of the topics in ``also`` (read with the
        rest) go to ``on_other`` as they come, e.g. to be copied through."""
        wanted = list(dict.fromkeys([*self.input_topics, *also]))
        for message in read_messages(self.source, wanted):
            if message.topic in also and on_other is not None:
                on_other(message)
            if message.topic in self.cameras:
                self._image(self.cameras[message.topic], message)
            elif message.topic in self.by_depth:
                self._depth(self.by_depth[message.topic], message)
            elif message.topic in self.by_info:
                self._camera_info(self.by_info[message.topic], message)
            yield from self._take_ready()
        for camera in self.cameras.values():
            self._release(camera, all_of_them=True)
        self._flush()
        yield from self._take_ready()

    def _take_ready(self) -> Iterator[list[BagFrame]]:
        ready, self._ready = self._ready, []
        yield from ready

    # ---- malformed input

    def _malformed(self, message: BagMessage, reason: str) -> None:
        self.malformed[message.topic] = self.malformed.get(message.topic, 0) + 1
        reasons = self.reasons.setdefault(message.topic, [])
        if len(reasons) < MAX_REASONS:
            where = f"stamp {message.stamp_ns}" if message.stamp_ns is not None else "bag time"
            reasons.append(f"{where} (bag time {message.log_time_ns}): {reason}")

    # ---- inputs

    def _image(self, camera: _Camera, message: BagMessage) -> None:
        self.frames_in += 1
        try:
            if message.msg is None:
                raise ImageDecodeError(f"not deserializable: {message.error}")
            image, order = camera_frame(message.msg, compressed=message.compressed)
        except ImageDecodeError as err:
            self._malformed(message, str(err))
            return
        stamp = int(message.stamp_ns or 0)
        item = _Pending(image, order, stamp, str(message.msg.header.frame_id), message.log_time_ns)
        item.depth_done = stamp in camera.depths  # came before the image (None: it was malformed)
        item.depth = camera.depths.pop(stamp, None)
        item.model = camera.infos.get(stamp)
        item.info_done = item.model is not None
        camera.pending.append(item)
        self._release(camera)

    def _depth(self, camera: _Camera, message: BagMessage) -> None:
        meters: np.ndarray | None
        try:
            if message.msg is None:
                raise ImageDecodeError(f"not deserializable: {message.error}")
            meters = depth_frame(message.msg, compressed=message.compressed)
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

    def _camera_info(self, camera: _Camera, message: BagMessage) -> None:
        try:
            if message.msg is None:
                raise ConfigError(f"not deserializable: {message.error}")
            model = camera_model(message.msg)
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
            self.with_depth += int(depth is not None)
            frame = InputFrame(
                camera=camera.topic,
                image=item.image,
                order=item.order,
                stamp_ns=item.stamp_ns,
                frame_id=item.frame_id,
                depth=depth,
                camera_model=model if depth is not None else None,
                overlay=self.options.overlay,
                points=self.options.points,
            )
            self._add_to_batch(BagFrame(frame, item.log_time_ns))

    def _add_to_batch(self, item: BagFrame) -> None:
        if self._batch:
            first = self._batch[0].frame
            if any(b.frame.camera == item.frame.camera for b in self._batch) or (
                abs(item.frame.stamp_ns - first.stamp_ns) > self.options.batch_window_ns
            ):
                self._flush()
        self._batch.append(item)

    def _flush(self) -> None:
        if self._batch:
            self._ready.append(self._batch)
            self._batch = []
