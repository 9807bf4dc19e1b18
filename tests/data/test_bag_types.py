"""Our message types in the rosbags type store, and the bag writer's wrapper of message trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core import stamps
from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.core.image_encode import array_to_image
from panoptic_ros.core.messages import Message, header_message, image_message
from panoptic_ros.data import bag_types
from panoptic_ros.data.bag_types import IMAGE_TYPE, INSTANCE_TYPE, BagError, msg_dir, to_rosbags, typestore
from panoptic_ros.tracking import TrackState
from tests.conftest import REPO


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


def test_to_rosbags_fills_left_out_fields_with_the_definitions_defaults() -> None:
    marker = to_rosbags(
        Message("visualization_msgs/msg/Marker", {"header": header_message(5, "cam"), "ns": "x"})
    )
    assert (marker.header.stamp.sec, marker.header.stamp.nanosec, marker.header.frame_id) == (0, 5, "cam")
    assert (marker.ns, marker.id, marker.text, marker.frame_locked) == ("x", 0, "", False)
    assert (
        marker.pose.orientation.w == 1.0 and marker.pose.orientation.x == 0.0
    )  # Quaternion's w defaults to 1
    assert marker.points == [] and marker.texture.data.dtype == np.uint8 and marker.texture.data.size == 0
    info = to_rosbags(Message("sensor_msgs/msg/CameraInfo", {"k": [1.0, 0, 2, 0, 1, 3, 0, 0, 1]}))
    assert info.k.dtype == np.float64 and info.k.tolist() == [1.0, 0, 2, 0, 1, 3, 0, 0, 1]
    assert info.d.size == 0 and info.r.shape == (9,)
    status = to_rosbags(Message("diagnostic_msgs/msg/DiagnosticStatus", {"level": b"\x01", "name": "n"}))
    assert status.level == 1


def test_to_rosbags_round_trips_an_image() -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    image = to_rosbags(image_message(array_to_image(pixels, "mono16"), header_message(7_000_000_001, "f")))
    msg = _roundtrip(image, IMAGE_TYPE)
    assert stamps.stamp_ns(msg) == 7_000_000_001 and msg.header.frame_id == "f"
    assert np.array_equal(image_to_array(msg, native=True), pixels)


def test_unknown_type_is_a_bag_error() -> None:
    with pytest.raises(BagError, match="no_pkg/msg/Nothing"):
        bag_types.message_class("no_pkg/msg/Nothing")
