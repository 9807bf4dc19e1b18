"""Camera images in rosbag2 files (sqlite3 or MCAP), without a ROS installation.

The image-level view of :mod:`panoptic_ros.data.bag_io`: the image topics of a bag, its image
messages in recording order (:class:`~panoptic_ros.data.bag_io.BagMessage`, whose fields are named as
in ROS, so :mod:`panoptic_ros.core.decode` decodes them unchanged), and writing image messages built
from codec fields (:func:`~panoptic_ros.core.image_encode.array_to_image` /
:func:`~panoptic_ros.core.image_encode.array_to_compressed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from panoptic_ros.core.image_encode import CompressedFields, ImageFields
from panoptic_ros.core.messages import compressed_message, header_message, image_message
from panoptic_ros.data.bag_io import BagMessage, BagWriter, read_messages, topic_types
from panoptic_ros.data.bag_types import COMPRESSED_TYPE, IMAGE_TYPE, BagError, Storage, to_rosbags

IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

__all__ = [
    "IMAGE_TYPES",
    "BagError",
    "FrameToWrite",
    "Storage",
    "image_topics",
    "read_images",
    "write_images",
]


def image_topics(path: str | Path) -> dict[str, str]:
    """The image topics of a bag: topic name -> message type."""
    return {topic: msgtype for topic, msgtype in topic_types(path).items() if msgtype in IMAGE_TYPES}


def read_images(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
    """Every image message of a bag in recording order, optionally only from ``topics``.

    A message that fails to deserialize is yielded with ``msg=None`` and its ``error``, so a
    corrupt record is counted by the caller rather than ending the whole read.

    Raises:
        BagError: the bag cannot be opened, or a requested topic is not an image topic in it.
    """
    available = image_topics(path)
    if not available:
        raise BagError(f"bag {path} has no sensor_msgs Image or CompressedImage topics")
    wanted = list(topics) if topics else list(available)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise BagError(f"bag {path} has no image topic {unknown}; its image topics: {sorted(available)}")
    return read_messages(path, wanted)


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
    with BagWriter(path, storage) as writer:
        for frame in frames:
            header = header_message(frame.stamp_ns, frame.frame_id)
            if isinstance(frame.fields, CompressedFields):
                message = compressed_message(frame.fields, header)
            else:
                message = image_message(frame.fields, header)
            writer.write(frame.topic, message.type, to_rosbags(message), frame.stamp_ns)
    return sum(writer.counts.values())
