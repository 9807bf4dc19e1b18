"""The table of ``sensor_msgs/Image`` encodings: how each ``encoding`` string lays out its pixels.

This module owns the :class:`Encoding` record, the table of the named encodings (``rgb8``, ``mono16``,
``uyvy``, ``nv12``, ``bayer_rggb8``, ...), their aliases (``yuv422``, ``8UC3``, ...) and the generic
OpenCV-style ``<depth>C<k>`` forms, looked up by :func:`lookup_encoding`. Reading
(:mod:`panoptic_ros.core.image_codec`) and writing (:mod:`panoptic_ros.core.image_encode`) both
consult it.

Layouts of the packed encodings (as in ``sensor_msgs/image_encodings``):

- ``yuv422``/``uyvy``: ``U0 Y0 V0 Y1`` per pixel pair; ``yuv422_yuy2``/``yuyv``: ``Y0 U0 Y1 V0``.
  Two bytes per pixel, even width. The raw view is ``H x W x 2``.
- ``nv12``/``nv21``: a full-resolution Y plane of ``height`` rows, then an interleaved chroma plane of
  ``height / 2`` rows (``U V`` for nv12, ``V U`` for nv21), every row ``step`` bytes; even width and
  height; ``height`` is the image height. The raw view is ``(3 * H / 2) x W``.
- ``bayer_*8`` / ``bayer_*16``: one sample per pixel; the name gives the 2 x 2 pattern read from the
  top-left corner (``rggb``: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from panoptic_ros.errors import UnsupportedEncodingError

#: Channel order of a color picture handed to or asked from the codec.
ColorOrder = Literal["rgb", "bgr"]
#: What an encoding holds (see :attr:`Encoding.kind`).
Kind = Literal["color", "mono", "scalar", "yuv422", "nv", "bayer"]


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one ``encoding`` string lays out its pixels.

    Attributes:
        name: the canonical encoding string.
        kind: ``color`` (3 or 4 channels), ``mono`` (gray to be shown), ``scalar`` (depth or other
            single values, not a picture), ``yuv422``, ``nv`` (4:2:0 semi-planar) or ``bayer``.
        channels: samples per pixel in the raw view (2 for the yuv422 pair layout, 1 for nv and bayer).
        dtype: the sample type, little-endian spelling (the byte order comes from ``is_bigendian``).
        order: channel order of ``color`` encodings (``rgb``, ``bgr``, ``rgba``, ``bgra``), the byte
            pattern of ``yuv422`` (``uyvy``/``yuyv``), the chroma order of ``nv`` (``uv``/``vu``), the
            Bayer pattern; empty otherwise.
    """

    name: str
    kind: Kind
    channels: int
    dtype: np.dtype
    order: str = ""

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.dtype.itemsize


def _enc(name: str, kind: Kind, channels: int, dtype: str, order: str = "") -> Encoding:
    return Encoding(name, kind, channels, np.dtype(dtype), order)


_NAMED: dict[str, Encoding] = {
    e.name: e
    for e in (
        _enc("rgb8", "color", 3, "u1", "rgb"),
        _enc("bgr8", "color", 3, "u1", "bgr"),
        _enc("rgba8", "color", 4, "u1", "rgba"),
        _enc("bgra8", "color", 4, "u1", "bgra"),
        _enc("rgb16", "color", 3, "<u2", "rgb"),
        _enc("bgr16", "color", 3, "<u2", "bgr"),
        _enc("rgba16", "color", 4, "<u2", "rgba"),
        _enc("bgra16", "color", 4, "<u2", "bgra"),
        _enc("mono8", "mono", 1, "u1"),
        _enc("mono16", "mono", 1, "<u2"),
        _enc("uyvy", "yuv422", 2, "u1", "uyvy"),
        _enc("yuyv", "yuv422", 2, "u1", "yuyv"),
        _enc("nv12", "nv", 1, "u1", "uv"),
        _enc("nv21", "nv", 1, "u1", "vu"),
        *(_enc(f"bayer_{p}8", "bayer", 1, "u1", p) for p in ("rggb", "bggr", "gbrg", "grbg")),
        *(_enc(f"bayer_{p}16", "bayer", 1, "<u2", p) for p in ("rggb", "bggr", "gbrg", "grbg")),
    )
}
#: Alternative names of the same layouts (ROS spells the YUV 4:2:2 layouts several ways).
_ALIASES = {"yuv422": "uyvy", "yuv422_yuy2": "yuyv", "8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8"}
_GENERIC = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$")
_GENERIC_DTYPES = {
    "8U": "u1",
    "8S": "i1",
    "16U": "<u2",
    "16S": "<i2",
    "32S": "<i4",
    "32F": "<f4",
    "64F": "<f8",
}


def supported_encodings() -> tuple[str, ...]:
    """Every encoding name :func:`lookup_encoding` accepts (the ``NUC<k>`` forms as a pattern)."""
    return (*sorted(_NAMED), *sorted(_ALIASES), "{8U,8S,16U,16S,32S,32F,64F}C{1,2,3,4}")


def lookup_encoding(encoding: str) -> Encoding:
    """The :class:`Encoding` of an ``encoding`` string; :class:`ImageDecodeError` when unknown."""
    name = _ALIASES.get(encoding, encoding)
    if name in _NAMED:
        return _NAMED[name]
    if match := _GENERIC.fullmatch(encoding):
        channels = int(match.group(2))
        return _enc(encoding, "scalar", channels, _GENERIC_DTYPES[match.group(1)])
    raise UnsupportedEncodingError(
        f"encoding={encoding!r} is not supported; supported: {', '.join(supported_encodings())}"
    )
