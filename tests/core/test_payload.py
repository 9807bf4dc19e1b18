"""Compressed payloads: sizes read from the header and refused before decoding (with bounded memory,
measured in a fresh process), strict JPEG and PNG (truncated or inconsistent files are errors with
every OpenCV version), and raw images whose data is longer than ``step * height``."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from panoptic_ros.core.decode import check_message, color_frame
from panoptic_ros.core.image_codec import compressed_to_array, image_to_array
from panoptic_ros.core.image_encode import array_to_image
from panoptic_ros.core.payload import InputTooLarge, codec_of, header_size
from panoptic_ros.errors import ImageDecodeError
from tests.conftest import REPO


def _jpeg(height: int = 64, width: int = 96) -> bytes:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (9, 9), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _png(height: int = 64, width: int = 96) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def huge_png(side: int = 8192) -> bytes:
    """A valid PNG of ``side x side`` gray pixels, a few tens of kB (zeros compress well)."""
    raw = zlib.compress(b"".join(b"\x00" + bytes(side) for _ in range(side)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def declared(data: bytes, height: int, width: int) -> bytes:
    """A JPEG whose frame header declares another size than its data holds."""
    out = bytearray(data)
    i = out.index(b"\xff\xc0")
    out[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def msg(data: bytes, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=np.frombuffer(data, np.uint8))


def test_header_sizes() -> None:
    assert header_size(np.frombuffer(_jpeg(48, 80), np.uint8), "jpeg") == (48, 80)
    assert header_size(np.frombuffer(_png(48, 80), np.uint8), "png") == (48, 80)
    assert codec_of(np.frombuffer(b"GIF89a..", np.uint8)) == "unknown"


def test_images_over_the_limit_are_refused_before_decoding() -> None:
    bomb = declared(_jpeg(8, 8), 20000, 20000)  # a few hundred bytes declaring 400 megapixels
    assert len(bomb) < 1000
    for data, fmt in ((bomb, "jpeg"), (huge_png(), "png")):
        with pytest.raises(InputTooLarge, match=r"over the limit of \d+ \(parameter max_input_pixels\)"):
            compressed_to_array(msg(data, fmt))
        with pytest.raises(InputTooLarge):
            check_message(msg(data, fmt), compressed=True)
    raw = array_to_image(np.zeros((40, 50), np.uint8), "mono8")
    with pytest.raises(InputTooLarge, match="50 x 40 = 2000 pixels"):
        color_frame(raw, compressed=False, max_pixels=1999)
    assert color_frame(raw, compressed=False, max_pixels=2000).shape == (40, 50, 3)


MEMORY = """
import json, resource, sys
import numpy as np
from types import SimpleNamespace
from panoptic_ros.core.image_codec import compressed_to_array
data = np.frombuffer(open(sys.argv[1], "rb").read(), np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    compressed_to_array(SimpleNamespace(format=sys.argv[2], data=data))
    outcome = "decoded"
except Exception as err:
    outcome = type(err).__name__
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "grew_kb": after - before}))
"""


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_refusal_keeps_memory_bounded(kind: str, tmp_path: object) -> None:
    """In a fresh process, refusing the 8192x8192 PNG or the 20000x20000 JPEG bomb leaves the peak
    resident memory where it was (decoding them would take 64 MB and 1.2 GB)."""
    path = tmp_path / f"big.{kind}"  # type: ignore[operator]
    path.write_bytes(huge_png() if kind == "png" else declared(_jpeg(8, 8), 20000, 20000))
    result = subprocess.run(
        [sys.executable, "-c", MEMORY, str(path), kind], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["outcome"] == "InputTooLarge"
    assert report["grew_kb"] < 20_000, report


def test_damaged_jpegs_are_corrupt() -> None:
    good = _jpeg(240, 320)
    cut = good[: len(good) // 2] + b"\xff\xd9"  # cut in the middle, end marker appended
    liar = declared(_jpeg(8, 8), 2048, 2048)  # an 8x8 image whose header says 2048x2048
    assert compressed_to_array(msg(good)).array.shape == (240, 320, 3)
    for data in (cut, liar):
        with pytest.raises(ImageDecodeError, match="is corrupt or truncated"):
            compressed_to_array(msg(data))


def test_damaged_pngs_are_corrupt() -> None:
    good = _png()
    assert compressed_to_array(msg(good, "png")).array.shape == (64, 96, 3)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    no_end = good[: good.rindex(b"IEND") - 4]
    for data, reason in ((bytes(flipped), "fails its CRC"), (no_end, "incomplete"), (good[:40], "truncated")):
        with pytest.raises(ImageDecodeError, match=reason):
            compressed_to_array(msg(data, "png"))


def test_raw_data_longer_than_step_times_height_is_malformed() -> None:
    fields = array_to_image(np.zeros((4, 6), np.uint8), "mono8")
    longer = fields._replace(data=np.concatenate([fields.data, np.zeros(3, np.uint8)]))
    with pytest.raises(ImageDecodeError, match="data has 27 bytes, more than step \\* height = 6 \\* 4 = 24"):
        image_to_array(longer)
    with pytest.raises(ImageDecodeError, match="more than step"):
        check_message(longer, compressed=False)
