"""The gray PNG writer of :mod:`panoptic_ros.core.label_png`: valid PNG files (chunk CRCs, the zlib
stream's Adler-32, the "up" filter) that OpenCV and a plain inflate both read back to the pixels, for
images with and without repeated rows, of any width, in 8 and 16 bits."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from panoptic_ros.core.image_encode import labels_to_png
from panoptic_ros.core.label_png import gray_png, gray_png_of_runs, row_runs
from panoptic_ros.errors import ImageEncodeError


def _inflate(png: bytes) -> np.ndarray:
    """Decode ``png`` without OpenCV: every chunk's CRC checked, the zlib stream inflated (which checks
    its Adler-32), the "up" filter undone; big-endian 16-bit samples read as such."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) == crc, kind
        chunks.append((kind, data))
        at += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (color, interlace) == (0, 0)
    raw = np.frombuffer(zlib.decompress(chunks[1][1]), dtype=np.uint8)
    lines = raw.reshape(height, 1 + width * depth // 8)
    assert (lines[:, 0] == 2).all(), "every scanline uses the up filter"
    rows = np.cumsum(lines[:, 1:], axis=0, dtype=np.uint64).astype(np.uint8)  # undo "up", modulo 256
    return rows.view(">u2" if depth == 16 else np.uint8).astype(np.uint16 if depth == 16 else np.uint8)


def _repeated(rng: np.random.Generator, height: int, width: int, dtype: type) -> np.ndarray:
    """A label image whose rows come in runs of 1 to 9 (and one long run), values over the type."""
    lengths = []
    while sum(lengths) < height:
        lengths.append(int(rng.integers(1, 10)) if len(lengths) != 3 else 300)
    distinct = rng.integers(0, np.iinfo(dtype).max, (len(lengths), width), endpoint=True).astype(dtype)
    distinct[1::3] = distinct[0::3][: distinct[1::3].shape[0]]  # some runs equal to the one before
    return np.repeat(distinct, lengths, axis=0)[:height]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 9), (7, 1), (37, 53), (500, 64), (480, 641)])
def test_files_decode_to_the_pixels(dtype: type, height: int, width: int) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    for labels in (
        _repeated(rng, height, width, dtype),
        rng.integers(0, np.iinfo(dtype).max, (height, width), endpoint=True).astype(dtype),
        np.full((height, width), np.iinfo(dtype).max, dtype=dtype),  # one run of the whole image
    ):
        png = gray_png(labels)
        assert np.array_equal(_inflate(png), labels)
        back = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.dtype == dtype and np.array_equal(back.reshape(labels.shape), labels)


def test_row_runs() -> None:
    image = np.array([[1, 2], [1, 2], [3, 4], [1, 2], [1, 2], [1, 2]], dtype=np.uint16)
    first, lengths = row_runs(image)
    assert first.tolist() == [0, 2, 3] and lengths.tolist() == [2, 1, 3]
    assert [a.tolist() for a in row_runs(np.zeros((3, 0), np.uint8))] == [[0], [3]]
    assert [a.tolist() for a in row_runs(np.zeros((0, 4), np.uint8))] == [[], []]
    # bytes that differ only past the first machine word, in widths that are not a multiple of it
    for width in (5, 8, 13):
        image = np.zeros((4, width), np.uint8)
        image[2, -1] = 1
        assert row_runs(image)[0].tolist() == [0, 2, 3]


def test_an_enlarged_label_map_is_small_and_exact() -> None:
    """A 1080p category image enlarged from a 192 x 384 map (as the engine makes it): exact, and no
    bigger than a few times OpenCV's PNG of it at the same zlib settings."""
    rng = np.random.default_rng(3)
    labels = np.zeros((192, 384), np.uint8)
    for _ in range(40):
        y, x = rng.integers(0, 192), rng.integers(0, 384)
        labels[y : y + rng.integers(5, 60), x : x + rng.integers(5, 90)] = rng.integers(0, 200)
    rows = np.minimum((np.arange(1080) + 0.5) * 192 / 1080, 191).astype(np.int64)
    cols = np.minimum((np.arange(1920) + 0.5) * 384 / 1920, 383).astype(np.int64)
    image = labels.take(cols, axis=1).take(rows, axis=0)
    png = gray_png(image)
    assert np.array_equal(_inflate(png), image)
    fields = labels_to_png(image)
    assert fields.data.tobytes() == png
    ok, reference = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok and len(png) < 4 * reference.size and len(png) < image.nbytes / 100


def test_what_cannot_be_written_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8 or uint16"):
        gray_png(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="at least one pixel"):
        gray_png(np.zeros((0, 3), np.uint8))
    with pytest.raises(ValueError, match="run length"):
        gray_png_of_runs(np.zeros((2, 3), np.uint8), [1, 0])
    with pytest.raises(ImageEncodeError, match="no pixel"):
        labels_to_png(np.zeros((0, 5), np.int32))
