"""Our message types in the rosbags type store, and the builders of output messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.topics import output_topic
from panoptic_ros.data import bag_types
from panoptic_ros.data.bag_types import (
    CATEGORY_ARRAY_TYPE,
    IMAGE_TYPE,
    INSTANCE_ARRAY_TYPE,
    INSTANCE_TYPE,
    category_array,
    copy_header,
    instance_array,
    instance_ids_image,
    label_set_from_categories,
    msg_dir,
    overlay_image,
    result_messages,
    semantic_image,
    stamp_ns_of,
    typestore,
)
from panoptic_ros.data.bags import BagError
from panoptic_ros.tracking import TrackState
from tests.conftest import REPO
from tests.data.bag_samples import HEIGHT, WIDTH, frame_result


def _roundtrip(msg: object, msgtype: str) -> object:
    store = typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


def _msg_fields(name: str) -> list[str]:
    """Field names of a .msg file in order (constants and comments left out)."""
    fields = []
    for raw_line in (REPO / "msg" / f"{name}.msg").read_text().splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if line and "=" not in line:
            fields.append(line.split()[1])
    return fields


@pytest.mark.parametrize("name", bag_types.MESSAGE_NAMES)
def test_registered_types_have_the_msg_fields_in_order(name: str) -> None:
    cls = typestore().types[f"panoptic_ros/msg/{name}"]
    fields = [f for f in cls.__dataclass_fields__ if not f.isupper() and f != "__msgtype__"]
    assert fields == _msg_fields(name)


def test_state_constants_match_the_tracker() -> None:
    cls = typestore().types[INSTANCE_TYPE]
    assert (cls.STATE_TENTATIVE, cls.STATE_CONFIRMED, cls.STATE_LOST) == (
        TrackState.TENTATIVE,
        TrackState.CONFIRMED,
        TrackState.LOST,
    )


def test_typestore_is_cached_and_msg_dir_is_the_checkout() -> None:
    assert typestore() is typestore()
    assert msg_dir() == REPO / "msg"


def test_msg_dir_missing_is_a_clear_bag_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import panoptic_ros.resources

    monkeypatch.setattr(panoptic_ros.resources, "share_candidates", lambda: [tmp_path])
    with pytest.raises(BagError, match=r"cannot find panoptic_ros's message definitions.*PANOPTIC_ROS_SHARE"):
        msg_dir()


def test_msg_dir_finds_an_installed_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import panoptic_ros.resources

    share = tmp_path / "share" / "panoptic_ros"
    (share / "msg").mkdir(parents=True)
    for name in bag_types.MESSAGE_NAMES:
        (share / "msg" / f"{name}.msg").write_text((REPO / "msg" / f"{name}.msg").read_text())
    monkeypatch.setattr(panoptic_ros.resources, "share_candidates", lambda: [tmp_path / "nothing", share])
    assert msg_dir() == share / "msg"


def test_images_copy_the_header_and_hold_the_maps() -> None:
    result = frame_result()
    semantic = _roundtrip(semantic_image(result), IMAGE_TYPE)
    ids = _roundtrip(instance_ids_image(result), IMAGE_TYPE)
    overlay = _roundtrip(overlay_image(result), IMAGE_TYPE)
    for msg in (semantic, ids, overlay):
        assert stamp_ns_of(msg) == result.stamp_ns
        assert msg.header.frame_id == "cam0_optical_frame"
        assert (msg.height, msg.width) == (HEIGHT, WIDTH)
    assert (semantic.encoding, semantic.step) == ("mono8", WIDTH)
    assert np.array_equal(image_to_array(semantic), result.semantic)
    assert (ids.encoding, ids.step) == ("32SC1", 4 * WIDTH)
    assert np.array_equal(image_to_array(ids, native=True), result.instance_ids)
    assert overlay.encoding == "bgr8"
    assert np.array_equal(image_to_array(overlay), result.overlay_bgr)


def test_semantic_is_mono16_for_uint16_maps_and_overlay_is_optional() -> None:
    result = frame_result(semantic_dtype=np.uint16, overlay=False)
    semantic = _roundtrip(semantic_image(result), IMAGE_TYPE)
    assert semantic.encoding == "mono16"
    assert np.array_equal(image_to_array(semantic, native=True), result.semantic)
    assert image_to_array(semantic, native=True)[0, 0] == 65535
    assert overlay_image(result) is None
    label_set = load_label_set("synthetic")
    topics = {
        name: output_topic("/cam0/image_raw", name) for name in ("semantic", "instance_ids", "instances")
    }
    messages = list(result_messages(result, label_set, {**topics, "overlay": "/o"}))
    assert [m.topic for m in messages] == [topics["semantic"], topics["instance_ids"], topics["instances"]]
    with_overlay = list(result_messages(frame_result(), label_set, {**topics, "overlay": "/o"}))
    assert [m.topic for m in with_overlay][-1] == "/o"
    assert (
        list(result_messages(frame_result(), label_set, {**topics, "overlay": "/o"}, overlay=False))[-1].topic
        == (topics["instances"])
    )


def test_instance_array_fields() -> None:
    result = frame_result()
    label_set = load_label_set("synthetic")
    msg = _roundtrip(instance_array(result, label_set), INSTANCE_ARRAY_TYPE)
    assert stamp_ns_of(msg) == result.stamp_ns and msg.header.frame_id == "cam0_optical_frame"
    assert (msg.height, msg.width) == (HEIGHT, WIDTH)
    car, person, road = msg.instances
    assert (car.id, car.category_id, car.label, car.is_thing, car.state) == (3, 7, "car", True, 1)
    assert (car.score, car.area, car.age) == (0.75, 20, 4)
    assert (car.bbox.x_offset, car.bbox.y_offset, car.bbox.width, car.bbox.height) == (2, 3, 4, 5)
    assert not car.bbox.do_rectify
    assert (car.centroid_x, car.centroid_y, car.velocity_x, car.velocity_y) == (3.5, 5.0, 12.5, -2.0)
    assert (car.position.x, car.position.y, car.position.z, car.position_valid) == (0.5, 1.25, 8.0, True)
    # a lost track's predicted box (-4, 10, 8, 6) is clipped to the 16 x 12 image
    assert (person.label, person.state, person.area, person.position_valid) == ("person", 2, 0, False)
    assert (person.bbox.x_offset, person.bbox.y_offset, person.bbox.width, person.bbox.height) == (
        0,
        10,
        4,
        2,
    )
    assert (road.id, road.label, road.is_thing) == (10, "road", False)


def test_category_array_values_and_back() -> None:
    label_set = load_label_set("cityscapes")
    result = frame_result()
    msg = _roundtrip(category_array(label_set, result.header, label_divisor=1000), CATEGORY_ARRAY_TYPE)
    assert stamp_ns_of(msg) == result.stamp_ns and msg.header.frame_id == "cam0_optical_frame"
    assert (msg.label_set, msg.void_id, msg.label_divisor) == ("cityscapes", 255, 1000)
    assert [(c.id, c.name, c.is_thing, (c.r, c.g, c.b)) for c in msg.categories] == [
        (c.id, c.name, c.is_thing, c.color) for c in label_set.categories
    ]
    assert label_set_from_categories(msg) == label_set
    coco = category_array(load_label_set("coco_panoptic"))
    assert coco.void_id == load_label_set("coco_panoptic").void_semantic
    assert stamp_ns_of(coco) == 0 and coco.header.frame_id == ""


def test_copy_header_reads_any_header_like_object() -> None:
    class Stamp:
        sec, nanosec = 12, 345

    class Header:
        stamp, frame_id = Stamp(), "x"

    header = copy_header(Header())
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (12, 345, "x")
    fallback = copy_header(None, 3_000_000_007)
    assert (fallback.stamp.sec, fallback.stamp.nanosec, fallback.frame_id) == (3, 7, "")


def test_unknown_type_is_a_bag_error() -> None:
    with pytest.raises(BagError, match="no_pkg/msg/Nothing"):
        bag_types.message_class("no_pkg/msg/Nothing")
