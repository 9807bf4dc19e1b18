"""Camera images in rosbag2 files (sqlite3 or MCAP), without a ROS installation.

Uses the ``rosbags`` package, whose message objects carry the same field names as the ROS ones, so
:mod:`panoptic_ros.core.image_codec` decodes them unchanged. Only image topics are handled here:
``sensor_msgs/msg/Image`` and ``sensor_msgs/msg/CompressedImage``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from panoptic_ros.core.image_codec import CompressedFields, ImageFields
from panoptic_ros.errors import PanopticRosError

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
Storage = Literal["sqlite3", "mcap"]


class BagError(PanopticRosError, OSError):
    """A bag cannot be opened, read or written (missing, corrupt, no image topics)."""


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


@dataclass(frozen=True, slots=True)
class BagImage:
    """One image message read from a bag.

    Attributes:
        topic: the topic it was recorded on.
        msgtype: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        log_time_ns: when the recorder received it (bag time).
        msg: the deserialized message (fields as in ROS; ``data`` is a numpy uint8 array), or None
            when it could not be deserialized (``error`` then says why).
        error: why the message could not be deserialized, else empty.
    """

    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any
    error: str = ""

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED_TYPE

    @property
    def stamp_ns(self) -> int:
        """The header stamp in nanoseconds (0 when the message could not be read)."""
        if self.msg is None:
            return 0
        stamp = self.msg.header.stamp
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_topics(path: str | Path) -> dict[str, str]:
    """The image topics of a bag: topic name -> message type."""
    from rosbags.rosbag2 import Reader

    try:
        with Reader(path) as reader:
            return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
    except Exception as err:  # rosbags raises several unrelated types for unreadable bags
        raise BagError(f"cannot open bag {path}: {err}") from err


def read_images(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[BagImage]:
    """Every image message of a bag in recording order, optionally only from ``topics``.

    A message that fails to deserialize is yielded with ``msg=None`` and its ``error``, so a
    corrupt record is counted by the caller rather than ending the whole read.

    Raises:
        BagError: the bag cannot be opened, or a requested topic is not an image topic in it.
    """
    from rosbags.rosbag2 import Reader

    available = image_topics(path)
    if not available:
        raise BagError(f"bag {path} has no sensor_msgs Image or CompressedImage topics")
    wanted = list(topics) if topics else list(available)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise BagError(f"bag {path} has no image topic {unknown}; its image topics: {sorted(available)}")
    typestore = _typestore()
    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic in wanted]
        for connection, log_time, raw in reader.messages(connections=connections):
            try:
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
            except Exception as err:  # corrupt CDR: report and go on
                yield BagImage(
                    connection.topic, connection.msgtype, log_time, None, f"{type(err).__name__}: {err}"
                )
                continue
            yield BagImage(connection.topic, connection.msgtype, log_time, msg)


@dataclass(frozen=True, slots=True)
class FrameToWrite:
    """One image to write: topic, stamp (ns), frame_id and the message fields (raw or compressed)."""

    topic: str
    stamp_ns: int
    frame_id: str
    fields: ImageFields | CompressedFields


def write_images(path: str | Path, frames: Iterable[FrameToWrite], *, storage: Storage = "sqlite3") -> int:
    """Write image messages into a new rosbag2 folder at ``path``; returns how many were written.

    Each topic's type follows its first frame (``ImageFields`` -> Image, ``CompressedFields`` ->
    CompressedImage); the bag time of each message is its stamp.

    Raises:
        BagError: ``path`` exists, or a topic mixes raw and compressed frames.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    if path.exists():
        raise BagError(f"{path} exists; rosbag2 writes a new folder (remove it or choose another --out)")
    typestore = _typestore()
    types = typestore.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    connections: dict[str, Any] = {}
    count = 0
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        for frame in frames:
            msgtype = COMPRESSED_TYPE if isinstance(frame.fields, CompressedFields) else IMAGE_TYPE
            connection = connections.get(frame.topic)
            if connection is None:
                connection = connections[frame.topic] = writer.add_connection(
                    frame.topic, msgtype, typestore=typestore
                )
            elif connection.msgtype != msgtype:
                raise BagError(f"topic {frame.topic} mixes {connection.msgtype} and {msgtype} frames")
            sec, nanosec = divmod(frame.stamp_ns, 1_000_000_000)
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame.frame_id
            )
            fields = frame.fields
            data = np.ascontiguousarray(fields.data, dtype=np.uint8).reshape(-1)
            if isinstance(fields, CompressedFields):
                msg = types[COMPRESSED_TYPE](header=header, format=fields.format, data=data)
            else:
                msg = types[IMAGE_TYPE](
                    header=header,
                    height=fields.height,
                    width=fields.width,
                    encoding=fields.encoding,
                    is_bigendian=fields.is_bigendian,
                    step=fields.step,
                    data=data,
                )
            writer.write(connection, frame.stamp_ns, typestore.serialize_cdr(msg, msgtype))
            count += 1
    return count
