"""Core records <-> real rclpy messages (in one process; DDS is covered by test_dds.py)."""

from __future__ import annotations

import array

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from panoptic_ros.core.image_codec import compressed_to_color, image_to_array, image_to_color
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.types import PanopticResult
from panoptic_ros.msg import PanopticInstance
from panoptic_ros.ros.conversions import (
    array_to_compressed_msg,
    array_to_image_msg,
    byte_array,
    category_array_msg,
    instance_array_msg,
    label_set_from_msg,
)
from tests.ros.samples import field_differences, panoptic_instance

HEADER = Header(stamp=Time(sec=5, nanosec=7), frame_id="cam")


@pytest.mark.parametrize(
    ("encoding", "dtype", "channels"),
    [("bgr8", np.uint8, 3), ("mono16", np.uint16, 1), ("32SC1", np.int32, 1), ("32FC1", np.float32, 1)],
)
def test_image_msg_round_trip(encoding: str, dtype: type, channels: int) -> None:
    rng = np.random.default_rng(0)
    shape = (37, 53, channels) if channels > 1 else (37, 53)
    pixels = rng.integers(0, 1000, shape).astype(dtype)
    msg = array_to_image_msg(pixels, encoding, HEADER)
    assert isinstance(msg.data, array.array) and msg.header == HEADER
    view = image_to_array(msg)
    assert np.array_equal(view, pixels)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))  # zero-copy read of an rclpy message


def test_big_endian_image_msg() -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    msg = array_to_image_msg(pixels, "mono16", HEADER, is_bigendian=True)
    assert msg.is_bigendian == 1
    assert bytes(msg.data[:2]) == (0).to_bytes(2, "big") and bytes(msg.data[2:4]) == (300).to_bytes(2, "big")
    assert np.array_equal(image_to_array(msg, native=True), pixels)


def test_color_from_rclpy_messages() -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 250
    assert np.array_equal(image_to_color(array_to_image_msg(rgb, "rgb8"), "rgb"), rgb)
    decoded = compressed_to_color(array_to_compressed_msg(rgb, codec="png", order="rgb"), "rgb")
    assert np.array_equal(decoded, rgb)


def test_byte_array_from_non_contiguous() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]
    assert byte_array(a).tobytes() == np.ascontiguousarray(a).tobytes()


def test_category_array_round_trip() -> None:
    coco = load_label_set("coco_panoptic")
    msg = category_array_msg(coco, HEADER)
    assert msg.void_id == 255 and msg.label_divisor == 1000 and len(msg.categories) == 133
    assert label_set_from_msg(msg) == coco


def test_instance_array_from_result() -> None:
    syn = load_label_set("synthetic")
    semantic = np.array([[4, 4, 7], [0, 7, 7]])
    instance = np.array([[0, 0, 12], [0, 12, 12]])
    result = PanopticResult.from_maps(semantic, instance, syn)
    msg = instance_array_msg(result, syn, HEADER)
    assert (msg.height, msg.width) == (2, 3) and msg.header == HEADER
    by_label = {m.label: m for m in msg.instances}
    car = by_label["car"]
    assert (car.id, car.category_id, car.is_thing, car.area, car.state) == (
        12,
        7,
        True,
        3,
        PanopticInstance.STATE_CONFIRMED,
    )
    assert (car.bbox.x_offset, car.bbox.y_offset, car.bbox.width, car.bbox.height) == (1, 0, 2, 2)
    stuff_ids = sorted(m.id for m in msg.instances if not m.is_thing)
    assert stuff_ids == [13, 14]  # unique, above the frame's thing ids


def test_field_differences_detects_changes() -> None:
    assert field_differences(panoptic_instance(2), panoptic_instance(2)) == []
    changed = panoptic_instance(2)
    changed.bbox.width += 1
    assert field_differences(panoptic_instance(2), changed) == ["msg.bbox.width: 66 != 67"]
