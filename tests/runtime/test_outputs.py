"""The description of every output, computed once from a result record; checked here through the bag
writer's wrapper (the rclpy wrapper is checked against it in tests/ros/test_conversions.py)."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core import stamps
from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.messages import header_message
from panoptic_ros.core.topics import OUTPUTS as TOPIC_OUTPUTS
from panoptic_ros.data.bag_types import to_rosbags, typestore
from panoptic_ros.runtime import outputs
from panoptic_ros.runtime.outputs import OutputContext
from tests.data.bag_samples import HEIGHT, WIDTH, frame_result

SYN = load_label_set("synthetic")
CONTEXT = OutputContext(SYN, 1000, 0.25, "status line")


def roundtrip(message: outputs.Message) -> object:
    store = typestore()
    msg = to_rosbags(message)
    return store.deserialize_cdr(store.serialize_cdr(msg, message.type), message.type)


def test_every_topic_name_has_one_description() -> None:
    assert set(outputs.OUTPUTS) == set(TOPIC_OUTPUTS)
    assert {o.name for o in outputs.CAMERA_OUTPUTS} == {"categories", "label_info"}
    assert all(o.latched for o in outputs.CAMERA_OUTPUTS) and not any(
        o.latched for o in outputs.FRAME_OUTPUTS
    )


def test_images_carry_the_input_header_and_the_maps() -> None:
    result = frame_result()
    semantic = roundtrip(outputs.semantic(result, CONTEXT))
    ids = roundtrip(outputs.instance_ids(result, CONTEXT))
    overlay = roundtrip(outputs.overlay(result, CONTEXT))  # type: ignore[arg-type]
    for msg in (semantic, ids, overlay):
        assert stamps.stamp_ns(msg) == result.stamp_ns and msg.header.frame_id == "cam0_optical_frame"
        assert (msg.height, msg.width) == (HEIGHT, WIDTH)
    assert (semantic.encoding, semantic.step) == ("mono8", WIDTH)
    assert np.array_equal(image_to_array(semantic), result.semantic)
    assert (ids.encoding, ids.step) == ("32SC1", 4 * WIDTH)
    assert np.array_equal(image_to_array(ids, native=True), result.instance_ids)
    assert overlay.encoding == "bgr8" and np.array_equal(image_to_array(overlay), result.overlay_bgr)


def test_semantic_is_mono16_for_uint16_maps_and_overlay_is_optional() -> None:
    result = frame_result(semantic_dtype=np.uint16, overlay=False)
    semantic = roundtrip(outputs.semantic(result, CONTEXT))
    assert semantic.encoding == "mono16"
    assert image_to_array(semantic, native=True)[0, 0] == 65535
    assert np.array_equal(image_to_array(semantic, native=True), result.semantic)
    assert outputs.overlay(result, CONTEXT) is None


def test_instance_array_fields() -> None:
    result = frame_result()
    msg = roundtrip(outputs.instances(result, CONTEXT))
    assert stamps.stamp_ns(msg) == result.stamp_ns and msg.header.frame_id == "cam0_optical_frame"
    assert (msg.height, msg.width) == (HEIGHT, WIDTH)
    car, person, road = msg.instances
    assert (car.id, car.category_id, car.label, car.is_thing, car.state) == (3, 7, "car", True, 1)
    assert (car.score, car.area, car.age) == (0.75, 20, 4)
    assert (car.bbox.x_offset, car.bbox.y_offset, car.bbox.width, car.bbox.height) == (2, 3, 4, 5)
    assert not car.bbox.do_rectify
    assert (car.centroid_x, car.centroid_y, car.velocity_x, car.velocity_y) == (3.5, 5.0, 12.5, -2.0)
    assert (car.position.x, car.position.y, car.position.z, car.position_valid) == (0.5, 1.25, 8.0, True)
    # a lost track's predicted box (-4, 10, 8, 6), clipped by the engine to the 16 x 12 image
    assert (person.label, person.state, person.area, person.position_valid) == ("person", 2, 0, False)
    assert (person.bbox.x_offset, person.bbox.y_offset, person.bbox.width, person.bbox.height) == (
        0,
        10,
        4,
        2,
    )
    assert (road.id, road.label, road.is_thing) == (10, "road", False)


def test_markers_place_things_with_a_position_and_the_status() -> None:
    result = frame_result()
    msg = roundtrip(outputs.markers(result, CONTEXT))
    delete, sphere, text, status = msg.markers
    assert delete.action == outputs.MARKER_DELETEALL and delete.ns == "panoptic"
    assert (sphere.type, sphere.id, sphere.pose.position.z) == (outputs.MARKER_SPHERE, 6, 8.0)
    assert sphere.lifetime.nanosec == 500_000_000 and sphere.pose.orientation.w == 1.0
    assert (text.type, text.id, text.text) == (outputs.MARKER_TEXT, 7, "car 3 (8.0 m)")
    assert (sphere.color.r, sphere.color.g, sphere.color.b) == pytest.approx(
        tuple(v / 255 for v in SYN.by_id(7).color)
    )
    assert (status.ns, status.text) == ("panoptic_status", "status line")


def test_categories_and_back() -> None:
    label_set = load_label_set("cityscapes")
    msg = roundtrip(outputs.categories(header_message(5, "f"), OutputContext(label_set, 1000)))
    assert stamps.stamp_ns(msg) == 5 and msg.header.frame_id == "f"
    assert (msg.label_set, msg.void_id, msg.label_divisor) == ("cityscapes", 255, 1000)
    assert [(c.id, c.name, c.is_thing, (c.r, c.g, c.b)) for c in msg.categories] == [
        (c.id, c.name, c.is_thing, c.color) for c in label_set.categories
    ]
    assert load_label_set("cityscapes").from_message(msg) == label_set


def test_vision_msgs_descriptions_report_things_and_the_threshold_in_force() -> None:
    detections = outputs.detections(frame_result(), CONTEXT)
    (car,) = detections.fields["detections"]  # the lost person (area 0) and stuff are left out
    assert car.fields["id"] == "3" and car.get("bbox", "size_x") == 4.0
    assert car.get("bbox", "center", "position", "x") == 4.0
    (hypothesis,) = car.fields["results"]
    assert (
        hypothesis.get("hypothesis", "class_id") == "7"
        and hypothesis.get("pose", "pose", "position", "z") == 8.0
    )
    info = outputs.label_info(header_message(0, ""), CONTEXT)
    assert info.fields["threshold"] == 0.25 and len(info.fields["class_map"]) == len(SYN)
