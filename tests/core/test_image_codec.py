"""Tests of the image codec (:mod:`panoptic_ros.core.image_codec` reading,
:mod:`panoptic_ros.core.image_encode` writing, :mod:`panoptic_ros.core.encodings` the table), without ROS.

Messages are plain records (``SimpleNamespace``) with the fields of ``sensor_msgs/Image`` and
``CompressedImage``; their ``data`` is tried as ``array.array('B')`` (what rclpy gives), ``bytes``
and a numpy ``uint8`` array (what the rosbags library gives).

Every expected buffer is built here by hand, independently of the module: rows are packed with
:mod:`struct` in the declared byte order (``>`` for ``is_bigendian=1``) and padded to ``step`` with
garbage bytes; YUV data comes from the BT.601 formulas below; Bayer mosaics from the ROS pattern
definition (``rggb``: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)).

Which results are views of ``msg.data`` (asserted with ``np.shares_memory``):

- :func:`image_to_array`: always, for every layout, padding and byte order (``native=True`` copies
  only a multi-byte big-endian image);
- :func:`image_to_color`: ``rgb8`` asked as ``rgb`` and ``bgr8``/``8UC3`` asked as ``bgr``. Every
  other case is converted into a new C-contiguous array (never a strided view, whose copy would cost
  its user dearly): the opposite order, alpha dropped, mono, 16-bit, YUV and Bayer encodings;
- :func:`array_to_image`: ``data`` is a uint8 view of a contiguous input already in the requested
  byte order, else a copy.
"""

from __future__ import annotations

import array
import struct
import zlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panoptic_ros.core.encodings import lookup_encoding, supported_encodings
from panoptic_ros.core.image_codec import (
    MAX_DIMENSION,
    MAX_IMAGE_BYTES,
    compressed_to_array,
    compressed_to_color,
    image_to_array,
    image_to_color,
    raw_to_color,
)
from panoptic_ros.core.image_encode import array_to_compressed, array_to_image
from panoptic_ros.errors import ImageDecodeError, ImageEncodeError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUFFER_KINDS = ("array", "bytes", "numpy")


# --------------------------------------------------------------------------------------------------
# hand-made layouts and buffers (independent of the module under test)


@dataclass(frozen=True)
class Layout:
    """How one encoding stores its samples, as written in ``sensor_msgs/image_encodings``."""

    channels: int  # samples per pixel in the raw view (2 for the yuv422 pair layout)
    char: str  # struct / numpy type character of one sample
    even_width: bool = False
    nv: bool = False  # 4:2:0 semi-planar: 3H/2 rows of `step` bytes, H x W view per plane

    @property
    def itemsize(self) -> int:
        return struct.calcsize(self.char)

    def raw_shape(self, height: int, width: int) -> tuple[int, ...]:
        if self.nv:
            return (height * 3 // 2, width)
        if self.channels == 1:
            return (height, width)
        return (height, width, self.channels)

    def dtype(self, big: bool) -> np.dtype:
        if self.itemsize == 1:
            return np.dtype(self.char)
        return np.dtype(("<", ">")[big] + self.char)


YUV422 = Layout(2, "B", even_width=True)
NV = Layout(1, "B", even_width=True, nv=True)
LAYOUTS: dict[str, Layout] = {
    "rgb8": Layout(3, "B"),
    "bgr8": Layout(3, "B"),
    "rgba8": Layout(4, "B"),
    "bgra8": Layout(4, "B"),
    "mono8": Layout(1, "B"),
    "mono16": Layout(1, "H"),
    "16UC1": Layout(1, "H"),
    "32FC1": Layout(1, "f"),
    "rgb16": Layout(3, "H"),
    "bgr16": Layout(3, "H"),
    "rgba16": Layout(4, "H"),
    "8UC3": Layout(3, "B"),
    "32SC1": Layout(1, "i"),
    "16SC1": Layout(1, "h"),
    "64FC1": Layout(1, "d"),
    "32FC3": Layout(3, "f"),
    "yuv422": YUV422,
    "uyvy": YUV422,
    "yuv422_yuy2": YUV422,
    "yuyv": YUV422,
    "nv12": NV,
    "nv21": NV,
    "bayer_rggb8": Layout(1, "B"),
    "bayer_bggr8": Layout(1, "B"),
    "bayer_gbrg8": Layout(1, "B"),
    "bayer_grbg8": Layout(1, "B"),
    "bayer_rggb16": Layout(1, "H"),
}
COLOR_ENCODINGS = tuple(
    name for name in LAYOUTS if name not in ("16UC1", "32FC1", "32SC1", "16SC1", "64FC1", "32FC3")
)


def random_samples(rng: np.random.Generator, shape: tuple[int, ...], char: str) -> np.ndarray:
    """Random sample values of one struct type, in native byte order (finite floats)."""
    if char in "BHhi":
        info = np.iinfo(np.dtype(char))
        return rng.integers(info.min, info.max, size=shape, dtype=np.dtype(char), endpoint=True)
    return (rng.standard_normal(shape) * 1000.0).astype(np.dtype(char))


def pack_rows(values: np.ndarray, char: str, big: bool, step: int, rng: np.random.Generator) -> bytes:
    """The rows of ``values`` packed by :mod:`struct` in the given byte order, each padded with
    garbage bytes to ``step``."""
    out = bytearray()
    for row in values.reshape(values.shape[0], -1):
        packed = struct.pack(f"{'>' if big else '<'}{row.size}{char}", *row.tolist())
        assert len(packed) <= step
        out += packed
        out += rng.integers(0, 256, size=step - len(packed), dtype=np.uint8).tobytes()
    return bytes(out)


def as_buffer(raw: bytes, kind: str) -> Any:
    """``raw`` as the byte container a message library hands over."""
    if kind == "array":
        return array.array("B", raw)
    if kind == "bytes":
        return bytes(raw)
    if kind == "numpy":
        return np.frombuffer(bytearray(raw), dtype=np.uint8)  # writable, like rosbags' arrays
    raise AssertionError(kind)


def u8(buffer: Any) -> np.ndarray:
    """A uint8 numpy view of a buffer (for ``np.shares_memory``)."""
    return buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, dtype=np.uint8)


def image_msg(
    height: Any, width: Any, encoding: Any, step: Any, data: Any, *, is_bigendian: Any = 0
) -> SimpleNamespace:
    return SimpleNamespace(
        height=height, width=width, encoding=encoding, is_bigendian=is_bigendian, step=step, data=data
    )


@dataclass(frozen=True)
class Case:
    encoding: str
    height: int
    width: int
    padding: int
    big: bool
    kind: str
    seed: int

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.encoding]

    @property
    def row_bytes(self) -> int:
        return self.width * self.layout.channels * self.layout.itemsize

    @property
    def step(self) -> int:
        return self.row_bytes + self.padding

    def build(self) -> tuple[np.ndarray, bytes, SimpleNamespace]:
        """(pixel values, the padded buffer's bytes, the message)."""
        rng = np.random.default_rng(self.seed)
        layout = self.layout
        values = random_samples(rng, layout.raw_shape(self.height, self.width), layout.char)
        raw = pack_rows(values, layout.char, self.big, self.step, rng)
        msg = image_msg(
            self.height,
            self.width,
            self.encoding,
            self.step,
            as_buffer(raw, self.kind),
            is_bigendian=self.big,
        )
        return values, raw, msg


@st.composite
def cases(draw: st.DrawFn, encodings: tuple[str, ...] = tuple(LAYOUTS), max_side: int = 64) -> Case:
    encoding = draw(st.sampled_from(encodings))
    layout = LAYOUTS[encoding]
    height = draw(st.integers(1, max_side // 2)) * 2 if layout.nv else draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side // 2)) * 2 if layout.even_width else draw(st.integers(1, max_side))
    return Case(
        encoding=encoding,
        height=height,
        width=width,
        padding=draw(st.integers(0, 17)),
        big=draw(st.booleans()),  # also for 1-byte types, where it must not matter
        kind=draw(st.sampled_from(BUFFER_KINDS)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


# --------------------------------------------------------------------------------------------------
# 1. raw round trips


def test_every_tested_encoding_is_supported() -> None:
    for name, layout in LAYOUTS.items():
        encoding = lookup_encoding(name)
        assert encoding.channels == layout.channels, name
        assert encoding.dtype.itemsize == layout.itemsize, name
    assert "rgb8" in supported_encodings()
    assert "yuv422" in supported_encodings()


@SETTINGS
@given(case=cases())
def test_image_to_array_reads_hand_packed_buffer_as_zero_copy_view(case: Case) -> None:
    values, raw, msg = case.build()
    out = image_to_array(msg)

    assert out.shape == case.layout.raw_shape(case.height, case.width)
    assert out.dtype == case.layout.dtype(case.big)  # the declared byte order is kept
    assert np.array_equal(out, values)
    assert np.shares_memory(out, u8(msg.data)), "image_to_array copied the data"
    assert raw == bytes(u8(msg.data))  # reading never writes

    if case.kind != "bytes":  # a writable buffer: a change shows through the view
        before = out.copy()
        u8(msg.data)[0] ^= 0xFF
        assert not np.array_equal(out, before)
        u8(msg.data)[0] ^= 0xFF

    native = image_to_array(msg, native=True)
    assert native.dtype.isnative
    assert np.array_equal(native, values)
    copied = case.big and case.layout.itemsize > 1
    assert np.shares_memory(native, u8(msg.data)) is not copied


@SETTINGS
@given(case=cases())
def test_array_to_image_then_image_to_array_is_identity(case: Case) -> None:
    values, _, _ = case.build()
    fields = array_to_image(values, case.encoding, is_bigendian=case.big)

    assert fields.encoding == case.encoding
    assert (fields.height, fields.width) == (case.height, case.width)
    assert fields.step == case.row_bytes
    assert fields.is_bigendian == int(case.big and case.layout.itemsize > 1)
    assert fields.data.dtype == np.uint8
    assert fields.data.ndim == 1
    # the bytes are exactly the hand-packed rows without padding
    rng = np.random.default_rng(0)
    assert fields.data.tobytes() == pack_rows(values, case.layout.char, case.big, fields.step, rng)
    # data is a view of the input unless the byte order had to change
    swapped = case.big and case.layout.itemsize > 1
    assert np.shares_memory(fields.data, values) is not swapped

    msg = image_msg(
        fields.height,
        fields.width,
        fields.encoding,
        fields.step,
        as_buffer(fields.data.tobytes(), case.kind),
        is_bigendian=fields.is_bigendian,
    )
    back = image_to_array(msg)
    assert back.shape == values.shape
    assert np.array_equal(back, values)
    # the fields themselves (numpy data, as the node fills them) read back too
    assert np.array_equal(image_to_array(fields), values)


def test_array_to_image_accepts_big_endian_input_without_copy() -> None:
    values = (np.arange(12) * 1000).astype(">u2").reshape(3, 4)
    assert values.dtype.byteorder == ">"
    fields = array_to_image(values, "16UC1", is_bigendian=True)
    assert fields.is_bigendian == 1
    assert np.shares_memory(fields.data, values)
    assert fields.data[:2].tobytes() == struct.pack(">H", 0)
    assert fields.data[2:4].tobytes() == struct.pack(">H", 1000)
    # a big-endian input written little-endian is converted (one copy), values kept
    little = array_to_image(values, "16UC1")
    assert little.is_bigendian == 0
    assert not np.shares_memory(little.data, values)
    assert little.data[2:4].tobytes() == struct.pack("<H", 1000)
    assert np.array_equal(image_to_array(little), values)


def test_array_to_image_copies_non_contiguous_input() -> None:
    base = np.arange(4 * 10 * 3, dtype=np.uint8).reshape(4, 10, 3)
    strided = base[:, ::2]
    fields = array_to_image(strided, "rgb8")
    assert fields.step == 5 * 3
    assert not np.shares_memory(fields.data, base)
    assert np.array_equal(image_to_array(fields), strided)


def test_image_to_array_accepts_non_contiguous_numpy_data() -> None:
    # e.g. a byte array sliced out of a larger one with a stride
    raw = np.arange(2 * 2 * 6, dtype=np.uint8)
    spread = np.zeros(raw.size * 2, dtype=np.uint8)
    spread[::2] = raw
    out = image_to_array(image_msg(2, 4, "rgb8", 12, spread[::2]))
    assert np.array_equal(out, raw.reshape(2, 4, 3))


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "list"])
def test_image_to_array_accepts_other_byte_containers(kind: str) -> None:
    raw = bytes(range(24))
    data: Any = {"bytearray": bytearray(raw), "memoryview": memoryview(raw), "list": list(raw)}[kind]
    out = image_to_array(image_msg(2, 4, "rgb8", 12, data))
    assert np.array_equal(out, np.arange(24, dtype=np.uint8).reshape(2, 4, 3))


def test_numpy_integer_fields_are_accepted() -> None:
    out = image_to_array(
        image_msg(np.uint32(2), np.uint32(3), "mono8", np.uint32(4), bytes(8), is_bigendian=np.uint8(0))
    )
    assert out.shape == (2, 3)


# --------------------------------------------------------------------------------------------------
# 2. image_to_color

PLANES_SHAPE = (5, 7)


def _planes(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 256, PLANES_SHAPE, dtype=np.uint8) for c in "rgba"}


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize(
    ("encoding", "stored"),
    [
        ("rgb8", "rgb"),
        ("bgr8", "bgr"),
        ("rgba8", "rgba"),
        ("bgra8", "bgra"),
        ("8UC3", "bgr"),
        ("8UC4", "bgra"),
    ],
)
def test_image_to_color_8bit_color(encoding: str, stored: str, order: str, kind: str) -> None:
    planes = _planes(1)
    h, w = PLANES_SHAPE
    pixels = np.stack([planes[c] for c in stored], axis=-1)
    step = w * len(stored) + 3
    raw = pack_rows(pixels, "B", False, step, np.random.default_rng(2))
    msg = image_msg(h, w, encoding, step, as_buffer(raw, kind))

    out = image_to_color(msg, order)  # type: ignore[arg-type]

    assert out.shape == (h, w, 3)
    assert out.dtype == np.uint8
    assert np.array_equal(out, np.stack([planes[c] for c in order], axis=-1))
    if stored == order:
        assert np.shares_memory(out, u8(msg.data)), f"{encoding} as {order} should be a view"
    else:
        assert out.flags.c_contiguous, f"{encoding} as {order} should be converted, not a strided view"


def test_image_to_color_default_order_is_rgb() -> None:
    planes = _planes(3)
    pixels = np.stack([planes["b"], planes["g"], planes["r"]], axis=-1)
    msg = image_msg(5, 7, "bgr8", 21, pixels.tobytes())
    assert np.array_equal(image_to_color(msg), np.stack([planes["r"], planes["g"], planes["b"]], axis=-1))


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize(("encoding", "stored"), [("rgb16", "rgb"), ("bgr16", "bgr"), ("rgba16", "rgba")])
def test_image_to_color_16bit_color_gives_high_byte(encoding: str, stored: str, big: bool) -> None:
    rng = np.random.default_rng(4)
    planes = {c: rng.integers(0, 65536, PLANES_SHAPE, dtype=np.uint16) for c in "rgba"}
    pixels = np.stack([planes[c] for c in stored], axis=-1)
    h, w = PLANES_SHAPE
    step = w * len(stored) * 2 + 5
    msg = image_msg(h, w, encoding, step, pack_rows(pixels, "H", big, step, rng), is_bigendian=int(big))
    for order in ("rgb", "bgr"):
        expected = np.stack([(planes[c] >> 8).astype(np.uint8) for c in order], axis=-1)
        assert np.array_equal(image_to_color(msg, order), expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_image_to_color_mono8_gives_three_equal_channels(encoding: str, kind: str) -> None:
    gray = np.random.default_rng(5).integers(0, 256, (6, 9), dtype=np.uint8)
    msg = image_msg(
        6, 9, encoding, 11, as_buffer(pack_rows(gray, "B", False, 11, np.random.default_rng(6)), kind)
    )
    out = image_to_color(msg, "bgr")
    assert out.shape == (6, 9, 3)
    for channel in range(3):
        assert np.array_equal(out[..., channel], gray)


@pytest.mark.parametrize("big", [False, True])
def test_image_to_color_mono16_gives_high_byte(big: bool) -> None:
    gray = np.random.default_rng(7).integers(0, 65536, (6, 9), dtype=np.uint16)
    gray[0, 0] = 0x12FF  # high byte 0x12, not a rounding of the value
    msg = image_msg(
        6, 9, "mono16", 21, pack_rows(gray, "H", big, 21, np.random.default_rng(8)), is_bigendian=int(big)
    )
    out = image_to_color(msg)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [0x12] * 3
    for channel in range(3):
        assert np.array_equal(out[..., channel], (gray >> 8).astype(np.uint8))


# ---- YUV: BT.601 "video range" (Y 16..235, Cb/Cr 16..240), the convention of sensor_msgs YUV cameras
# and of OpenCV's YUV2RGB_{UYVY,YUY2,NV12,NV21}.

#: Largest per-channel error accepted after subsampling, quantization and conversion back.
YUV_TOLERANCE_SMOOTH = 4
YUV_TOLERANCE_FLAT = 3


def rgb_to_ycbcr601(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float Y, Cb, Cr planes (BT.601, video range) of an RGB uint8 image."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    return y, cb, cr


def _q(plane: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(plane), 0, 255).astype(np.uint8)


def pack_yuv422(rgb: np.ndarray, layout: str) -> np.ndarray:
    """``H x 2W`` bytes: ``U Y0 V Y1`` (uyvy) or ``Y0 U Y1 V`` (yuyv) per horizontal pixel pair."""
    y, cb, cr = rgb_to_ycbcr601(rgb)
    u = _q((cb[:, 0::2] + cb[:, 1::2]) / 2)
    v = _q((cr[:, 0::2] + cr[:, 1::2]) / 2)
    y0, y1 = _q(y[:, 0::2]), _q(y[:, 1::2])
    quads = [u, y0, v, y1] if layout == "uyvy" else [y0, u, y1, v]
    return np.stack(quads, axis=-1).reshape(rgb.shape[0], rgb.shape[1] * 2)


def pack_nv(rgb: np.ndarray, chroma: str) -> np.ndarray:
    """``(3H/2) x W`` bytes: the Y plane, then 2 x 2-averaged chroma interleaved ``U V`` (nv12) or
    ``V U`` (nv21)."""
    y, cb, cr = rgb_to_ycbcr601(rgb)

    def block_mean(plane: np.ndarray) -> np.ndarray:
        return _q((plane[0::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 0::2] + plane[1::2, 1::2]) / 4)

    u, v = block_mean(cb), block_mean(cr)
    first, second = (u, v) if chroma == "uv" else (v, u)
    interleaved = np.stack([first, second], axis=-1).reshape(rgb.shape[0] // 2, rgb.shape[1])
    return np.concatenate([_q(y), interleaved], axis=0)


def smooth_rgb(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([40 + 2 * xx + yy, 200 - xx - 2 * yy, 60 + xx + yy], axis=-1).astype(np.uint8)


YUV_ENCODINGS = {
    "yuv422": ("422", "uyvy"),
    "uyvy": ("422", "uyvy"),
    "yuv422_yuy2": ("422", "yuyv"),
    "yuyv": ("422", "yuyv"),
    "nv12": ("nv", "uv"),
    "nv21": ("nv", "vu"),
}


def yuv_msg(rgb: np.ndarray, encoding: str, padding: int, kind: str) -> SimpleNamespace:
    family, layout = YUV_ENCODINGS[encoding]
    packed = pack_yuv422(rgb, layout) if family == "422" else pack_nv(rgb, layout)
    step = packed.shape[1] + padding
    raw = pack_rows(packed, "B", False, step, np.random.default_rng(padding))
    return image_msg(rgb.shape[0], rgb.shape[1], encoding, step, as_buffer(raw, kind))


def max_error(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("encoding", list(YUV_ENCODINGS))
def test_image_to_color_yuv_smooth_image(encoding: str, kind: str) -> None:
    rgb = smooth_rgb(24, 32)
    msg = yuv_msg(rgb, encoding, padding=6, kind=kind)
    out = image_to_color(msg, "rgb")
    assert out.shape == rgb.shape
    assert out.dtype == np.uint8
    assert max_error(out, rgb) <= YUV_TOLERANCE_SMOOTH
    assert np.array_equal(image_to_color(msg, "bgr"), out[..., ::-1])


@SETTINGS
@given(
    encoding=st.sampled_from(list(YUV_ENCODINGS)),
    color=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    half_height=st.integers(1, 8),
    half_width=st.integers(1, 8),
    padding=st.integers(0, 17),
)
def test_image_to_color_yuv_flat_colors(
    encoding: str, color: tuple[int, int, int], half_height: int, half_width: int, padding: int
) -> None:
    # Swapped U and V (or a wrong byte pattern) turns red into blue: far outside the tolerance.
    rgb = np.empty((half_height * 2, half_width * 2, 3), dtype=np.uint8)
    rgb[...] = color
    out = image_to_color(yuv_msg(rgb, encoding, padding, "bytes"))
    assert max_error(out, rgb) <= YUV_TOLERANCE_FLAT, (out[0, 0], color)


def test_yuv_reference_agrees_with_opencv_i420() -> None:
    # The hand-made reference is the same BT.601 conversion OpenCV uses to make I420.
    rgb = smooth_rgb(8, 8)
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    y, _, _ = rgb_to_ycbcr601(rgb)
    assert max_error(i420[:8], _q(y)) <= 1
    nv12 = pack_nv(rgb, "uv")
    u_planar = i420[8:10].reshape(4, 4)
    assert max_error(nv12[8:, 0::2], u_planar) <= 1


# ---- Bayer


def bayer_mosaic(
    rgb_color: tuple[int, int, int], pattern: str, height: int, width: int, dtype: str
) -> np.ndarray:
    """A mosaic of one flat color: ``pattern[0]`` at (0, 0), ``[1]`` at (0, 1), ``[2]`` at (1, 0),
    ``[3]`` at (1, 1), repeated."""
    value = dict(zip("rgb", rgb_color, strict=True))
    mosaic = np.empty((height, width), dtype=dtype)
    for index, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        mosaic[dy::2, dx::2] = value[pattern[index]]
    return mosaic


BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
@pytest.mark.parametrize(
    "color", [(200, 90, 30), (250, 0, 0), (0, 0, 250), (0, 240, 0)], ids=["orange", "red", "blue", "green"]
)
def test_image_to_color_bayer8_flat_color(color: tuple[int, int, int], pattern: str, kind: str) -> None:
    h, w = 10, 12
    mosaic = bayer_mosaic(color, pattern, h, w, "uint8")
    step = w + 5
    msg = image_msg(
        h,
        w,
        f"bayer_{pattern}8",
        step,
        as_buffer(pack_rows(mosaic, "B", False, step, np.random.default_rng(9)), kind),
    )
    rgb = image_to_color(msg, "rgb")
    assert rgb.shape == (h, w, 3)
    interior = rgb[2:-2, 2:-2].reshape(-1, 3)
    assert (interior == color).all(), f"{pattern}: {interior[0].tolist()} != {color}"
    bgr = image_to_color(msg, "bgr")
    assert (bgr[2:-2, 2:-2].reshape(-1, 3) == color[::-1]).all()


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_image_to_color_bayer16_flat_color(pattern: str, big: bool) -> None:
    color = (200, 90, 30)
    color16 = tuple(c * 256 + 0x7F for c in color)  # the high byte is the 8-bit color
    h, w = 8, 10
    mosaic = bayer_mosaic(color16, pattern, h, w, "uint16")  # type: ignore[arg-type]
    step = w * 2 + 3  # odd padding: unaligned 16-bit rows
    msg = image_msg(
        h,
        w,
        f"bayer_{pattern}16",
        step,
        pack_rows(mosaic, "H", big, step, np.random.default_rng(10)),
        is_bigendian=int(big),
    )
    rgb = image_to_color(msg)
    assert (rgb[2:-2, 2:-2].reshape(-1, 3) == color).all()


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "32SC1", "16SC1", "8UC2", "64FC1", "32FC3"])
def test_image_to_color_rejects_measurements(encoding: str) -> None:
    layout = LAYOUTS.get(encoding, Layout(2, "B"))
    step = 4 * layout.channels * layout.itemsize
    msg = image_msg(3, 4, encoding, step, bytes(step * 3))
    image_to_array(msg)  # a valid image...
    with pytest.raises(ImageDecodeError, match="not a color picture") as info:
        image_to_color(msg)  # ...but not a picture
    assert repr(encoding) in str(info.value)


@SETTINGS
@given(case=cases(COLOR_ENCODINGS, max_side=16))
def test_image_to_color_never_fails_on_valid_images(case: Case) -> None:
    # Includes 1-pixel-wide/high Bayer images and odd-step 16-bit images.
    _, _, msg = case.build()
    for order in ("rgb", "bgr"):
        out = image_to_color(msg, order)  # type: ignore[arg-type]
        assert out.shape == (case.height, case.width, 3)
        assert out.dtype == np.uint8


def test_raw_to_color_takes_views_from_image_to_array() -> None:
    pixels = np.random.default_rng(11).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    msg = image_msg(4, 6, "bgr8", 18, pixels[..., :3].tobytes())
    out = raw_to_color(image_to_array(msg), lookup_encoding("bgr8"), "bgr")
    assert np.array_equal(out, pixels[..., :3])
    assert np.shares_memory(out, u8(msg.data))
    msg = image_msg(4, 6, "bgra8", 24, pixels.tobytes())
    out = raw_to_color(image_to_array(msg), lookup_encoding("bgra8"), "bgr")
    assert np.array_equal(out, pixels[..., :3])
    assert out.flags.c_contiguous and not np.shares_memory(out, u8(msg.data))


@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("encoding", ["mono8", "mono16", "rgb16", "bgra16", "uyvy", "nv21", "bayer_gbrg8"])
def test_converted_colors_are_contiguous(encoding: str, order: str) -> None:
    enc = lookup_encoding(encoding)
    rows = 6 if enc.kind == "nv" else 4
    step = 8 * (2 if enc.kind == "yuv422" else enc.channels) * enc.dtype.itemsize
    data = np.random.default_rng(12).integers(0, 256, rows * step, dtype=np.uint8).tobytes()
    out = image_to_color(image_msg(4, 8, encoding, step, data), order)  # type: ignore[arg-type]
    assert out.shape == (4, 8, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous


# --------------------------------------------------------------------------------------------------
# 3. malformed raw images


def _valid_fields() -> dict[str, Any]:
    # 4 x 6 rgb8 with 2 bytes of padding per row: step 20, 80 bytes
    return {"height": 4, "width": 6, "encoding": "rgb8", "is_bigendian": 0, "step": 20, "data": bytes(80)}


MALFORMED: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown encoding", {"encoding": "rgb9"}, ["encoding='rgb9'", "not supported"]),
    ("empty encoding", {"encoding": ""}, ["encoding=''", "not supported"]),
    ("encoding with trailing newline", {"encoding": "16UC1\n"}, ["encoding='16UC1\\n'", "not supported"]),
    ("generic with 5 channels", {"encoding": "8UC5"}, ["encoding='8UC5'"]),
    ("step smaller than a row", {"step": 17}, ["step=17", "width=6", "3 bytes", "= 18"]),
    ("negative step", {"step": -20}, ["step=-20", "= 18"]),
    ("data shorter than step*height", {"data": bytes(79)}, ["79 bytes", "step * height", "20 * 4", "80"]),
    ("no data", {"data": b""}, ["0 bytes", "80"]),
    ("zero height", {"height": 0}, ["height=0", f"1..{MAX_DIMENSION}"]),
    ("zero width", {"width": 0}, ["width=0", f"1..{MAX_DIMENSION}"]),
    ("negative height", {"height": -4}, ["height=-4"]),
    (
        "absurd width",
        {"width": MAX_DIMENSION + 1, "step": 3 * (MAX_DIMENSION + 1)},
        [f"width={MAX_DIMENSION + 1}"],
    ),
    ("absurd height", {"height": 10**9}, ["height=1000000000"]),
    (
        "too many bytes",
        {"step": MAX_IMAGE_BYTES, "height": 2},
        [f"step * height = {MAX_IMAGE_BYTES} * 2", "exceeds"],
    ),
    (
        "odd width yuv422",
        {"encoding": "yuv422", "width": 5, "step": 10, "data": bytes(40)},
        ["width=5", "even"],
    ),
    ("odd width yuyv", {"encoding": "yuyv", "width": 3, "step": 6, "data": bytes(40)}, ["width=3", "even"]),
    ("odd width nv12", {"encoding": "nv12", "width": 5, "step": 6, "data": bytes(100)}, ["width=5", "even"]),
    (
        "odd height nv12",
        {"encoding": "nv12", "height": 3, "width": 4, "step": 4, "data": bytes(100)},
        ["height=3", "even"],
    ),
    (
        "nv12 data shorter than 3/2 rows",
        {"encoding": "nv12", "height": 4, "width": 4, "step": 4, "data": bytes(23)},
        ["23 bytes", "step * height * 3 / 2", "4 * 4 * 3 / 2 = 24"],
    ),
    ("float height", {"height": 4.0}, ["height=4.0", "not an integer"]),
    ("fractional width", {"width": 6.5}, ["width=6.5", "not an integer"]),
    ("string height", {"height": "4"}, ["height='4'", "not an integer"]),
    ("bool width", {"width": True}, ["width=True", "not an integer"]),
    ("None step", {"step": None}, ["step=None", "not an integer"]),
    ("float32 data", {"data": np.zeros(80, dtype=np.float32)}, ["data", "float32"]),
    ("string data", {"data": "x" * 80}, ["data", "str"]),
    ("None data", {"data": None}, ["data", "NoneType"]),
    ("data of too large values", {"data": [300] * 80}, ["data", "list"]),
]


@pytest.mark.parametrize("function", [image_to_array, image_to_color], ids=["array", "color"])
@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_image_raises_decode_error_naming_field(
    changes: dict[str, Any], expected: list[str], function: Any
) -> None:
    msg = SimpleNamespace(**{**_valid_fields(), **changes})
    with pytest.raises(ImageDecodeError) as info:
        function(msg)
    for text in expected:
        assert text in str(info.value), f"{text!r} not in {str(info.value)!r}"


def test_valid_fields_are_valid() -> None:
    # the base of the malformed cases decodes, so each case fails for its own change
    assert image_to_array(SimpleNamespace(**_valid_fields())).shape == (4, 6, 3)


@pytest.mark.parametrize("function", [image_to_array, image_to_color], ids=["array", "color"])
@pytest.mark.parametrize("missing", ["height", "width", "encoding", "is_bigendian", "step", "data"])
def test_missing_field_raises_decode_error(missing: str, function: Any) -> None:
    fields = _valid_fields()
    del fields[missing]
    with pytest.raises(ImageDecodeError, match=f"no field '{missing}'"):
        function(SimpleNamespace(**fields))


def test_unknown_encoding_message_lists_supported() -> None:
    with pytest.raises(ImageDecodeError) as info:
        lookup_encoding("h264")
    assert "encoding='h264'" in str(info.value)
    assert "rgb8" in str(info.value)
    assert isinstance(info.value, ValueError)  # generic handlers keep working


@SETTINGS
@given(case=cases(max_side=24), data=st.data())
def test_any_truncation_raises_decode_error(case: Case, data: st.DataObject) -> None:
    _, raw, msg = case.build()
    image_to_array(msg)  # the whole buffer is fine
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    msg.data = as_buffer(raw[:cut], case.kind)
    with pytest.raises(ImageDecodeError, match=f"data has {cut} bytes"):
        image_to_array(msg)
    with pytest.raises(ImageDecodeError, match=f"data has {cut} bytes"):
        image_to_color(msg)


_ANY_VALUE = st.one_of(
    st.integers(-(2**40), 2**40),
    st.integers(-3, 70),
    st.floats(allow_nan=True),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)


@SETTINGS
@given(
    height=_ANY_VALUE,
    width=_ANY_VALUE,
    step=st.one_of(_ANY_VALUE, st.integers(0, 300)),
    encoding=st.one_of(st.sampled_from(sorted(LAYOUTS)), st.text(max_size=8)),
    big=st.one_of(st.booleans(), st.integers(0, 1)),
    size=st.integers(0, 3000),
)
def test_random_headers_decode_or_raise_decode_error(
    *, height: Any, width: Any, step: Any, encoding: str, big: Any, size: int
) -> None:
    msg = image_msg(height, width, encoding, step, bytes(size), is_bigendian=big)
    for function in (image_to_array, image_to_color):
        try:
            out = function(msg)
        except ImageDecodeError:
            continue
        assert out.shape[:2][1] == width


# --------------------------------------------------------------------------------------------------
# 4. compressed images

#: Largest per-channel error accepted for JPEG at quality 95 on a smooth image.
JPEG_TOLERANCE = 10


def compressed_msg(fmt: str, payload: bytes | np.ndarray, kind: str = "bytes") -> SimpleNamespace:
    raw = payload.tobytes() if isinstance(payload, np.ndarray) else payload
    return SimpleNamespace(format=fmt, data=as_buffer(raw, kind))


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_png_color_round_trip_is_exact(order: str, kind: str) -> None:
    image = np.random.default_rng(12).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    fields = array_to_compressed(image, codec="png", order=order)  # type: ignore[arg-type]
    assert fields.format == "bgr8; png compressed bgr8"
    assert fields.data.dtype == np.uint8
    assert fields.data[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
    msg = compressed_msg(fields.format, fields.data, kind)
    assert np.array_equal(compressed_to_color(msg, order), image)  # type: ignore[arg-type]
    other = "bgr" if order == "rgb" else "rgb"
    assert np.array_equal(compressed_to_color(msg, other), image[..., ::-1])  # type: ignore[arg-type]
    decoded = compressed_to_array(msg)
    assert decoded.encoding == "bgr8"
    as_bgr = image if order == "bgr" else image[..., ::-1]
    assert np.array_equal(decoded.array, as_bgr)


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_jpeg_color_round_trip_is_close(order: str, kind: str) -> None:
    image = smooth_rgb(32, 48)
    image[..., 0] = 220  # a strong, flat channel: swapped R/B would be far off
    fields = array_to_compressed(image, codec="jpeg", quality=95, order=order)  # type: ignore[arg-type]
    assert fields.format == "bgr8; jpeg compressed bgr8"
    assert fields.data[:3].tobytes() == b"\xff\xd8\xff"
    msg = compressed_msg(fields.format, fields.data, kind)
    out = compressed_to_color(msg, order)  # type: ignore[arg-type]
    assert out.shape == image.shape
    assert max_error(out, image) <= JPEG_TOLERANCE
    assert compressed_to_array(msg).encoding == "bgr8"


def test_jpeg_quality_changes_size() -> None:
    image = np.random.default_rng(13).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    small = array_to_compressed(image, codec="jpeg", quality=10)
    large = array_to_compressed(image, codec="jpeg", quality=100)
    assert small.data.size < large.data.size


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_gray_round_trip(codec: str) -> None:
    yy, xx = np.mgrid[0:20, 0:30]
    gray = (50 + 3 * xx + 2 * yy).astype(np.uint8)
    fields = array_to_compressed(gray, codec=codec)  # type: ignore[arg-type]
    assert fields.format == f"mono8; {codec} compressed mono8"
    decoded = compressed_to_array(compressed_msg(fields.format, fields.data))
    assert decoded.encoding == "mono8"
    assert decoded.array.shape == gray.shape
    if codec == "png":
        assert np.array_equal(decoded.array, gray)
    else:
        assert max_error(decoded.array, gray) <= JPEG_TOLERANCE
    color = compressed_to_color(compressed_msg(fields.format, fields.data))
    assert color.shape == (20, 30, 3)
    assert np.array_equal(color[..., 0], decoded.array)
    assert np.array_equal(color[..., 2], decoded.array)


def test_16bit_png_round_trip() -> None:
    gray = np.random.default_rng(14).integers(0, 65536, (9, 11), dtype=np.uint16)
    fields = array_to_compressed(gray, codec="png")
    assert fields.format == "mono16; png compressed mono16"
    decoded = compressed_to_array(compressed_msg(fields.format, fields.data, "array"))
    assert decoded.encoding == "mono16"
    assert decoded.array.dtype == np.uint16
    assert np.array_equal(decoded.array, gray)
    color = compressed_to_color(compressed_msg(fields.format, fields.data))
    assert np.array_equal(color[..., 1], (gray >> 8).astype(np.uint8))
    # the same payload announced as 16UC1 keeps that encoding, which is not a picture
    as_depth = compressed_msg("16UC1; png compressed 16UC1", fields.data)
    assert compressed_to_array(as_depth).encoding == "16UC1"
    with pytest.raises(ImageDecodeError, match="not a color picture"):
        compressed_to_color(as_depth)


def test_16bit_color_and_alpha_png() -> None:
    rng = np.random.default_rng(15)
    bgr16 = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    decoded = compressed_to_array(compressed_msg("png", png_bytes(bgr16)))
    assert decoded.encoding == "bgr16"
    assert np.array_equal(decoded.array, bgr16)
    assert np.array_equal(
        compressed_to_color(compressed_msg("png", png_bytes(bgr16)), "bgr"), (bgr16 >> 8).astype(np.uint8)
    )

    bgra = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    decoded = compressed_to_array(compressed_msg("png", png_bytes(bgra)))
    assert decoded.encoding == "bgra8"
    assert np.array_equal(decoded.array, bgra)
    assert np.array_equal(compressed_to_color(compressed_msg("png", png_bytes(bgra))), bgra[..., 2::-1])


FORMATS = [
    "jpeg",
    "png",
    "bgr8; jpeg compressed bgr8",
    "rgb8; jpeg compressed bgr8",
    "bgr8; png compressed bgr8",
    "",
    "something else entirely",
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_string_does_not_decide_codec(fmt: str) -> None:
    image = np.random.default_rng(16).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    png = array_to_compressed(image, codec="png", order="rgb").data
    assert np.array_equal(compressed_to_color(compressed_msg(fmt, png)), image)

    smooth = smooth_rgb(16, 16)
    jpeg = array_to_compressed(smooth, codec="jpeg", quality=95, order="rgb").data
    assert max_error(compressed_to_color(compressed_msg(fmt, jpeg)), smooth) <= JPEG_TOLERANCE


def test_format_sniffing_beats_a_wrong_format() -> None:
    image = np.random.default_rng(17).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    png = array_to_compressed(image, codec="png").data
    assert np.array_equal(compressed_to_array(compressed_msg("bgr8; jpeg compressed bgr8", png)).array, image)
    jpeg = array_to_compressed(smooth_rgb(8, 8), codec="jpeg", quality=95).data
    assert compressed_to_array(compressed_msg("png", jpeg)).array.shape == (8, 8, 3)


# ---- compressedDepth (compressed_depth_image_transport): 12-byte header + 16-bit PNG


def depth_payload(quant_a: float, quant_b: float, png: bytes) -> bytes:
    return struct.pack("<iff", 0, quant_a, quant_b) + png


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "16UC1; compressedDepth", "compressedDepth"])
def test_compressed_depth_16uc1_is_exact(fmt: str, kind: str) -> None:
    depth = np.random.default_rng(18).integers(0, 65536, (12, 14), dtype=np.uint16)
    depth[0, :3] = 0
    decoded = compressed_to_array(compressed_msg(fmt, depth_payload(0.0, 0.0, png_bytes(depth)), kind))
    assert decoded.encoding == "16UC1"
    assert decoded.array.dtype == np.uint16
    assert np.array_equal(decoded.array, depth)


@pytest.mark.parametrize("kind", BUFFER_KINDS)
def test_compressed_depth_32fc1_dequantizes(kind: str) -> None:
    quant_a, quant_b = 3500.25, 12.5
    inverse = np.random.default_rng(19).integers(0, 65536, (10, 13), dtype=np.uint16)
    inverse[0, 0] = 0
    inverse[1, 2] = 0
    inverse[2, 3] = 13  # just above quant_b
    msg = compressed_msg(
        "32FC1; compressedDepth png", depth_payload(quant_a, quant_b, png_bytes(inverse)), kind
    )
    decoded = compressed_to_array(msg)
    assert decoded.encoding == "32FC1"
    assert decoded.array.dtype == np.float32
    assert decoded.array.shape == inverse.shape
    unknown = inverse == 0
    assert np.array_equal(np.isnan(decoded.array), unknown)
    expected = quant_a / (inverse[~unknown].astype(np.float64) - quant_b)
    np.testing.assert_allclose(decoded.array[~unknown], expected, rtol=1e-5)
    assert decoded.array[2, 3] == pytest.approx(quant_a / 0.5, rel=1e-6)
    with pytest.raises(ImageDecodeError, match="not a color picture"):
        compressed_to_color(msg)


@pytest.mark.parametrize("size", [1, 5, 11, 12])
def test_compressed_depth_shorter_than_header(size: int) -> None:
    payload = depth_payload(1.0, 0.0, b"")[:size]
    with pytest.raises(ImageDecodeError) as info:
        compressed_to_array(compressed_msg("16UC1; compressedDepth png", payload))
    assert f"{size} bytes" in str(info.value)
    assert "12 bytes" in str(info.value)


def test_compressed_depth_rejects_8bit_and_unknown_encodings() -> None:
    gray8 = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ImageDecodeError, match="expected 16-bit gray"):
        compressed_to_array(
            compressed_msg("16UC1; compressedDepth png", depth_payload(0, 0, png_bytes(gray8)))
        )
    depth = np.ones((4, 4), dtype=np.uint16)
    with pytest.raises(ImageDecodeError, match="'rgb8'"):
        compressed_to_array(
            compressed_msg("rgb8; compressedDepth png", depth_payload(0, 0, png_bytes(depth)))
        )
    # the header is not part of the image: without it the PNG magic is not at the start
    with pytest.raises(ImageDecodeError, match="neither JPEG nor PNG"):
        compressed_to_array(compressed_msg("16UC1; compressedDepth png", b"\0" * 12 + b"not a png at all"))


# ---- corrupt compressed inputs


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("fmt", ["jpeg", "png", "16UC1; compressedDepth png"])
def test_empty_compressed_data(fmt: str, kind: str) -> None:
    with pytest.raises(ImageDecodeError, match="data is empty") as info:
        compressed_to_array(compressed_msg(fmt, b"", kind))
    assert repr(fmt) in str(info.value)
    with pytest.raises(ImageDecodeError):
        compressed_to_color(compressed_msg(fmt, b"", kind))


@SETTINGS
@given(
    prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"]),
    body=st.binary(max_size=300),
    fmt=st.sampled_from(["jpeg", "png", "16UC1; compressedDepth png", "32FC1; compressedDepth png"]),
)
def test_random_bytes_raise_decode_error(prefix: bytes, body: bytes, fmt: str) -> None:
    payload = prefix + body
    if "Depth" in fmt:
        payload = struct.pack("<iff", 0, 1.0, 0.0) + payload
    if not payload:
        payload = b"\0"
    with pytest.raises(ImageDecodeError):
        compressed_to_array(compressed_msg(fmt, payload))
    with pytest.raises(ImageDecodeError):
        compressed_to_color(compressed_msg(fmt, payload))


_SOURCE = smooth_rgb(24, 32)
_JPEG = array_to_compressed(_SOURCE, codec="jpeg").data.tobytes()
_PNG = array_to_compressed(_SOURCE, codec="png").data.tobytes()


@SETTINGS
@given(codec=st.sampled_from(["jpeg", "png"]), data=st.data())
def test_truncated_jpeg_or_png_raises_decode_error(codec: str, data: st.DataObject) -> None:
    payload = _JPEG if codec == "jpeg" else _PNG
    cut = data.draw(st.integers(1, len(payload) - 1), label="cut")
    with pytest.raises(ImageDecodeError, match=codec.upper()):
        compressed_to_array(compressed_msg(codec, payload[:cut]))


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_truncated_halves(codec: str) -> None:
    payload = _JPEG if codec == "jpeg" else _PNG
    for cut in (len(payload) // 2, len(payload) - 1):
        with pytest.raises(ImageDecodeError, match=f"{cut} bytes"):
            compressed_to_color(compressed_msg(codec, payload[:cut]))


@SETTINGS
@given(
    codec=st.sampled_from(["jpeg", "png"]),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_corrupted_payload_decodes_or_raises_decode_error(codec: str, flips: list[tuple[int, int]]) -> None:
    payload = bytearray(_JPEG if codec == "jpeg" else _PNG)
    # keep the headers (sizes) intact, so nothing asks for huge buffers: flip bytes in the pixel data
    header = 33 if codec == "png" else _JPEG.index(b"\xff\xda") + 14
    for position, xor in flips:
        payload[header + position % (len(payload) - header)] ^= xor
    try:
        out = compressed_to_color(compressed_msg(codec, bytes(payload)))
    except ImageDecodeError:
        return
    assert out.shape == _SOURCE.shape


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_with_absurd_size_raises_decode_error() -> None:
    # OpenCV refuses the header with a cv2.error; it must come out as ImageDecodeError
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
    png += _png_chunk(b"IEND", b"")
    with pytest.raises(ImageDecodeError, match="PNG"):
        compressed_to_array(compressed_msg("png", png))


def test_compressed_bad_fields() -> None:
    with pytest.raises(ImageDecodeError, match="no field 'format'"):
        compressed_to_array(SimpleNamespace(data=_PNG))
    with pytest.raises(ImageDecodeError, match="no field 'data'"):
        compressed_to_array(SimpleNamespace(format="png"))
    with pytest.raises(ImageDecodeError, match="float32"):
        compressed_to_array(SimpleNamespace(format="png", data=np.zeros(10, dtype=np.float32)))


def test_array_to_compressed_errors() -> None:
    with pytest.raises(ImageEncodeError, match="float32"):
        array_to_compressed(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageEncodeError, match=r"\(4, 4, 4\)"):
        array_to_compressed(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ImageEncodeError, match=r"\(4, 4, 3, 1\)"):
        array_to_compressed(np.zeros((4, 4, 3, 1), dtype=np.uint8))
    with pytest.raises(ImageEncodeError, match="JPEG"):
        array_to_compressed(np.zeros((4, 4), dtype=np.uint16), codec="jpeg")
    with pytest.raises(ImageEncodeError, match="codec='bmp'"):
        array_to_compressed(np.zeros((4, 4, 3), dtype=np.uint8), codec="bmp")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# 5. array_to_image


@pytest.mark.parametrize(
    ("shape", "dtype", "encoding", "expected"),
    [
        ((4, 6, 3), np.float64, "rgb8", ["dtype float64", "encoding='rgb8'"]),
        ((4, 6), np.uint8, "mono16", ["dtype uint8", "encoding='mono16'"]),
        ((4, 6), np.int16, "16UC1", ["dtype int16"]),
        ((4, 6), np.float64, "32FC1", ["dtype float64"]),
        ((4, 6, 4), np.uint8, "rgb8", ["(4, 6, 4)", "H x W x 3"]),
        ((4, 6, 3), np.uint8, "rgba8", ["(4, 6, 3)", "H x W x 4"]),
        ((4, 6), np.uint8, "rgb8", ["(4, 6)", "encoding='rgb8'"]),
        ((4, 6, 3), np.uint8, "mono8", ["(4, 6, 3)", "H x W"]),
        ((4, 6, 1), np.uint8, "mono8", ["(4, 6, 1)"]),
        ((4,), np.uint8, "mono8", ["(4,)"]),
        ((2, 4, 6, 3), np.uint8, "bgr8", ["(2, 4, 6, 3)"]),
        ((4, 6), np.uint8, "uyvy", ["(4, 6)", "H x W x 2"]),
        ((4, 6, 2), np.uint8, "nv12", ["(4, 6, 2)"]),
        ((4, 6), np.uint8, "nv12", ["(4, 6)", "nv12"]),
        ((6, 5), np.uint8, "nv21", ["(6, 5)"]),
        ((4, 5, 2), np.uint8, "yuv422", ["(4, 5, 2)", "width=5", "even"]),
        ((0, 6, 3), np.uint8, "rgb8", ["(0, 6, 3)", "empty"]),
        ((4, 0), np.uint8, "mono8", ["(4, 0)", "empty"]),
        ((4, 6, 3), np.uint8, "rgb9", ["encoding='rgb9'"]),
    ],
)
def test_array_to_image_errors(
    shape: tuple[int, ...], dtype: Any, encoding: str, expected: list[str]
) -> None:
    with pytest.raises(ImageEncodeError) as info:
        array_to_image(np.zeros(shape, dtype=dtype), encoding)
    for text in expected:
        assert text in str(info.value), f"{text!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("encoding", sorted(LAYOUTS))
def test_array_to_image_step_and_view(encoding: str) -> None:
    layout = LAYOUTS[encoding]
    height, width = 4, 6
    values = random_samples(np.random.default_rng(20), layout.raw_shape(height, width), layout.char)
    fields = array_to_image(values, encoding)
    assert fields.step == width * layout.channels * layout.itemsize
    assert fields.height == height
    assert fields.width == width
    assert fields.is_bigendian == 0
    assert fields.data.dtype == np.uint8
    assert fields.data.size == fields.step * (height * 3 // 2 if layout.nv else height)
    assert np.shares_memory(fields.data, values)
    values.reshape(-1)[0] = 1 if values.dtype.kind in "iu" else 1.5
    assert fields.data[: layout.itemsize].tobytes() == struct.pack(f"<{layout.char}", values.reshape(-1)[0])
