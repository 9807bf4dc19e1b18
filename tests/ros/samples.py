"""Deterministic sample messages shared by the DDS test and its peer process (tests/ros/dds_peer.py).

Both sides build the same messages from the same code, so the receiver can compare field by field.
Float values are exactly representable as float32, so they survive the float32 fields unchanged.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.messages import Message, header_message
from panoptic_ros.msg import Category, CategoryArray, PanopticInstance, PanopticInstanceArray
from panoptic_ros.ros.conversions import array_to_image_msg, message_class, to_ros
from panoptic_ros.runtime.outputs import OutputContext, categories

HEADER = Header(stamp=Time(sec=1_700_000_123, nanosec=456_789_000), frame_id="front_camera_optical")


def panoptic_instance(k: int) -> PanopticInstance:
    return PanopticInstance(
        id=1000 + k,
        category_id=7 if k % 2 else 5,
        label="car" if k % 2 else "person",
        is_thing=True,
        score=0.5 + k / 64,
        state=(
            PanopticInstance.STATE_TENTATIVE,
            PanopticInstance.STATE_CONFIRMED,
            PanopticInstance.STATE_LOST,
        )[k % 3],
        area=4096 * (k + 1),
        bbox=RegionOfInterest(x_offset=10 * k, y_offset=5 * k, width=64 + k, height=32 + k, do_rectify=False),
        centroid_x=42.25 + k,
        centroid_y=17.5 + k,
        velocity_x=-3.125 * k,
        velocity_y=1.5,
        age=k + 1,
        position=Point(x=1.5 * k, y=-0.25, z=12.0 + k),
        position_valid=bool(k % 2),
    )


def panoptic_instance_array() -> PanopticInstanceArray:
    return PanopticInstanceArray(
        header=HEADER, height=1080, width=1920, instances=[panoptic_instance(k) for k in range(7)]
    )


def category() -> Category:
    return Category(id=13, name="car", is_thing=True, r=0, g=0, b=142)


def category_array() -> CategoryArray:
    header = header_message(HEADER.stamp.sec * 1_000_000_000 + HEADER.stamp.nanosec, HEADER.frame_id)
    return to_ros(categories(header, OutputContext(load_label_set("coco_panoptic"), 1000)))


def full_hd_image() -> Image:
    """A 1920 x 1080 bgr8 image with a pattern in every byte (so any lost or moved byte shows)."""
    y, x = np.mgrid[0:1080, 0:1920]
    pixels = np.stack([(x + y) % 256, (x * 3) % 256, (y * 7 + x // 5) % 256], axis=-1).astype(np.uint8)
    return array_to_image_msg(pixels, "bgr8", HEADER)


#: topic name -> (message type, builder); the peer publishes each, the test expects each.
SAMPLES = {
    "sample/panoptic_instance": (PanopticInstance, lambda: panoptic_instance(3)),
    "sample/panoptic_instance_array": (PanopticInstanceArray, panoptic_instance_array),
    "sample/category": (Category, category),
    "sample/category_array": (CategoryArray, category_array),
    "sample/image_1080p": (Image, full_hd_image),
}


def field_differences(expected: object, received: object, path: str = "msg") -> list[str]:
    """Every leaf field where two messages differ, as ``path: expected != received`` lines."""
    if hasattr(expected, "get_fields_and_field_types"):
        diffs: list[str] = []
        for name in expected.get_fields_and_field_types():
            diffs += field_differences(getattr(expected, name), getattr(received, name), f"{path}.{name}")
        return diffs
    if (
        isinstance(expected, (list, tuple))
        and expected
        and hasattr(expected[0], "get_fields_and_field_types")
    ):
        if len(expected) != len(received):  # type: ignore[arg-type]
            return [f"{path}: length {len(expected)} != {len(received)}"]  # type: ignore[arg-type]
        diffs = []
        for i, (e, r) in enumerate(zip(expected, received, strict=True)):  # type: ignore[call-overload]
            diffs += field_differences(e, r, f"{path}[{i}]")
        return diffs
    if hasattr(expected, "__len__") and not isinstance(expected, str):
        e = np.asarray(expected)
        r = np.asarray(received)
        if e.shape != r.shape or not np.array_equal(e, r):
            return [f"{path}: arrays differ (shapes {e.shape} vs {r.shape})"]
        return []
    return [] if expected == received else [f"{path}: {expected!r} != {received!r}"]


def generated_message(message: Message) -> object:
    """The rclpy message of a description made by the generated constructors and setters alone: each
    message first built with every default, nested ones included (the plain way, which ``to_ros``
    takes a shortcut around; the tests' and ``bench_messages``' reference)."""
    msg = message_class(message.type)()
    for name, value in message.fields.items():
        setattr(msg, name, _generated_value(value))
    return msg


def _generated_value(value: object) -> object:
    if isinstance(value, Message):
        return generated_message(value)
    if isinstance(value, list):
        return [_generated_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value).tobytes() if value.dtype == np.uint8 else value.tolist()
    return value
