"""Camera messages to engine inputs: the one decoding of color frames, depth images and camera_info.

Every front-end (the node's worker, the bag frame reader behind ``bag process`` and ``infer``, the
offline demo) turns messages into frames through these functions, so each encoding, ``step``, byte
order, ``compressedDepth`` and malformed case is handled once. They work on rclpy and ``rosbags``
messages alike (same field names). Errors are :class:`~panoptic_ros.errors.ImageDecodeError` (a
malformed or unsupported image) or :class:`~panoptic_ros.errors.ConfigError` (a depth encoding that is
not depth, an uncalibrated camera_info), each naming the field and value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from panoptic_ros.core.encodings import ColorOrder
from panoptic_ros.core.geometry import CameraModel, depth_in_meters
from panoptic_ros.core.image_codec import (
    compressed_to_array,
    compressed_to_color,
    image_to_array,
    image_to_color,
)


def color_frame(msg: Any, *, compressed: bool, order: ColorOrder = "rgb") -> np.ndarray:
    """An ``Image`` or ``CompressedImage`` as an ``H x W x 3`` uint8 frame in ``order``, C-contiguous
    and writable (a copy only when the decoded pixels are a read-only view of the message)."""
    frame = (compressed_to_color if compressed else image_to_color)(msg, order)
    if not (frame.flags.writeable and frame.flags.c_contiguous):
        frame = np.array(frame, order="C")
    return frame


def depth_frame(msg: Any, *, compressed: bool) -> np.ndarray:
    """A depth ``Image`` (``32FC1`` meters, ``16UC1``/``mono16`` millimeters, either byte order) or a
    ``compressedDepth`` ``CompressedImage`` as ``H x W`` float32 meters, NaN where invalid."""
    if compressed:
        decoded = compressed_to_array(msg)
        return depth_in_meters(decoded.array, decoded.encoding)
    return depth_in_meters(image_to_array(msg, native=True), str(msg.encoding))


def camera_model(info: Any, fallback_size: tuple[int, int] | None = None) -> CameraModel:
    """The pinhole model of a ``sensor_msgs/CameraInfo``; ``fallback_size`` ``(height, width)`` stands
    in for a camera_info that leaves its size 0."""
    height, width = int(info.height), int(info.width)
    if fallback_size is not None:
        height, width = height or fallback_size[0], width or fallback_size[1]
    return CameraModel.from_k(info.k, width, height)
