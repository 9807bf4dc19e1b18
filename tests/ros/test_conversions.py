"""Message trees and images <-> real rclpy messages (in one process; DDS is covered by test_dds.py)."""

from __future__ import annotations

import array

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from panoptic_ros.core.image_codec import compressed_to_color, image_to_array, image_to_color
from panoptic_ros.core.labels import LabelSet, load_label_set
from panoptic_ros.core.messages import Message, header_message
from panoptic_ros.data.bag_types import to_rosbags, typestore
from panoptic_ros.ros.conversions import (
    _blank,
    array_to_compressed_msg,
    array_to_image_msg,
    byte_array,
    message_class,
    to_ros,
)
from panoptic_ros.runtime import outputs
from panoptic_ros.runtime.diagnostics import PipelineInfo, diagnostics
from panoptic_ros.runtime.outputs import CAMERA_OUTPUTS, FRAME_OUTPUTS, OutputContext, categories
from panoptic_ros.runtime.records import InstanceTable
from panoptic_ros.runtime.stats import CameraStats
from tests.data.bag_samples import frame_result
from tests.ros.samples import field_differences, generated_message, panoptic_instance

HEADER = Header(stamp=Time(sec=5, nanosec=7), frame_id="cam")
HEADER_MESSAGE = header_message(5_000_000_007, "cam")


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


def _rosbags_fields(value: object) -> object:
    """A rosbags message as nested plain data (arrays as lists), for comparing."""
    if hasattr(value, "__dataclass_fields__"):
        return {
            k: _rosbags_fields(getattr(value, k)) for k in value.__dataclass_fields__ if k != "__msgtype__"
        }
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_rosbags_fields(v) for v in value]
    return value


def _descriptions() -> list[Message]:
    syn = load_label_set("synthetic")
    context = OutputContext(syn, 1000, 0.3, "1.0 Hz")
    result = frame_result()
    header = header_message(result.stamp_ns, result.frame_id)
    described = [o.describe(result, context) for o in FRAME_OUTPUTS if not o.package]
    described += [o.describe(header, context) for o in CAMERA_OUTPUTS if not o.package]
    stats = CameraStats()
    stats.add_latency("total", 12.0)
    info = PipelineInfo("onnxruntime", "cpu", "m.onnx", "synthetic", {"top_k": 200}, True)
    camera = "/cam0/image_raw"
    described.append(
        diagnostics("panoptic", 5, info, cameras=[camera], slots={}, stats={camera: stats}, now=0.0)
    )
    return [m for m in described if m is not None]


@pytest.mark.parametrize("message", _descriptions(), ids=lambda m: m.type)
def test_live_and_recorded_wrappers_give_the_same_message(message: Message) -> None:
    """The rclpy message, serialized by rclpy and read by rosbags, equals the rosbags message of the
    same description: live and recorded outputs are equal by construction."""
    store = typestore()
    live = store.deserialize_cdr(bytes(serialize_message(to_ros(message))), message.type)
    recorded = store.deserialize_cdr(store.serialize_cdr(to_rosbags(message), message.type), message.type)
    assert _rosbags_fields(live) == _rosbags_fields(recorded)


def _classes(cls: type, seen: dict[str, type]) -> dict[str, type]:
    """``cls`` and every message class nested in it, by type name."""
    name = f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"
    if name in seen:
        return seen
    seen[name] = cls
    example = cls()
    for field in cls.get_fields_and_field_types():
        value = getattr(example, field)
        for nested in value if isinstance(value, list) else [value]:
            if hasattr(type(nested), "get_fields_and_field_types"):
                _classes(type(nested), seen)
        if isinstance(value, list):  # an empty sequence of messages: its class from the type string
            kind = cls.get_fields_and_field_types()[field]
            inner = kind.removeprefix("sequence<").split(",")[0].rstrip(">")
            if "/" in inner:
                package, type_name = inner.split("/")
                _classes(message_class(f"{package}/msg/{type_name}"), seen)
    return seen


def test_blank_messages_equal_the_generated_defaults() -> None:
    """Messages made without the generated ``__init__`` hold its defaults, in every class the outputs
    use and every class nested in them, each mutable default a fresh object."""
    classes: dict[str, type] = {}
    for message in _descriptions():
        _classes(message_class(message.type), classes)
    # and classes with fixed-size arrays (numpy defaults; vision_msgs' poses hold a covariance too)
    for extra in ("sensor_msgs/msg/CameraInfo", "geometry_msgs/msg/PoseWithCovariance"):
        _classes(message_class(extra), classes)
    assert {"visualization_msgs/msg/Marker", "sensor_msgs/msg/CompressedImage"} <= set(classes)
    for name, cls in classes.items():
        blank, generated = _blank(cls, {}), cls()
        assert blank == generated, name
        assert blank._check_fields == generated._check_fields, name
        # through the C serializer and back (byte strings could differ in padding it leaves unwritten)
        assert deserialize_message(serialize_message(blank), cls) == generated, name
        for field in cls.get_fields_and_field_types():
            value = getattr(blank, field)
            if not isinstance(value, (str, bytes, int, float, bool)):  # immutable: shared safely
                assert value is not getattr(_blank(cls, {}), field), f"{name}.{field} is shared"


@pytest.mark.parametrize("message", _descriptions(), ids=lambda m: m.type)
def test_to_ros_equals_the_generated_constructors(message: Message) -> None:
    """The fast wrapping gives the message the generated constructors and setters give, also after
    the C serializer and back."""
    made, generated = to_ros(message), generated_message(message)
    assert made == generated
    cls = message_class(message.type)
    assert deserialize_message(serialize_message(made), cls) == deserialize_message(
        serialize_message(generated), cls
    )
    if message.type == "visualization_msgs/msg/MarkerArray" and len(made.markers) > 2:
        first, second = made.markers[1], made.markers[2]
        assert first.header is second.header, "a sub-message shared in the tree is made once"


def test_markers_of_many_things_share_what_is_equal() -> None:
    """Markers of several things of two categories: the same message as the generated constructors
    give, with one color per category, one scale per marker kind and one orientation in the result."""
    things = 6
    table = InstanceTable(
        ids=np.arange(1, things + 1, dtype=np.uint32),
        category_ids=np.array([5, 7, 5, 7, 7, 5]),
        is_thing=np.ones(things, dtype=bool),
        scores=np.full(things, 0.75, dtype=np.float32),
        states=np.ones(things, dtype=np.uint8),
        areas=np.full(things, 100),
        bboxes=np.tile([10, 10, 20, 20], (things, 1)),
        centroids=np.zeros((things, 2), dtype=np.float32),
        velocities=np.zeros((things, 2), dtype=np.float32),
        ages=np.ones(things, dtype=np.int64),
        positions=np.arange(3 * things, dtype=np.float32).reshape(things, 3) + 1,
        position_valid=np.ones(things, dtype=bool),
    )
    result = frame_result()._replace(instances=table)
    message = outputs.markers(result, OutputContext(load_label_set("synthetic"), 1000, 0.3, "1.0 Hz"))
    made = to_ros(message)
    assert made == generated_message(message)
    spheres = [m for m in made.markers if m.type == outputs.MARKER_SPHERE]
    assert len(spheres) == things
    by_category = {}
    for k, sphere in enumerate(spheres):
        by_category.setdefault(int(table.category_ids[k]), []).append(sphere.color)
        assert sphere.scale is spheres[0].scale and sphere.pose.orientation is spheres[0].pose.orientation
    assert len(by_category) == 2
    for colors in by_category.values():
        assert all(color is colors[0] for color in colors)


def test_category_array_round_trip() -> None:
    coco = load_label_set("coco_panoptic")
    msg = to_ros(categories(HEADER_MESSAGE, OutputContext(coco, 1000)))
    assert msg.void_id == 255 and msg.label_divisor == 1000 and len(msg.categories) == 133
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, 7)
    assert LabelSet.from_message(msg) == coco


def test_field_differences_detects_changes() -> None:
    assert field_differences(panoptic_instance(2), panoptic_instance(2)) == []
    changed = panoptic_instance(2)
    changed.bbox.width += 1
    assert field_differences(panoptic_instance(2), changed) == ["msg.bbox.width: 66 != 67"]
