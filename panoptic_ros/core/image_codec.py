"""Image decoding: ``sensor_msgs/Image`` and ``CompressedImage`` fields to numpy, without ROS.

This module owns the reading side of the image codec. The functions are duck-typed on the message
fields (``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``; ``format`` and
``data`` for compressed images), so the same code serves rclpy messages in the node, ``rosbags``
messages in the bag tools, and plain records in tests.

- :func:`image_to_array` gives the pixels in their stored layout as a **zero-copy view** of
  ``msg.data`` wherever the layout allows (any ``step`` padding; byte order kept as declared).
- :func:`image_to_color` gives ``H x W x 3`` ``uint8`` in RGB or BGR order from any color encoding
  (a view when the encoding already is that order, else one conversion).
- :func:`compressed_to_array` / :func:`compressed_to_color` decode JPEG/PNG (and
  ``compressedDepth``) payloads.

The table of encodings and their layouts is :mod:`panoptic_ros.core.encodings`; the writing side
(:func:`~panoptic_ros.core.image_encode.array_to_image`,
:func:`~panoptic_ros.core.image_encode.array_to_compressed`) is :mod:`panoptic_ros.core.image_encode`.

Every malformed input raises :class:`~panoptic_ros.errors.ImageDecodeError` with a message that names
the field and the values, e.g. ``data has 100 bytes, fewer than step * height = 192 * 2 = 384``.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, Protocol

import cv2
import numpy as np

from panoptic_ros.core.encodings import ColorOrder, Encoding, lookup_encoding
from panoptic_ros.core.payload import (
    DEFAULT_MAX_PIXELS,
    check_png,
    check_size,
    codec_of,
    decode_jpeg,
    header_size,
)
from panoptic_ros.errors import ImageDecodeError

#: Largest accepted width or height; anything above is treated as a corrupt header.
MAX_DIMENSION = 1 << 15
#: Largest accepted ``step * height`` (bytes); 2 GiB.
MAX_IMAGE_BYTES = 1 << 31


class ImageLike(Protocol):
    """The fields of ``sensor_msgs/Image`` this module reads."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any


class CompressedImageLike(Protocol):
    """The fields of ``sensor_msgs/CompressedImage`` this module reads."""

    format: str
    data: Any


# --------------------------------------------------------------------------------------------------
# reading raw images


def _field(msg: object, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError as err:
        raise ImageDecodeError(f"message {type(msg).__name__} has no field {name!r}") from err


def _int_field(msg: object, name: str) -> int:
    value = _field(msg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageDecodeError(f"{name}={value!r} is not an integer")
    return int(value)


def _as_bytes(data: Any, field: str = "data") -> np.ndarray:
    """A flat ``uint8`` view of a message's byte buffer (array.array, bytes, numpy, memoryview); a
    copy only for a Python list or a strided (non-contiguous) numpy array."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(f"{field} has dtype {data.dtype}, expected uint8 bytes")
        # A strided (non-contiguous) array cannot back the strided view; make it contiguous (a copy).
        return np.ascontiguousarray(data).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise ImageDecodeError(f"{field} of type {type(data).__name__} is not a byte buffer: {err}") from err


class _Checked(NamedTuple):
    encoding: Encoding
    height: int
    width: int
    step: int
    rows: int  # rows of `step` bytes the pixels occupy (height, or 3*height/2 for nv)
    dtype: np.dtype  # sample type in the declared byte order
    buffer: np.ndarray


def _check(msg: ImageLike) -> _Checked:
    encoding = lookup_encoding(str(_field(msg, "encoding")))
    height = _int_field(msg, "height")
    width = _int_field(msg, "width")
    step = _int_field(msg, "step")
    big = _field(msg, "is_bigendian")
    for name, value in (("height", height), ("width", width)):
        if value <= 0 or value > MAX_DIMENSION:
            raise ImageDecodeError(f"{name}={value} is outside 1..{MAX_DIMENSION}")
    row_bytes = width * encoding.bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step={step} is smaller than one row: width={width} x {encoding.bytes_per_pixel} bytes "
            f"per pixel ({encoding.name}) = {row_bytes}"
        )
    if encoding.kind in ("yuv422", "nv") and width % 2:
        raise ImageDecodeError(f"width={width} must be even for {encoding.name}")
    rows = height
    if encoding.kind == "nv":
        if height % 2:
            raise ImageDecodeError(f"height={height} must be even for {encoding.name}")
        rows = height * 3 // 2
    if step * rows > MAX_IMAGE_BYTES:
        raise ImageDecodeError(f"step * height = {step} * {height} exceeds {MAX_IMAGE_BYTES} bytes")
    buffer = _as_bytes(_field(msg, "data"))
    needed = step * rows
    if buffer.size != needed:
        formula = "step * height * 3 / 2" if encoding.kind == "nv" else "step * height"
        raise ImageDecodeError(
            f"data has {buffer.size} bytes, {'fewer' if buffer.size < needed else 'more'} than {formula} = "
            f"{step} * {height}{' * 3 / 2' if encoding.kind == 'nv' else ''} = {needed}"
        )
    dtype = (
        encoding.dtype.newbyteorder(">" if big else "<") if encoding.dtype.itemsize > 1 else encoding.dtype
    )
    return _Checked(encoding, height, width, step, rows, dtype, buffer)


def image_to_array(msg: ImageLike, *, native: bool = False) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` in their stored layout.

    Returns a view of ``msg.data`` (no copy) of shape ``H x W`` for one channel, ``H x W x C``
    otherwise, ``H x W x 2`` for yuv422 and ``(3H/2) x W`` for nv12/nv21. Row padding (``step``) is
    skipped by the view's strides. The dtype carries the declared byte order; with ``native=True`` a
    big-endian image is converted (one copy) to this machine's order.

    Raises:
        ImageDecodeError: unknown encoding, sizes outside 1..:data:`MAX_DIMENSION`, ``step`` smaller
            than a row, ``data`` shorter than the rows need, odd sizes for the YUV layouts.
    """
    c = _check(msg)
    channels = c.encoding.channels
    itemsize = c.dtype.itemsize
    if c.encoding.kind == "nv" or channels == 1:
        shape: tuple[int, ...] = (c.rows, c.width)
        strides: tuple[int, ...] = (c.step, itemsize)
    else:
        shape = (c.rows, c.width, channels)
        strides = (c.step, channels * itemsize, itemsize)
    view = np.ndarray(shape=shape, dtype=c.dtype, buffer=c.buffer, strides=strides)
    if native and not c.dtype.isnative:
        view = view.astype(c.dtype.newbyteorder("="))
    return view


#: OpenCV's conversion of each YUV 4:2:2 byte pattern, NV chroma order and Bayer pattern, by the
#: channel order asked for: converting straight into that order costs nothing more.
_YUV422_CODES = {
    "uyvy": {"rgb": cv2.COLOR_YUV2RGB_UYVY, "bgr": cv2.COLOR_YUV2BGR_UYVY},
    "yuyv": {"rgb": cv2.COLOR_YUV2RGB_YUY2, "bgr": cv2.COLOR_YUV2BGR_YUY2},
}
_NV_CODES = {
    "uv": {"rgb": cv2.COLOR_YUV2RGB_NV12, "bgr": cv2.COLOR_YUV2BGR_NV12},
    "vu": {"rgb": cv2.COLOR_YUV2RGB_NV21, "bgr": cv2.COLOR_YUV2BGR_NV21},
}
# OpenCV names a Bayer pattern by the second row's first two pixels, ROS by the first row's.
_BAYER_CODES = {
    "rggb": {"rgb": cv2.COLOR_BayerBG2RGB, "bgr": cv2.COLOR_BayerBG2BGR},
    "bggr": {"rgb": cv2.COLOR_BayerRG2RGB, "bgr": cv2.COLOR_BayerRG2BGR},
    "gbrg": {"rgb": cv2.COLOR_BayerGR2RGB, "bgr": cv2.COLOR_BayerGR2BGR},
    "grbg": {"rgb": cv2.COLOR_BayerGB2RGB, "bgr": cv2.COLOR_BayerGB2BGR},
}
#: OpenCV's conversion from each stored color order to each order asked for (the same order of three
#: channels needs none).
_COLOR_CODES = {
    ("rgb", "bgr"): cv2.COLOR_RGB2BGR,
    ("bgr", "rgb"): cv2.COLOR_BGR2RGB,
    ("rgba", "rgb"): cv2.COLOR_RGBA2RGB,
    ("rgba", "bgr"): cv2.COLOR_RGBA2BGR,
    ("bgra", "rgb"): cv2.COLOR_BGRA2RGB,
    ("bgra", "bgr"): cv2.COLOR_BGRA2BGR,
}


def _to_uint8(samples: np.ndarray) -> np.ndarray:
    """16-bit samples to 8 bits by their high byte (the display convention of mono16/rgb16)."""
    if samples.dtype.itemsize == 1:
        return samples
    return (samples.astype(np.uint16) >> 8).astype(np.uint8)


def cheapest_order(encoding: Encoding) -> ColorOrder:
    """The channel order in which an encoding's pixels become a color frame with the least work: a
    color encoding's own (``bgr8``/``bgra8`` as bgr: a zero-copy view, or only the alpha dropped),
    RGB for the others (gray, YUV and Bayer convert into either order at the same cost)."""
    return "bgr" if encoding.kind == "color" and encoding.order.startswith("bgr") else "rgb"


def raw_to_color(raw: np.ndarray, encoding: Encoding, order: ColorOrder = "rgb") -> np.ndarray:
    """Convert a raw view (as from :func:`image_to_array`) to ``H x W x 3`` uint8 in ``order``.

    Returns a view where no conversion is needed (``rgb8`` asked as rgb, ``bgr8`` as bgr), else a new
    C-contiguous array made by one OpenCV conversion (channels reversed, alpha dropped, gray spread
    to three channels, YUV or Bayer converted straight into ``order``). A channel-reversed or
    alpha-dropping numpy view would cost its user a strided copy: about 13 ms for a 1920x1080 frame
    on dev-cpu, against a quarter of a millisecond for OpenCV's (``docs/BENCHMARKS.md``).
    """
    kind = encoding.kind
    if kind == "color":
        samples = _to_uint8(raw)
        if encoding.order == order:
            return samples
        return cv2.cvtColor(samples, _COLOR_CODES[(encoding.order, order)])
    if kind == "mono":
        return cv2.cvtColor(_to_uint8(raw), cv2.COLOR_GRAY2RGB)  # three equal channels: any order
    native = raw if raw.dtype.isnative else raw.astype(raw.dtype.newbyteorder("="))
    if kind == "yuv422":
        return cv2.cvtColor(np.ascontiguousarray(native), _YUV422_CODES[encoding.order][order])
    if kind == "nv":
        return cv2.cvtColor(np.ascontiguousarray(native), _NV_CODES[encoding.order][order])
    if kind == "bayer":
        return _to_uint8(cv2.cvtColor(np.ascontiguousarray(native), _BAYER_CODES[encoding.order][order]))
    raise ImageDecodeError(
        f"encoding={encoding.name!r} holds {encoding.channels}-channel {encoding.dtype.name} values "
        "(depth or other measurements), not a color picture; publish rgb8, bgr8, mono8, yuv, nv12 or bayer"
    )


def image_to_color(msg: ImageLike, order: ColorOrder = "rgb") -> np.ndarray:
    """A ``sensor_msgs/Image`` as ``H x W x 3`` uint8 in RGB (or BGR) order, whatever its color
    encoding: a zero-copy view for ``rgb8``/``bgr8`` where the order allows (:func:`raw_to_color`)."""
    return raw_to_color(image_to_array(msg), lookup_encoding(str(msg.encoding)), order)


# --------------------------------------------------------------------------------------------------
# compressed images

#: ``compressed_depth_image_transport``'s header: int32 format, float32 depthQuantA, depthQuantB.
_DEPTH_HEADER = struct.Struct("<iff")


class DecodedImage(NamedTuple):
    """A decoded compressed image: ``array`` (``H x W`` or ``H x W x C``) and its ``encoding``."""

    array: np.ndarray
    encoding: str


class Inspected(NamedTuple):
    """A compressed message read up to its pixels: ``format``, the image payload (after a
    ``compressedDepth`` header), its codec, the original encoding named in ``format`` and the depth
    header (None for a plain image)."""

    fmt: str
    payload: np.ndarray
    codec: str
    original: str
    depth_header: tuple[int, float, float] | None


def inspect_compressed(msg: CompressedImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Inspected:
    """Everything about a ``CompressedImage`` that can be known without decoding it: the payload and
    its codec, and its size against ``max_pixels`` (from the header).

    Raises:
        InputTooLarge: more pixels than ``max_pixels``.
        ImageDecodeError: empty data, a truncated depth header, neither JPEG nor PNG, no size header.
    """
    fmt = str(_field(msg, "format"))
    payload = _as_bytes(_field(msg, "data"))
    if payload.size == 0:
        raise ImageDecodeError(f"data is empty (format={fmt!r})")
    original = fmt.split(";", 1)[0].strip() if ";" in fmt else ""
    header: tuple[int, float, float] | None = None
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        if payload.size <= _DEPTH_HEADER.size:
            raise ImageDecodeError(
                f"data has {payload.size} bytes, too few for a compressedDepth header of "
                f"{_DEPTH_HEADER.size} bytes plus an image (format={fmt!r})"
            )
        header = _DEPTH_HEADER.unpack(payload[: _DEPTH_HEADER.size].tobytes())
        payload = payload[_DEPTH_HEADER.size :]
    codec = codec_of(payload)
    if codec == "unknown":
        raise ImageDecodeError(
            f"data ({payload.size} bytes, starting {payload[:8].tobytes().hex()}) is neither JPEG nor PNG "
            f"(format={fmt!r})"
        )
    check_size(*header_size(payload, codec), max_pixels, f"the {codec.upper()} image (format={fmt!r})")
    return Inspected(fmt, payload, codec, original, header)


def compressed_to_array(msg: CompressedImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, or ``compressedDepth`` PNG).

    ``format`` follows image_transport (``"jpeg"``, ``"bgr8; jpeg compressed bgr8"``,
    ``"16UC1; compressedDepth png"``); the payload's magic bytes decide the codec. Color comes
    back ``bgr8`` (``bgra8`` with alpha), gray ``mono8``/``mono16``, depth ``16UC1`` or ``32FC1``
    (meters, NaN where unknown), ``32SC1`` label images stored as ``mono16`` or packed as ``bgra8``
    PNG (:func:`~panoptic_ros.core.image_encode.labels_to_png`) as ``int32``. The size is read from the
    header first and an image over ``max_pixels`` (0: no limit) is refused before decoding; JPEG and
    PNG are checked strictly (:mod:`panoptic_ros.core.payload`): truncated or inconsistent files are
    errors.

    Raises:
        InputTooLarge: more pixels than ``max_pixels``.
        ImageDecodeError: empty, corrupt or truncated data, an unknown payload, a truncated depth
            header.
    """
    fmt, payload, codec, original, header = inspect_compressed(msg, max_pixels=max_pixels)
    if codec == "jpeg":
        decoded = decode_jpeg(payload)
    else:
        check_png(payload)
        decoded = _imdecode(payload, fmt)
    if header is not None:
        return _depth_image(decoded, original or "16UC1", header, fmt)
    if original == "32SC1" and decoded.ndim == 2 and decoded.dtype == np.uint16:  # ids that fit 16 bits
        return DecodedImage(decoded.astype(np.int32), "32SC1")
    if original == "32SC1":  # a label image packed into bgra8 (image_encode.labels_to_png)
        if decoded.ndim != 3 or decoded.shape[2] != 4 or decoded.dtype != np.uint8:
            raise ImageDecodeError(
                f"a 32SC1 PNG holds 4 8-bit channels; this one is {decoded.dtype} {decoded.shape} "
                f"(format={fmt!r})"
            )
        labels = np.ascontiguousarray(decoded).view("<i4").reshape(decoded.shape[:2])
        return DecodedImage(labels.astype(np.int32, copy=False), "32SC1")
    if decoded.ndim == 2:
        if decoded.dtype == np.uint16:
            return DecodedImage(decoded, original if original == "16UC1" else "mono16")
        return DecodedImage(decoded, "mono8")
    return DecodedImage(
        decoded,
        {3: "bgr8", 4: "bgra8"}[decoded.shape[2]]
        if decoded.dtype == np.uint8
        else {3: "bgr16", 4: "bgra16"}[decoded.shape[2]],
    )


def _imdecode(payload: np.ndarray, fmt: str) -> np.ndarray:
    try:
        decoded = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:  # e.g. a header claiming more pixels than OpenCV accepts
        raise ImageDecodeError(
            f"data ({payload.size} bytes) is a corrupt PNG image (format={fmt!r}): "
            f"{str(err).strip().splitlines()[-1]}"
        ) from err
    if decoded is None:
        raise ImageDecodeError(
            f"data ({payload.size} bytes) is a corrupt or truncated PNG image (format={fmt!r})"
        )
    return decoded


def _depth_image(
    decoded: np.ndarray, original: str, header: tuple[int, float, float] | None, fmt: str
) -> DecodedImage:
    if decoded.ndim != 2 or decoded.dtype != np.uint16:
        raise ImageDecodeError(
            f"compressedDepth payload is {decoded.dtype} x {decoded.shape}, expected 16-bit gray"
        )
    if original == "32FC1":
        _, quant_a, quant_b = header or (0, 0.0, 0.0)
        inverse = decoded.astype(np.float32)
        with np.errstate(divide="ignore"):
            meters = np.where(decoded > 0, quant_a / (inverse - quant_b), np.nan).astype(np.float32)
        return DecodedImage(meters, "32FC1")
    if original not in ("16UC1", "mono16"):
        raise ImageDecodeError(f"compressedDepth of encoding {original!r} is not supported (format={fmt!r})")
    return DecodedImage(decoded, "16UC1")


def compressed_to_color(
    msg: CompressedImageLike, order: ColorOrder = "rgb", *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` as ``H x W x 3`` uint8 in RGB (or BGR) order."""
    decoded = compressed_to_array(msg, max_pixels=max_pixels)
    return raw_to_color(decoded.array, lookup_encoding(decoded.encoding), order)
