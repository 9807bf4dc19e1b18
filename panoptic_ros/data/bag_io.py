"""Messages of any registered type in rosbag2 files (sqlite3 or MCAP), read and written without ROS.

:mod:`panoptic_ros.data.bags` is the view of camera images; this module reads and writes every type of
the :func:`~panoptic_ros.data.bag_types.typestore` (ROS 2 Kilted plus this package's messages): camera
info, depth, ground truth and the node's outputs. Messages keep their CDR bytes (``raw``) next to the
deserialized object, so a copy tool can pass them through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from panoptic_ros.core import stamps
from panoptic_ros.data.bag_types import CATEGORY_ARRAY_TYPE, COMPRESSED_TYPE, BagError, Storage, typestore


@dataclass(frozen=True, slots=True)
class BagMessage:
    """One message of a bag.

    Attributes:
        topic, msgtype: where it was recorded and its type (``"sensor_msgs/msg/Image"``).
        log_time_ns: when the recorder received it (bag time).
        raw: the serialized CDR bytes as stored.
        msg: the deserialized ``rosbags`` object, or None when not asked for or not deserializable.
        error: why deserializing failed, else empty.
    """

    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes
    msg: Any = None
    error: str = ""

    @property
    def stamp_ns(self) -> int | None:
        """The header stamp in nanoseconds, or None for messages without one (or not deserialized)."""
        if getattr(self.msg, "header", None) is None:
            return None
        return stamps.stamp_ns(self.msg)

    @property
    def compressed(self) -> bool:
        """Whether it is a ``sensor_msgs/CompressedImage``."""
        return self.msgtype == COMPRESSED_TYPE


def _open_reader(path: str | Path) -> Any:
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as err:  # rosbags raises several unrelated types for unreadable bags
        raise BagError(f"cannot open bag {path}: {err}") from err
    return reader


def topic_types(path: str | Path) -> dict[str, str]:
    """Every topic of a bag and its message type."""
    reader = _open_reader(path)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def message_counts(path: str | Path, topics: Sequence[str] | None = None) -> dict[str, int]:
    """How many messages each topic (or each of ``topics``) holds, from the bag's metadata."""
    reader = _open_reader(path)
    try:
        counts: dict[str, int] = {}
        for c in reader.connections:
            if topics is None or c.topic in topics:
                counts[c.topic] = counts.get(c.topic, 0) + int(c.msgcount)
        return counts
    finally:
        reader.close()


def read_messages(
    path: str | Path, topics: Sequence[str] | None = None, *, deserialize: bool = True
) -> Iterator[BagMessage]:
    """The messages of a bag in recording order (optionally only ``topics``), deserialized with the
    package's type store. A message that fails to deserialize comes with ``msg=None`` and its
    ``error``; it does not end the read.

    Raises:
        BagError: the bag cannot be opened, or a requested topic is not in it.
    """
    store = typestore()
    reader = _open_reader(path)
    try:
        available = {c.topic for c in reader.connections}
        if topics is not None:
            missing = sorted(set(topics) - available)
            if missing:
                raise BagError(f"bag {path} has no topic {missing}; its topics: {sorted(available)}")
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        if not connections:
            return
        for connection, log_time, raw in reader.messages(connections=connections):
            data = bytes(raw)
            if not deserialize:
                yield BagMessage(connection.topic, connection.msgtype, int(log_time), data)
                continue
            try:
                msg = store.deserialize_cdr(data, connection.msgtype)
            except Exception as err:  # corrupt CDR or unknown type: report it and go on
                yield BagMessage(
                    connection.topic,
                    connection.msgtype,
                    int(log_time),
                    data,
                    None,
                    f"{type(err).__name__}: {err}",
                )
                continue
            yield BagMessage(connection.topic, connection.msgtype, int(log_time), data, msg)
    finally:
        reader.close()


def _latched_qos() -> Any:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    unspecified = QosTime(0, 0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL,
        deadline=unspecified,
        lifespan=unspecified,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=unspecified,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """Writes messages of any registered type into a new rosbag2 folder; one connection per topic,
    added at the topic's first message. ``CategoryArray`` topics are recorded with a transient-local
    offered QoS, as the node publishes them, so a player can serve late joiners.

    Use as a context manager; ``counts`` holds the messages written per topic.
    """

    def __init__(self, path: str | Path, storage: Storage = "sqlite3") -> None:
        self.path = Path(path)
        self.storage = storage
        self.counts: dict[str, int] = {}
        self._writer: Any = None
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if self.path.exists():
            raise BagError(f"{self.path} exists; rosbag2 writes a new folder (remove it or choose another)")
        if self.storage not in ("sqlite3", "mcap"):
            raise BagError(f"storage {self.storage!r} is not supported; use sqlite3 or mcap")
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=plugin)
            self._writer.open()
        except Exception as err:  # rosbags raises its own and OS errors
            raise BagError(f"cannot create bag {self.path}: {err}") from err
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _connection(self, topic: str, msgtype: str) -> Any:
        connection = self._connections.get(topic)
        if connection is None:
            if self._writer is None:
                raise BagError(f"bag {self.path} is not open for writing")
            qos = [_latched_qos()] if msgtype == CATEGORY_ARRAY_TYPE else []
            try:
                connection = self._writer.add_connection(
                    topic, msgtype, typestore=typestore(), offered_qos_profiles=qos
                )
            except Exception as err:  # unknown type: rosbags cannot make its definition
                raise BagError(f"cannot add topic {topic} of type {msgtype} to {self.path}: {err}") from err
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagError(f"topic {topic} already holds {connection.msgtype}, cannot write {msgtype}")
        return connection

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic before its first message (a recorder lists its topics even when empty)."""
        self._connection(topic, msgtype)

    def write_raw(self, topic: str, msgtype: str, raw: bytes, log_time_ns: int) -> None:
        """Write a message already serialized to CDR."""
        self._writer.write(self._connection(topic, msgtype), int(log_time_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write(self, topic: str, msgtype: str, msg: Any, log_time_ns: int) -> None:
        """Serialize a ``rosbags`` message object and write it."""
        connection = self._connection(topic, msgtype)
        self._writer.write(connection, int(log_time_ns), typestore().serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1
