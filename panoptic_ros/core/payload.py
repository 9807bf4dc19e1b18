"""Compressed image payloads read before and while decoding: their size from the header, and strict
integrity, the same with every OpenCV version.

- :func:`header_size` reads ``(height, width)`` from a JPEG's frame header (SOF marker) or a PNG's
  ``IHDR`` chunk without decoding, so an image larger than a limit is refused before a single pixel is
  allocated (a 631-byte JPEG may declare 20000 x 20000 pixels).
- :func:`check_png` walks the PNG chunks: every chunk complete with a matching CRC, ``IHDR`` first,
  ``IDAT`` present, ``IEND`` last.
- :func:`decode_jpeg` decodes with libjpeg-turbo in strict mode (``simplejpeg``): a warning such as
  "premature end of data segment" (a truncated file with an end marker appended, an 8x8 image whose
  header declares 2048x2048) is an error, where OpenCV fills the missing part with gray and succeeds.

Errors are :class:`~panoptic_ros.errors.ImageDecodeError`; an image over the limit is
:class:`InputTooLarge`.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from panoptic_ros.errors import ImageDecodeError

#: Default limit of decoded pixels per image: 8K UHD (7680 x 4320), above every common camera.
DEFAULT_MAX_PIXELS = 7680 * 4320
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (SOF0..SOF15 without DHT C4, JPG C8 and DAC CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: The frame header of a JPEG is looked for in its first bytes (after the APPn segments, e.g. EXIF).
_JPEG_HEADER_BYTES = 1 << 22
#: Markers without a length field (TEM, RST0..7, SOI, EOI).
_STANDALONE = frozenset([0x01, *range(0xD0, 0xDA)])


class InputTooLarge(ImageDecodeError):
    """An image has more pixels than the configured limit (``max_input_pixels``)."""


def codec_of(payload: np.ndarray) -> str:
    """``"jpeg"``, ``"png"`` or ``"unknown"`` from the payload's magic bytes."""
    head = payload[:8].tobytes()
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return "unknown"


def header_size(payload: np.ndarray, codec: str) -> tuple[int, int]:
    """``(height, width)`` declared by a JPEG or PNG header.

    Raises:
        ImageDecodeError: no frame header / ``IHDR`` where one must be.
    """
    if codec == "png":
        data = payload[:24].tobytes()
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageDecodeError(f"PNG data ({payload.size} bytes) has no IHDR chunk where it must start")
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    return _jpeg_size(payload[:_JPEG_HEADER_BYTES].tobytes())


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageDecodeError(f"JPEG data has no marker at byte {i} (found 0x{data[i]:02x})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return height, width
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise ImageDecodeError(f"JPEG data ({len(data)} bytes) has no frame header (SOF marker)")


def check_size(height: int, width: int, max_pixels: int, what: str) -> None:
    """Raise :class:`InputTooLarge` when ``height x width`` exceeds ``max_pixels`` (0: no limit), and
    :class:`ImageDecodeError` for a size of zero."""
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{what} declares {width} x {height} pixels")
    if max_pixels and height * width > max_pixels:
        raise InputTooLarge(
            f"{what} has {width} x {height} = {height * width} pixels, over the limit of {max_pixels} "
            "(parameter max_input_pixels)"
        )


def check_png(payload: np.ndarray) -> None:
    """Raise :class:`ImageDecodeError` unless the PNG's chunks are complete and intact."""
    data = payload.tobytes()
    i, seen = len(PNG_MAGIC), []
    while i < len(data):
        if i + 12 > len(data):
            raise ImageDecodeError(
                f"PNG data ({len(data)} bytes) is truncated: {len(data) - i} bytes left at byte {i}, "
                "a chunk needs 12"
            )
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > len(data):
            left = len(data) - i - 12
            raise ImageDecodeError(
                f"PNG data ({len(data)} bytes) is truncated: chunk {kind!r} at byte {i} needs {length} "
                f"bytes, {left} left"
            )
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(data[i + 4 : end - 4]) != crc:
            raise ImageDecodeError(
                f"PNG data ({len(data)} bytes): chunk {kind!r} at byte {i} fails its CRC (damaged data)"
            )
        seen.append(kind)
        i = end
        if kind == b"IEND":
            break
    if not seen or seen[0] != b"IHDR" or b"IDAT" not in seen or seen[-1] != b"IEND":
        names = [k.decode("latin-1") for k in seen]
        raise ImageDecodeError(
            f"PNG data ({len(data)} bytes) is incomplete: chunks {names}; a PNG needs IHDR, IDAT and IEND"
        )


def decode_jpeg(payload: np.ndarray) -> np.ndarray:
    """A JPEG as ``H x W x 3`` BGR or ``H x W`` gray uint8, strictly (see the module docstring)."""
    import simplejpeg

    data = payload.tobytes()
    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        gray = colorspace.lower() in ("gray", "grey")
        image = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "BGR", strict=True)
    except (ValueError, RuntimeError) as err:
        raise ImageDecodeError(f"JPEG data ({payload.size} bytes) is corrupt or truncated: {err}") from err
    return image[..., 0] if gray and image.ndim == 3 else image
