"""Our messages and a full-HD image cross a process boundary over real DDS (Fast DDS, loopback)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from tests.conftest import REPO
from tests.ros.samples import SAMPLES, field_differences

QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RECEIVE_BOUND_S = 60.0  # an upper bound against hanging, not a timing check


@pytest.fixture(scope="module")
def received() -> dict[str, object]:
    """Start the peer process, subscribe to all its topics, and collect one message per topic."""
    peer = subprocess.Popen(
        [sys.executable, "-m", "tests.ros.dds_peer"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = peer.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "READY", f"peer did not start: {line!r} {peer.stderr.read()}"  # type: ignore[union-attr]
        context = rclpy.Context()
        rclpy.init(context=context)
        try:
            node = rclpy.create_node("panoptic_dds_test", context=context)
            got: dict[str, object] = {}
            for topic, (msg_type, _) in SAMPLES.items():
                node.create_subscription(msg_type, topic, lambda msg, t=topic: got.setdefault(t, msg), QOS)
            executor = rclpy.executors.SingleThreadedExecutor(context=context)
            executor.add_node(node)
            deadline = time.monotonic() + RECEIVE_BOUND_S
            while len(got) < len(SAMPLES) and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
            executor.shutdown()
            node.destroy_node()
        finally:
            rclpy.shutdown(context=context)
        return got
    finally:
        peer.stdin.close()  # type: ignore[union-attr]
        peer.wait(timeout=30)


def test_peer_is_another_process(received: dict[str, object]) -> None:
    # The fixture's Popen is the other process; here we only check everything arrived.
    missing = sorted(set(SAMPLES) - set(received))
    assert not missing, f"never received over DDS: {missing}"


@pytest.mark.parametrize("topic", sorted(t for t in SAMPLES if "image" not in t))
def test_message_fields_survive_dds(received: dict[str, object], topic: str) -> None:
    msg_type, build = SAMPLES[topic]
    assert topic in received, f"{topic} not received"
    got = received[topic]
    assert isinstance(got, msg_type)
    diffs = field_differences(build(), got)
    assert not diffs, "\n".join(diffs)


def test_full_hd_bgr8_image_survives_dds(received: dict[str, object]) -> None:
    _, build = SAMPLES["sample/image_1080p"]
    sent = build()
    got = received["sample/image_1080p"]
    assert (got.height, got.width, got.encoding, got.step) == (1080, 1920, "bgr8", 1920 * 3)
    assert got.header == sent.header
    assert len(got.data) == 1920 * 1080 * 3
    assert np.array_equal(np.frombuffer(got.data, np.uint8), np.frombuffer(sent.data, np.uint8))
