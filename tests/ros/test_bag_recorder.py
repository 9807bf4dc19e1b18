"""``bag record`` over real DDS: the player in another process publishes a bag, the recorder here
writes what arrives into a new bag, which reads back like the original."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from panoptic_ros.cli import main
from panoptic_ros.data.bag_io import BagMessage, read_messages, topic_types
from panoptic_ros.ros.bag_common import BagRosError
from panoptic_ros.ros.bag_recorder import RecordReport, graph_qos, parse_topic, record
from tests.conftest import REPO
from tests.ros.bag_fixtures import CATEGORIES, FRAMES, INSTANCES, write_test_bag

BOUND_S = 90.0  # against hanging only, not a timing check
TOPICS = {
    "/cam0/image_raw": "sensor_msgs/msg/Image",
    "/cam1/camera_info": "sensor_msgs/msg/CameraInfo",
    INSTANCES: "panoptic_ros/msg/PanopticInstanceArray",
    CATEGORIES: "panoptic_ros/msg/CategoryArray",
}
EXPECTED = {"/cam0/image_raw": FRAMES, "/cam1/camera_info": FRAMES - 1, INSTANCES: FRAMES, CATEGORIES: 1}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, RecordReport, int, int]:
    root = tmp_path_factory.mktemp("recorder")
    bag = write_test_bag(root)
    out = root / "recorded"
    stop = threading.Event()
    counts: dict[str, int] = defaultdict(int)

    def on_message(topic: str, _: int) -> None:
        counts[topic] += 1
        if all(counts[t] >= n for t, n in EXPECTED.items()):
            stop.set()

    # two topics with their type, two looked up on the graph (the player's publishers)
    specs = [
        "/cam0/image_raw=sensor_msgs/msg/Image",
        "/cam1/camera_info=sensor_msgs/CameraInfo",
        INSTANCES,
        CATEGORIES,
    ]
    result: list[RecordReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(
                record(out, specs, stop=stop, on_message=on_message, discover_s=BOUND_S, duration=BOUND_S)
            )
        except BaseException as err:  # handed to the test thread
            errors.append(err)

    started = time.time_ns()
    thread = threading.Thread(target=run)
    thread.start()
    player = subprocess.run(
        [sys.executable, "-m", "panoptic_ros.cli", "bag", "play", str(bag), "--rate", "2", "--wait", "60",
         "--topics", *TOPICS, "--wait-for", *TOPICS],
        cwd=REPO, capture_output=True, text=True, timeout=BOUND_S, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    stop.wait(BOUND_S)
    stop.set()
    thread.join(BOUND_S)
    finished = time.time_ns()
    assert not errors, errors
    assert player.returncode == 0, player.stderr[-3000:]
    return bag, out, result[0], started, finished


def test_every_message_recorded_with_its_type(recorded: tuple[Path, Path, RecordReport, int, int]) -> None:
    _, out, report, _, _ = recorded
    assert report.counts == EXPECTED
    assert topic_types(out) == TOPICS
    assert f"recorded {sum(EXPECTED.values())} messages on 4 topics" in report.summary()


def test_recorded_content_stamps_and_receive_times(
    recorded: tuple[Path, Path, RecordReport, int, int],
) -> None:
    bag, out, _, started, finished = recorded
    source: dict[str, list[BagMessage]] = defaultdict(list)
    for m in read_messages(bag, list(TOPICS)):
        if m.msg is not None:
            source[m.topic].append(m)
    got: dict[str, list[BagMessage]] = defaultdict(list)
    for m in read_messages(out):
        got[m.topic].append(m)
    for topic in TOPICS:
        assert [m.stamp_ns for m in got[topic]] == [m.stamp_ns for m in source[topic]], topic
        times = [m.log_time_ns for m in got[topic]]
        assert times == sorted(times) and started <= times[0] and times[-1] <= finished
    for sent, m in zip(source["/cam0/image_raw"], got["/cam0/image_raw"], strict=True):
        assert np.array_equal(m.msg.data, sent.msg.data) and m.msg.header == sent.msg.header
    for sent, m in zip(source["/cam1/camera_info"], got["/cam1/camera_info"], strict=True):
        assert np.array_equal(m.msg.k, sent.msg.k) and m.msg.header == sent.msg.header
    assert [m.msg for m in got[INSTANCES]] == [m.msg for m in source[INSTANCES]]
    assert got[CATEGORIES][0].msg == source[CATEGORIES][0].msg


@contextlib.contextmanager
def _recorder_and_node(
    out: Path, specs: list[str], stop: threading.Event, name: str, **kwargs: object
) -> Iterator[Node]:
    """``record`` on a thread of its own (until ``stop``), subscribed before this yields, and a node
    of another context to publish with; both torn down at the end, the recorder's error raised here."""
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            record(out, specs, stop=stop, ready=ready, duration=BOUND_S, **kwargs)  # type: ignore[arg-type]
        except BaseException as err:  # handed to the test thread
            errors.append(err)
            ready.set()

    context = rclpy.Context()
    rclpy.init(context=context)
    thread = threading.Thread(target=run)
    try:
        thread.start()
        assert ready.wait(BOUND_S) and not errors, f"the recorder did not subscribe: {errors}"
        node = rclpy.create_node(name, context=context)
        yield node
        node.destroy_node()
    finally:
        stop.set()
        thread.join(BOUND_S)
        rclpy.shutdown(context=context)
    assert not thread.is_alive(), "the recorder did not stop"
    assert not errors, errors


def _matched(*publishers: Publisher) -> None:
    """Wait until the recorder's subscriptions matched ``publishers`` (bounded against hanging)."""
    deadline = time.monotonic() + BOUND_S
    while any(p.get_subscription_count() == 0 for p in publishers) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_bag_time_is_when_dds_received_not_when_a_busy_recorder_got_to_it(tmp_path: Path) -> None:
    """Two messages published back to back while the recorder is busy with the first for a second: the
    second's bag time is its arrival (as rosbag2 records), so latencies measured from a bag do not
    include the recorder's own backlog."""
    stop = threading.Event()
    handled: list[int] = []

    def on_message(topic: str, _: int) -> None:
        handled.append(time.time_ns())
        if len(handled) == 1:
            time.sleep(1.0)  # busy: the second message waits in the middleware
        else:
            stop.set()

    out = tmp_path / "busy"
    specs = ["/busy_test=std_msgs/msg/String"]
    with _recorder_and_node(out, specs, stop, "busy_recorder_test", on_message=on_message) as node:
        pub = node.create_publisher(
            String, "/busy_test", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        _matched(pub)
        pub.publish(String(data="first"))
        pub.publish(String(data="second"))
        stop.wait(BOUND_S)
    first, second = (m.log_time_ns for m in read_messages(out))
    assert handled[1] - handled[0] >= 1_000_000_000  # the recorder got to the second a second later
    assert second - first < 500_000_000  # ... but it arrived right after the first


def test_subscription_qos_follows_the_publishers() -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("recorder_qos_test", context=context)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        node.create_publisher(String, "/qos_test/latched", latched)
        node.create_publisher(
            String, "/qos_test/lossy", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        deadline = time.monotonic() + BOUND_S
        while not node.get_publishers_info_by_topic("/qos_test/lossy") and time.monotonic() < deadline:
            time.sleep(0.05)
        qos = graph_qos(node, "/qos_test/latched")
        assert (qos.durability, qos.reliability) == (
            DurabilityPolicy.TRANSIENT_LOCAL,
            ReliabilityPolicy.RELIABLE,
        )
        qos = graph_qos(node, "/qos_test/lossy")
        assert (qos.durability, qos.reliability) == (DurabilityPolicy.VOLATILE, ReliabilityPolicy.BEST_EFFORT)
        qos = graph_qos(node, "/qos_test/nobody")
        assert (qos.durability, qos.reliability) == (DurabilityPolicy.VOLATILE, ReliabilityPolicy.RELIABLE)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_cli_duration_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "empty"
    assert (
        main(["bag", "record", str(out), "--topics", "/rec_test=std_msgs/msg/String", "--duration", "0.3"])
        == 0
    )
    assert "recorded 0 messages" in capsys.readouterr().out
    assert topic_types(out) == {"/rec_test": "std_msgs/msg/String"}  # declared although empty
    with pytest.raises(BagRosError, match=r"topics \['/never_published'\] did not appear"):
        record(tmp_path / "never", ["/never_published"], discover_s=0.3)
    with pytest.raises(BagRosError, match="not importable"):
        record(tmp_path / "pkg", ["/x=no_such_pkg/msg/Thing"], duration=0.1)
    assert parse_topic("/a=std_msgs/String") == ("/a", "std_msgs/msg/String")
    assert parse_topic(" /a ") == ("/a", None)
    assert main(["bag", "record", str(tmp_path / "bad"), "--topics", "/a=String", "--duration", "1"]) == 2
    assert "package/msg/Name" in capsys.readouterr().err


def test_a_burst_on_several_topics_is_recorded_whole_and_in_order(tmp_path: Path) -> None:
    """Messages published back to back on two topics, faster than the recorder wakes: every one is
    taken, each topic's in publishing order."""
    stop = threading.Event()
    counts: dict[str, int] = defaultdict(int)
    sent = {"/burst_test/a": 60, "/burst_test/b": 25}

    def on_message(topic: str, _: int) -> None:
        counts[topic] += 1
        if all(counts[t] >= n for t, n in sent.items()):
            stop.set()

    out = tmp_path / "burst"
    specs = [f"{t}=std_msgs/msg/String" for t in sent]
    with _recorder_and_node(out, specs, stop, "burst_recorder_test", on_message=on_message) as node:
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {t: node.create_publisher(String, t, reliable) for t in sent}
        _matched(*pubs.values())
        # no executor serves the recorder's node, so it offers no services a tool would wait on
        # (its subscriptions are discovered by now, its services would be too)
        time.sleep(1.0)
        assert node.get_service_names_and_types_by_node("panoptic_bag_recorder", "/") == []
        for k in range(max(sent.values())):
            for topic, n in sent.items():
                if k < n:
                    pubs[topic].publish(String(data=f"{topic} {k}"))
        stop.wait(BOUND_S)
    got: dict[str, list[str]] = defaultdict(list)
    for message in read_messages(out):
        got[message.topic].append(message.msg.data)
    assert got == {t: [f"{t} {k}" for k in range(n)] for t, n in sent.items()}


def test_an_incompatible_publisher_is_reported(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A best-effort publisher appearing after the recorder subscribed reliably (nobody published when
    it started) cannot reach it; the subscription's QoS event handler says so, as under an executor."""
    stop = threading.Event()
    seen = ""
    specs = ["/incompatible_test=std_msgs/msg/String"]
    with _recorder_and_node(tmp_path / "incompatible", specs, stop, "incompatible_recorder_test") as node:
        node.create_publisher(
            String, "/incompatible_test", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        deadline = time.monotonic() + BOUND_S
        while "offering incompatible QoS" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
            seen += capfd.readouterr().err
    # the subscription's handler ("New publisher discovered ..., offering incompatible QoS"), not the
    # publisher's: this test's node is never spun
    assert "/incompatible_test" in seen and "offering incompatible QoS" in seen and "RELIABILITY" in seen, (
        seen[-2000:]
    )
