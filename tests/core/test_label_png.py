"""Label images travel as lossless PNG CompressedImages and come back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core.image_codec import compressed_to_array
from panoptic_ros.core.image_encode import LABELS_32_AS_16_FORMAT, LABELS_32_FORMAT, labels_to_png
from panoptic_ros.errors import ImageDecodeError, ImageEncodeError


class _Msg:
    def __init__(self, fmt: str, data: np.ndarray) -> None:
        self.format, self.data = fmt, data


def _round_trip(labels: np.ndarray) -> tuple[str, np.ndarray, str]:
    fields = labels_to_png(labels)
    decoded = compressed_to_array(_Msg(fields.format, fields.data))
    return fields.format, decoded.array, decoded.encoding


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_semantic_labels_are_standard_png(dtype: type) -> None:
    labels = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (37, 53)).astype(dtype)
    fmt, back, encoding = _round_trip(labels)
    name = "mono8" if dtype == np.uint8 else "mono16"
    assert fmt == f"{name}; png compressed {name}" and encoding == name
    assert back.dtype == dtype and np.array_equal(back, labels)


def test_instance_ids_survive_every_bit() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(-(2**31), 2**31 - 1, (29, 31), dtype=np.int64).astype(np.int32)
    labels[:5] = 0
    labels[5, :4] = [1, 255, 256, 65536]
    fmt, back, encoding = _round_trip(labels)
    assert fmt == LABELS_32_FORMAT and encoding == "32SC1"
    assert back.dtype == np.int32 and np.array_equal(back, labels)


def test_ids_that_fit_16_bits_travel_as_mono16() -> None:
    labels = np.zeros((20, 30), np.int32)
    labels[3:9, 4:12] = 65535
    labels[10:15, :] = 1
    fmt, back, encoding = _round_trip(labels)
    assert fmt == LABELS_32_AS_16_FORMAT and encoding == "32SC1"
    assert back.dtype == np.int32 and np.array_equal(back, labels)
    labels[0, 0] = 65536  # one id too many for 16 bits: all 32
    assert _round_trip(labels)[0] == LABELS_32_FORMAT


def test_typical_ids_compress_well() -> None:
    labels = np.zeros((480, 640), np.int32)
    labels[100:200, 100:300] = 7
    labels[300:400, 50:120] = 12
    assert labels_to_png(labels).data.size < labels.nbytes / 50


def test_what_is_not_a_label_image_is_refused() -> None:
    with pytest.raises(ImageEncodeError, match="H x W"):
        labels_to_png(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageEncodeError, match="uint8, uint16 or int32"):
        labels_to_png(np.zeros((4, 4), np.float32))
    gray = labels_to_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageDecodeError, match="4 8-bit channels"):
        compressed_to_array(_Msg(LABELS_32_FORMAT, gray.data))
