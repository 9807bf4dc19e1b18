"""Image encoding: numpy arrays to the fields of ``sensor_msgs/Image`` and ``CompressedImage``, without ROS.

This module owns the writing side of the image codec, the inverse of
:mod:`panoptic_ros.core.image_codec`: :func:`array_to_image` and :func:`array_to_compressed` give the
fields of a message (:class:`ImageFields`, :class:`CompressedFields`); the pixel bytes come as a flat
``uint8`` view of a contiguous array, ready for a one-copy fill. The layouts follow the table of
:mod:`panoptic_ros.core.encodings`.

Every input that does not fit raises :class:`~panoptic_ros.errors.ImageEncodeError` with a message
that names the array's shape or dtype and the encoding.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import cv2
import numpy as np

from panoptic_ros.core.encodings import ColorOrder, lookup_encoding
from panoptic_ros.core.label_png import gray_png_of_runs, row_runs
from panoptic_ros.errors import ImageDecodeError, ImageEncodeError


class ImageFields(NamedTuple):
    """The fields of a ``sensor_msgs/Image``; ``data`` is a flat uint8 view of contiguous pixels."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


class CompressedFields(NamedTuple):
    """The fields of a ``sensor_msgs/CompressedImage``; ``data`` is the encoded bytes (uint8)."""

    format: str
    data: np.ndarray


def array_to_image(array: np.ndarray, encoding: str, *, is_bigendian: bool = False) -> ImageFields:
    """Fields of a ``sensor_msgs/Image`` holding ``array``, the inverse of
    :func:`~panoptic_ros.core.image_codec.image_to_array`.

    ``array`` has the raw layout of ``encoding`` (``H x W`` or ``H x W x C``; ``H x W x 2`` for
    yuv422; ``(3H/2) x W`` for nv12/nv21) and its sample type (any byte order). The data is a view
    of ``array`` when it is contiguous in the requested byte order, else one copy. ``step`` is
    the row size without padding.

    Raises:
        ImageEncodeError: unknown encoding, or a shape or dtype that does not fit it.
    """
    try:
        enc = lookup_encoding(encoding)
    except ImageDecodeError as err:
        raise ImageEncodeError(str(err)) from err
    array = np.asarray(array)
    single = enc.channels == 1 or enc.kind == "nv"
    expected_ndim = 2 if single else 3
    if array.ndim != expected_ndim or (not single and array.shape[2] != enc.channels):
        want = "H x W" if single else f"H x W x {enc.channels}"
        raise ImageEncodeError(f"array of shape {array.shape} does not fit encoding={encoding!r} ({want})")
    if array.dtype.newbyteorder("<") != enc.dtype.newbyteorder("<"):
        raise ImageEncodeError(
            f"array of dtype {array.dtype} does not fit encoding={encoding!r} ({enc.dtype.name}); convert it "
            f"with array.astype(numpy.{enc.dtype.name}) first"
        )
    rows, width = int(array.shape[0]), int(array.shape[1])
    height = rows
    if enc.kind == "yuv422" and width % 2:
        raise ImageEncodeError(f"array of shape {array.shape} has width={width}, must be even for {encoding}")
    if enc.kind == "nv":
        if rows % 3 or width % 2:
            raise ImageEncodeError(f"array of shape {array.shape} is not a (3H/2) x W {encoding} layout")
        height = rows * 2 // 3
    if height == 0 or width == 0:
        raise ImageEncodeError(f"array of shape {array.shape} is empty")
    target = enc.dtype.newbyteorder(">" if is_bigendian else "<") if enc.dtype.itemsize > 1 else enc.dtype
    contiguous = np.ascontiguousarray(array, dtype=target)
    return ImageFields(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bool(is_bigendian) and enc.dtype.itemsize > 1),
        step=width * enc.bytes_per_pixel,
        data=contiguous.reshape(-1).view(np.uint8),
    )


def array_to_compressed(
    array: np.ndarray, *, codec: Literal["jpeg", "png"] = "jpeg", quality: int = 90, order: ColorOrder = "bgr"
) -> CompressedFields:
    """Fields of a ``sensor_msgs/CompressedImage`` for an ``H x W x 3`` uint8 color (``order``) or
    ``H x W`` gray image, as image_transport's ``compressed`` plugin writes them."""
    if codec not in ("jpeg", "png"):
        raise ImageEncodeError(f"codec={codec!r} is not supported; use 'jpeg' or 'png'")
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        # OpenCV's swap: a reversed numpy view would be copied element by element for the encoder
        bgr = array if order == "bgr" else cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
        source = "bgr8"
    elif array.ndim == 2 and array.dtype in (np.uint8, np.uint16):
        bgr = array
        source = "mono8" if array.dtype == np.uint8 else "mono16"
    else:
        raise ImageEncodeError(
            f"array of shape {array.shape} and dtype {array.dtype} is neither H x W x 3 uint8 nor H x W gray"
        )
    if codec == "jpeg" and source == "mono16":
        raise ImageEncodeError("16-bit gray images cannot be stored as JPEG; use codec='png'")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, encoded = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(bgr), params)
    if not ok:
        raise ImageEncodeError(f"OpenCV could not encode a {array.shape} image as {codec}")
    return CompressedFields(format=f"{source}; {codec} compressed {source}", data=encoded.reshape(-1))


#: How a ``32SC1`` label image travels as PNG: its little-endian bytes as the 4 channels of a ``bgra8``
#: image (lossless; read back by :func:`panoptic_ros.core.image_codec.compressed_to_array`) ...
LABELS_32_FORMAT = "32SC1; png compressed bgra8"
#: ... or, when every id is in 0..65535 (the usual case: track ids count up), as a ``mono16`` PNG.
LABELS_32_AS_16_FORMAT = "32SC1; png compressed mono16"


#: OpenCV's settings for the 4-channel label PNG (the gray ones follow them in ``label_png``).
#: zlib's run-length strategy: label images are long runs of one value (smaller PNGs, no slower); the
#: "up" filter on every row instead of libpng's choice per row: a label image enlarged from the model's
#: resolution repeats whole rows, which the filter turns into zeros. A 1080p label image encodes about
#: 3x faster than with the adaptive filters, at the same size for category ids
#: (``benchmarks/bench_labels.py``).
_LABEL_PNG = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
]  # fmt: skip


def labels_to_png(labels: np.ndarray) -> CompressedFields:
    """Fields of a lossless PNG ``sensor_msgs/CompressedImage`` of an ``H x W`` label image: ``uint8``
    and ``uint16`` as ``mono8``/``mono16`` (as image_transport's ``compressed`` plugin names them),
    ``int32`` (instance ids) as :data:`LABELS_32_AS_16_FORMAT` when every id fits 16 bits, else
    :data:`LABELS_32_FORMAT`. Never JPEG: labels must survive exactly. Gray PNGs are written by
    :mod:`panoptic_ros.core.label_png` (each run of equal rows compressed once), the 4-channel one by
    OpenCV.

    Raises:
        ImageEncodeError: not ``H x W``, another type, or no pixel.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ImageEncodeError(f"a label image is H x W; got shape {labels.shape}")
    if labels.dtype not in (np.uint8, np.uint16, np.int32):
        raise ImageEncodeError(f"label images are uint8, uint16 or int32; got {labels.dtype}")
    if labels.size == 0:
        raise ImageEncodeError(f"a {labels.shape} label image has no pixel to encode")
    first, lengths = row_runs(labels)  # the image as runs of equal rows: each distinct row encoded once
    distinct = labels[first]
    if labels.dtype != np.int32:
        name = "mono8" if labels.dtype == np.uint8 else "mono16"
        png = gray_png_of_runs(distinct, lengths)
        return CompressedFields(f"{name}; png compressed {name}", _png_bytes(png))
    if int(distinct.min()) >= 0 and int(distinct.max()) <= 0xFFFF:
        png = gray_png_of_runs(distinct.astype(np.uint16), lengths)
        return CompressedFields(LABELS_32_AS_16_FORMAT, _png_bytes(png))
    pixels = np.ascontiguousarray(labels.astype("<i4", copy=False)).view(np.uint8).reshape(*labels.shape, 4)
    ok, encoded = cv2.imencode(".png", pixels, _LABEL_PNG)
    if not ok:
        raise ImageEncodeError(f"OpenCV could not encode a {labels.shape} label image as PNG")
    return CompressedFields(format=LABELS_32_FORMAT, data=encoded.reshape(-1))


def _png_bytes(png: bytes) -> np.ndarray:
    """A PNG file as the uint8 array :class:`CompressedFields` carries (no copy)."""
    return np.frombuffer(png, dtype=np.uint8)
