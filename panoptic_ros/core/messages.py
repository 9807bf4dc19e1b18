"""ROS messages described without ROS: a type name and the values of its fields.

The contents of every output (:mod:`panoptic_ros.runtime.outputs`) are computed once, as a tree of
:class:`Message` records. Two thin wrappers turn a tree into a real message: the rclpy one for the
live node (``panoptic_ros.ros.wrap``) and the ``rosbags`` one for bag files
(:func:`panoptic_ros.data.bag_types.to_rosbags`). Fields left out take the message definition's
default (0, ``""``, ``False``, empty), in both wrappers.

Field values are Python scalars and strings, nested :class:`Message` records, lists of them, or
numpy arrays for numeric arrays (``uint8[] data`` of images as one contiguous ``uint8`` buffer).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from panoptic_ros.core.image_encode import CompressedFields, ImageFields
from panoptic_ros.core.stamps import split_ns

HEADER = "std_msgs/msg/Header"
TIME = "builtin_interfaces/msg/Time"
DURATION = "builtin_interfaces/msg/Duration"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"


class Message(NamedTuple):
    """One message: ``type`` is ``package/msg/Name``; ``fields`` maps field names to values."""

    type: str
    fields: dict[str, Any]

    def get(self, *path: str) -> Any:
        """The value at a path of field names (``msg.get("header", "frame_id")``)."""
        value: Any = self
        for name in path:
            value = value.fields[name]
        return value


def time_message(stamp_ns: int) -> Message:
    """``builtin_interfaces/Time`` of a stamp in nanoseconds."""
    sec, nanosec = split_ns(stamp_ns)
    return Message(TIME, {"sec": sec, "nanosec": nanosec})


def duration_message(seconds: float) -> Message:
    """``builtin_interfaces/Duration`` of a span in seconds (>= 0)."""
    sec, nanosec = split_ns(round(seconds * 1e9))
    return Message(DURATION, {"sec": sec, "nanosec": nanosec})


def header_message(stamp_ns: int, frame_id: str) -> Message:
    """``std_msgs/Header`` with a stamp in nanoseconds."""
    return Message(HEADER, {"stamp": time_message(stamp_ns), "frame_id": frame_id})


def image_message(fields: ImageFields, header: Any) -> Message:
    """``sensor_msgs/Image`` from :func:`~panoptic_ros.core.image_encode.array_to_image` fields (the
    pixel bytes as one contiguous ``uint8`` array)."""
    return Message(
        IMAGE,
        {
            "header": header,
            "height": fields.height,
            "width": fields.width,
            "encoding": fields.encoding,
            "is_bigendian": fields.is_bigendian,
            "step": fields.step,
            "data": np.ascontiguousarray(fields.data, dtype=np.uint8).reshape(-1),
        },
    )


def compressed_message(fields: CompressedFields, header: Any) -> Message:
    """``sensor_msgs/CompressedImage`` from :func:`~panoptic_ros.core.image_encode.array_to_compressed`
    fields."""
    data = np.ascontiguousarray(fields.data, dtype=np.uint8).reshape(-1)
    return Message(COMPRESSED_IMAGE, {"header": header, "format": fields.format, "data": data})
