"""A lossless gray PNG writer for label images that compresses each run of equal rows once.

A label image made at the model's resolution and enlarged to the camera's repeats most of its rows
(a 1080p image from a 192-row map: 1080 rows, at most 192 runs). zlib, even at level 1, reads every
byte of every row; here the image is taken as its runs of equal rows (:func:`row_runs`, one compare
of each row with the one above), the first row of each run goes through zlib and the rest of the run
becomes the PNG "up" filter's all-zero rows, whose deflate blocks are made once per width and run
length and copied. The zlib stream is fully flushed after each compressed row (no match reaches
back past it), so the copied blocks can sit between them; the stream's Adler-32 is carried along, in
closed form over the copied rows. Any PNG reader decodes the result to the pixels of the image.

The first row of a run is written with the same "up" filter (its bytes minus those of the run
above: mostly zeros, where a boundary moves a little), at zlib level 1 with run-length matching, as
:data:`panoptic_ros.core.image_encode._LABEL_PNG` asks of OpenCV. A 1080p frame's two label PNGs
encode in about a quarter of OpenCV's time (``benchmarks/bench_labels.py``), in files up to about
twice as large.
"""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2  # the PNG "up" filter: each byte minus the byte above it
_ADLER_BASE = 65521


def row_runs(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of equal rows of an ``[H, ...]`` array: ``[R]`` int64 the first row of each run and
    ``[R]`` int64 its length (``R >= 1`` for ``H >= 1``; they sum to ``H``)."""
    height = image.shape[0]
    if height == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = np.ascontiguousarray(image).reshape(height, -1).view(np.uint8)
    size = rows.shape[1]
    starts = np.ones(height, dtype=bool)
    if height > 1 and size:
        word = next(n for n in (8, 4, 2, 1) if size % n == 0)  # compared a machine word at a time
        words = rows.view(f"u{word}")
        starts[1:] = (words[1:] != words[:-1]).any(axis=1)
    elif height > 1:
        starts[1:] = False  # rows without pixels are all equal
    first = np.flatnonzero(starts)
    return first, np.diff(np.append(first, height))


def gray_png(labels: np.ndarray) -> bytes:
    """The PNG file of an ``H x W`` uint8 or uint16 image (8- or 16-bit grayscale, not interlaced).

    Raises:
        ValueError: another shape or type, or an empty image (PNG needs at least one pixel).
    """
    if labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"a gray PNG holds an H x W uint8 or uint16 image; got {labels.dtype} of {labels.shape}"
        )
    first, lengths = row_runs(labels)
    return gray_png_of_runs(labels[first], lengths)


def gray_png_of_runs(distinct: np.ndarray, lengths: np.ndarray) -> bytes:
    """The PNG file of the image whose row ``k`` of ``distinct`` (``[R, W]`` uint8 or uint16) is
    repeated ``lengths[k]`` times (each at least 1).

    Raises:
        ValueError: another shape or type, a length below 1, or an empty image.
    """
    if distinct.ndim != 2 or distinct.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"gray PNG rows are R x W uint8 or uint16; got {distinct.dtype} {distinct.shape}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.shape != distinct.shape[:1] or (lengths.size and int(lengths.min()) < 1):
        raise ValueError(f"each of the {distinct.shape[0]} rows needs a run length of at least 1")
    height, width = int(lengths.sum()), distinct.shape[1]
    if height == 0 or width == 0:
        raise ValueError(f"a PNG needs at least one pixel; got {height} x {width}")
    depth = 8 * distinct.dtype.itemsize
    big_endian = distinct.astype(distinct.dtype.newbyteorder(">"), copy=False)  # PNG's sample order
    rows = np.ascontiguousarray(big_endian).view(np.uint8).reshape(distinct.shape[0], -1)
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    data = _image_data(rows, lengths.tolist())
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", data), _chunk(b"IEND", b"")))


def _image_data(rows: np.ndarray, lengths: list[int]) -> bytes:
    """The zlib stream of the "up"-filtered scanlines of each of ``rows`` (``[R, N]`` bytes) repeated
    ``lengths`` times."""
    size = rows.shape[1]
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # the row above a run is the last of the run before; uint8 wraps
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 1, zlib.Z_RLE)  # small hash: cheap flushes
    parts = [b"\x78\x01"]  # zlib header: deflate, 32K window, level "fastest"
    a, b = 1, 0  # Adler-32 of the scanlines so far
    for line_bytes, length in zip(filtered, lengths, strict=True):
        line = bytes((_UP,)) + line_bytes.tobytes()
        parts.append(compressor.compress(line))
        parts.append(compressor.flush(zlib.Z_FULL_FLUSH))
        checksum = zlib.adler32(line, (b << 16) | a)
        a, b = checksum & 0xFFFF, checksum >> 16
        repeats = length - 1
        if repeats:  # each: the filter byte (a grows by 2), then ``size`` zeros (b grows by a each)
            b = (b + (size + 1) * (repeats * a + repeats * (repeats + 1))) % _ADLER_BASE
            a = (a + _UP * repeats) % _ADLER_BASE
            parts.append(_zero_rows_blocks(size, repeats))
    parts.append(compressor.flush(zlib.Z_FINISH))
    parts.append(struct.pack(">I", (b << 16) | a))
    return b"".join(parts)


@functools.lru_cache(maxsize=256)
def _zero_rows_blocks(size: int, count: int) -> bytes:
    """Deflate blocks (not final, ending on a byte boundary, no match outside them) of ``count`` "up"
    scanlines of ``size`` zero bytes."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 1, zlib.Z_RLE)
    return compressor.compress((bytes((_UP,)) + bytes(size)) * count) + compressor.flush(zlib.Z_FULL_FLUSH)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
