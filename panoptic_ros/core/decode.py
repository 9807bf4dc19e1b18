"""Camera messages to engine inputs: the one decoding of color frames, depth images and camera_info.

Every front-end (the node's worker, the bag frame reader behind ``bag process`` and ``infer``, the
offline demo) turns messages into frames through these functions, so each encoding, ``step``, byte
order, ``compressedDepth`` and malformed case is handled once. They work on rclpy and ``rosbags``
messages alike (same field names). Errors are :class:`~panoptic_ros.errors.ImageDecodeError` (a
malformed or unsupported image) or :class:`~panoptic_ros.errors.ConfigError` (a depth encoding that is
not depth, an uncalibrated camera_info), each naming the field and value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from panoptic_ros.core.encodings import ColorOrder, lookup_encoding
from panoptic_ros.core.geometry import CameraModel, depth_in_meters
from panoptic_ros.core.image_codec import (
    cheapest_order,
    compressed_to_array,
    image_to_array,
    inspect_compressed,
    raw_to_color,
)
from panoptic_ros.core.payload import DEFAULT_MAX_PIXELS, InputTooLarge, check_size
from panoptic_ros.errors import ImageDecodeError, UnsupportedEncodingError


def check_message(msg: Any, *, compressed: bool, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """The cheap checks of a camera message, without decoding pixels: every field of a raw image
    (sizes, ``step``, data length, encoding) and its pixel count; a compressed image's codec and the
    size its header declares. What passes can still be corrupt inside (found by decoding).

    Raises:
        InputTooLarge: more pixels than ``max_pixels``.
        ImageDecodeError: a malformed message (the message names the field).
    """
    if compressed:
        inspect_compressed(msg, max_pixels=max_pixels)
        return
    image_to_array(msg)  # a zero-copy view: validates every field
    check_size(int(msg.height), int(msg.width), max_pixels, "the image")


class CameraFrame(NamedTuple):
    """A decoded color frame: ``pixels`` ``H x W x 3`` uint8 (C-contiguous, writable) in ``order``."""

    pixels: np.ndarray
    order: ColorOrder


def color_frame(
    msg: Any, *, compressed: bool, order: ColorOrder = "rgb", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """An ``Image`` or ``CompressedImage`` as an ``H x W x 3`` uint8 frame in ``order``, C-contiguous
    and writable (a copy only when the decoded pixels are a read-only view of the message). Images
    over ``max_pixels`` are refused before any pixel is converted or decoded.

    Raises:
        InputTooLarge: more pixels than ``max_pixels``.
        ImageDecodeError: a malformed, corrupt or unsupported image.
    """
    return _decode_color(msg, compressed, order, max_pixels).pixels


def camera_frame(msg: Any, *, compressed: bool, max_pixels: int = DEFAULT_MAX_PIXELS) -> CameraFrame:
    """:func:`color_frame` in the channel order that costs least for the message's encoding
    (:func:`~panoptic_ros.core.image_codec.cheapest_order`): a ``bgr8`` image, and a JPEG or PNG
    (which OpenCV decodes as BGR), stay BGR; the frame engine takes either order, so a camera's
    frames reach it without a channel swap. Raises as :func:`color_frame`."""
    return _decode_color(msg, compressed, None, max_pixels)


def _decode_color(msg: Any, compressed: bool, order: ColorOrder | None, max_pixels: int) -> CameraFrame:
    """The pixels in ``order`` (None: the cheapest), with the order they are in."""
    if compressed:
        decoded = compressed_to_array(msg, max_pixels=max_pixels)
        raw, encoding = decoded.array, lookup_encoding(decoded.encoding)
    else:
        check_size(int(msg.height), int(msg.width), max_pixels, "the image")
        raw, encoding = image_to_array(msg), lookup_encoding(str(msg.encoding))
    chosen = cheapest_order(encoding) if order is None else order
    frame = raw_to_color(raw, encoding, chosen)
    if not (frame.flags.writeable and frame.flags.c_contiguous):
        frame = np.array(frame, order="C")
    return CameraFrame(frame, chosen)


def depth_frame(msg: Any, *, compressed: bool, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A depth ``Image`` (``32FC1`` meters, ``16UC1``/``mono16`` millimeters, either byte order) or a
    ``compressedDepth`` ``CompressedImage`` as ``H x W`` float32 meters, NaN where invalid."""
    if compressed:
        decoded = compressed_to_array(msg, max_pixels=max_pixels)
        return depth_in_meters(decoded.array, decoded.encoding)
    check_size(int(msg.height), int(msg.width), max_pixels, "the depth image")
    return depth_in_meters(image_to_array(msg, native=True), str(msg.encoding))


def camera_model(info: Any, fallback_size: tuple[int, int] | None = None) -> CameraModel:
    """The pinhole model of a ``sensor_msgs/CameraInfo``; ``fallback_size`` ``(height, width)`` stands
    in for a camera_info that leaves its size 0."""
    height, width = int(info.height), int(info.width)
    if fallback_size is not None:
        height, width = height or fallback_size[0], width or fallback_size[1]
    return CameraModel.from_k(info.k, width, height)


def refusal_kind(err: ImageDecodeError, *, compressed: bool) -> str:
    """The counter a refused frame goes to (``/diagnostics``): ``too_large``, ``unsupported_encoding``,
    else ``corrupt_compressed`` (a compressed frame) or ``malformed``."""
    if isinstance(err, InputTooLarge):
        return "too_large"
    if isinstance(err, UnsupportedEncodingError):
        return "unsupported_encoding"
    return "corrupt_compressed" if compressed else "malformed"
