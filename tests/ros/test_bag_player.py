"""``bag play`` over real DDS: the player in another process publishes a bag into this one.

Checked: every message arrives, in order, with its content and original stamps; corrupt records are
skipped; the schedule follows the bag times scaled by the rate (a lower bound, never a timed
upper bound); ``--loop`` replays the bag's stamps; the wait for subscribers fails clearly; and the
``rosbags`` type store serializes our messages exactly as the generated rclpy types do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image

from panoptic_ros.cli import main
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.data.bag_io import BagMessage, read_messages
from panoptic_ros.data.bag_types import (
    CATEGORY_ARRAY_TYPE,
    INSTANCE_ARRAY_TYPE,
    MESSAGE_NAMES,
    typestore,
)
from panoptic_ros.msg import CategoryArray, PanopticInstanceArray
from panoptic_ros.ros.bag_common import BagRosError
from panoptic_ros.ros.bag_player import Published, play, publish_offset_s
from tests.conftest import REPO
from tests.data.bag_samples import category_array, frame_result, instance_array
from tests.ros.bag_fixtures import CATEGORIES, CORRUPT, FRAMES, INSTANCES, write_test_bag

RECEIVE_BOUND_S = 90.0  # against hanging only, not a timing check
SUBSCRIBED = {
    "/cam0/image_raw": Image,
    "/cam1/image_raw": Image,
    "/cam0/depth/image_raw": Image,
    "/cam0/camera_info": CameraInfo,
    "/cam1/camera_info": CameraInfo,
    INSTANCES: PanopticInstanceArray,
    CATEGORIES: CategoryArray,
}


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_bag(tmp_path_factory.mktemp("player"))


@pytest.fixture(scope="module")
def source(bag: Path) -> dict[str, list[BagMessage]]:
    by_topic: dict[str, list[BagMessage]] = defaultdict(list)
    for m in read_messages(bag):
        if m.msg is not None:
            by_topic[m.topic].append(m)
    return by_topic


@pytest.fixture(scope="module")
def received(bag: Path) -> tuple[dict[str, list[object]], subprocess.CompletedProcess[str]]:
    """Subscribe here, run ``panoptic-ros bag play`` in another process, collect what arrives."""
    context = rclpy.Context()
    rclpy.init(context=context)
    got: dict[str, list[object]] = defaultdict(list)
    try:
        node = rclpy.create_node("bag_player_test", context=context)
        for topic, msg_type in SUBSCRIBED.items():
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            if topic == CATEGORIES:
                qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
            node.create_subscription(msg_type, topic, lambda msg, t=topic: got[t].append(msg), qos)
        player = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panoptic_ros.cli",
                "bag",
                "play",
                str(bag),
                "--rate",
                "2",
                "--wait",
                "60",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + RECEIVE_BOUND_S
        expected = FRAMES * len(SUBSCRIBED) - 1 - (FRAMES - 1)  # categories once, one corrupt info
        while sum(len(v) for v in got.values()) < expected and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        stdout, stderr = player.communicate(timeout=RECEIVE_BOUND_S)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return got, subprocess.CompletedProcess(player.args, player.returncode, stdout, stderr)


def _stamp(msg: object) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec  # type: ignore[attr-defined]


def test_player_process_succeeds_and_reports_the_corrupt_record(
    received: tuple[dict[str, list[object]], subprocess.CompletedProcess[str]],
) -> None:
    _, process = received
    assert process.returncode == 0, process.stderr[-3000:]
    # 2 cameras x 5 topics x 6 frames - 1 corrupt + 6 instances + 1 categories
    assert "published 66 messages on 12 topics in 1 pass(es), 1 malformed skipped" in process.stdout


def test_every_message_arrives_in_order_with_its_stamp(
    received: tuple[dict[str, list[object]], subprocess.CompletedProcess[str]],
    source: dict[str, list[BagMessage]],
) -> None:
    got, _ = received
    for topic in SUBSCRIBED:
        expected = [m.stamp_ns for m in source[topic]]
        assert [_stamp(m) for m in got[topic]] == expected, topic
    assert len(got["/cam1/camera_info"]) == FRAMES - 1 == len(source[CORRUPT[0]])
    assert len(got[CATEGORIES]) == 1


def test_content_is_the_bags(
    received: tuple[dict[str, list[object]], subprocess.CompletedProcess[str]],
    source: dict[str, list[BagMessage]],
) -> None:
    got, _ = received
    for topic in ("/cam0/image_raw", "/cam1/image_raw", "/cam0/depth/image_raw"):
        for sent, msg in zip(source[topic], got[topic], strict=True):
            assert (msg.height, msg.width, msg.encoding, msg.step) == (  # type: ignore[attr-defined]
                sent.msg.height,
                sent.msg.width,
                sent.msg.encoding,
                sent.msg.step,
            )
            assert msg.header.frame_id == sent.msg.header.frame_id  # type: ignore[attr-defined]
            assert np.array_equal(np.frombuffer(msg.data, np.uint8), sent.msg.data)  # type: ignore[attr-defined]
    info = got["/cam0/camera_info"][0]
    assert np.allclose(info.k, source["/cam0/camera_info"][0].msg.k)  # type: ignore[attr-defined]
    for sent, msg in zip(source[INSTANCES], got[INSTANCES], strict=True):
        assert [(x.id, x.label, x.state, x.bbox.width, x.position.z) for x in msg.instances] == [  # type: ignore[attr-defined]
            (x.id, x.label, x.state, x.bbox.width, x.position.z) for x in sent.msg.instances
        ]
    categories = got[CATEGORIES][0]
    assert categories.label_set == "synthetic" and len(categories.categories) == 8  # type: ignore[attr-defined]


def test_schedule_loop_and_stamps_in_process(bag: Path, source: dict[str, list[BagMessage]]) -> None:
    """No subscriber needed (``wait_s=0``): what is checked is when and what the player publishes."""
    events: list[tuple[float, Published]] = []
    stop = threading.Event()
    rate = 4.0

    def on_publish(p: Published) -> None:
        events.append((time.monotonic(), p))
        if p.loop == 2:
            stop.set()

    report = play(
        bag, rate=rate, loop=True, topics=["/cam0/image_raw", "/cam1/camera_info"], on_publish=on_publish,
        wait_s=0, stop=stop,
    )  # fmt: skip
    assert report.passes >= 2 and stop.is_set()
    assert report.malformed["/cam1/camera_info"] >= 2  # skipped again in every pass
    for loop in (0, 1):
        this = [(t, p) for t, p in events if p.loop == loop]
        assert [p.stamp_ns for _, p in this if p.topic == "/cam0/image_raw"] == [
            m.stamp_ns for m in source["/cam0/image_raw"]
        ]  # a restart replays the bag's own stamps
        t0, first = this[0]
        for t, p in this:  # never earlier than the schedule says (sleeping never returns early)
            assert t - t0 >= publish_offset_s(p.log_time_ns, first.log_time_ns, rate) - 1e-3
    # the schedule itself: bag-time gaps divided by the rate
    assert publish_offset_s(1_500_000_000, 1_000_000_000, 2.0) == pytest.approx(0.25)
    assert publish_offset_s(1_500_000_000, 1_000_000_000, 0.5) == pytest.approx(1.0)
    with pytest.raises(Exception, match="rate=0"):
        play(bag, rate=0)


def test_waiting_for_subscribers_times_out_clearly(bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BagRosError, match=r"no subscriber matched \['/cam1/image_raw'\] within 0.5 s"):
        play(bag, topics=["/cam1/image_raw"], wait_s=0.5)
    assert main(["bag", "play", str(bag), "--topics", "/nope"]) == 2
    assert "has no topic ['/nope']" in capsys.readouterr().err
    assert (
        main(
            [
                "bag",
                "play",
                str(bag),
                "--wait-for",
                "/cam0/ground_truth/semantic",
                "--topics",
                "/cam0/image_raw",
            ]
        )
        == 2
    )
    assert "are not played" in capsys.readouterr().err


def _type_hash(name: str) -> str:
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix) / "share" / "panoptic_ros" / "msg" / f"{name}.json"
        if path.is_file():
            hashes = json.loads(path.read_text())["type_hashes"]
            return next(h["hash_string"] for h in hashes if h["type_name"] == f"panoptic_ros/msg/{name}")
    raise AssertionError(f"no generated {name}.json under AMENT_PREFIX_PATH (run make setup)")


@pytest.mark.parametrize("name", MESSAGE_NAMES)
def test_rosbags_type_hash_is_the_generated_one(name: str) -> None:
    assert typestore().hash_rihs01(f"panoptic_ros/msg/{name}") == _type_hash(name)


def test_rosbags_cdr_is_the_generated_types_cdr() -> None:
    store = typestore()
    labels = load_label_set("synthetic")
    result = frame_result()
    instances = instance_array(result, labels)
    raw = bytes(store.serialize_cdr(instances, INSTANCE_ARRAY_TYPE))
    msg = deserialize_message(raw, PanopticInstanceArray)
    assert (msg.header.stamp.sec, msg.header.frame_id, msg.height, msg.width) == (
        instances.header.stamp.sec, instances.header.frame_id, instances.height, instances.width,
    )  # fmt: skip
    fields = (
        "id",
        "category_id",
        "label",
        "is_thing",
        "score",
        "state",
        "area",
        "centroid_x",
        "velocity_x",
        "age",
    )
    for ours, theirs in zip(instances.instances, msg.instances, strict=True):
        assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]
        assert (theirs.bbox.x_offset, theirs.bbox.height) == (ours.bbox.x_offset, ours.bbox.height)
        assert (theirs.position.z, theirs.position_valid) == (ours.position.z, ours.position_valid)
    # and back (bytes may differ in alignment padding, which CDR leaves unspecified)
    assert store.deserialize_cdr(bytes(serialize_message(msg)), INSTANCE_ARRAY_TYPE) == instances
    categories = category_array(labels, result.stamp_ns, result.frame_id)
    raw = bytes(store.serialize_cdr(categories, CATEGORY_ARRAY_TYPE))
    msg = deserialize_message(raw, CategoryArray)
    assert [(c.id, c.name, c.r) for c in msg.categories] == [
        (c.id, c.name, c.r) for c in categories.categories
    ]
    assert store.deserialize_cdr(bytes(serialize_message(msg)), CATEGORY_ARRAY_TYPE) == categories
