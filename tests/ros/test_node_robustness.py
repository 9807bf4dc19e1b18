"""Never silently wrong, in the node's own process over real DDS: huge and bomb images refused with
bounded memory, damaged JPEGs counted as corrupt, bursts of malformed messages that never displace a
good frame, a WARN level that follows a recent window, events that are not failures, the final counts
at shutdown that balance, bad parameters refused with one line, and a worker fault that takes the
node down non-zero with ERROR diagnostics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image

from panoptic_ros.core.image_encode import array_to_compressed
from panoptic_ros.data.synthetic import generate
from panoptic_ros.ros.conversions import array_to_image_msg, compressed_msg
from panoptic_ros.runtime.stats import NodeStats
from tests.conftest import REPO
from tests.core.test_payload import _jpeg, declared, huge_png
from tests.ros.node_harness import NodeProcess, Peer, header

NODE = "panoptic_robust"
RAW = "/rob0/image_raw"
JPEG = "/rob1/image_raw/compressed"
SIZE = (120, 160)


class Clock:
    stamp = 1_750_000_000_000_000_000

    @classmethod
    def next(cls) -> int:
        cls.stamp += 100_000_000
        return cls.stamp


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return next(generate(1, seed=5, height=SIZE[0], width=SIZE[1])).image


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Peer]]:
    node = NodeProcess(
        tmp_path_factory.mktemp("robust"),
        {
            "image_topics": [RAW, JPEG],
            "backend": "onnxruntime",
            "device": "cpu",
            "warmup_frames": 1,
            "diagnostics_period": 0.2,
            "diagnostics_window": 1.5,
            "log_throttle": 0.0,
            "qos.mode": "explicit",
            "qos.reliability": "reliable",
            "qos.depth": 50,
        },
        name=NODE,
    )
    peer = Peer("panoptic_robust_peer")
    try:
        for topic in ("/rob0/panoptic/semantic", "/rob1/panoptic/semantic"):
            peer.listen(topic, Image)
        peer.listen("/diagnostics", DiagnosticArray)
        peer.publisher(RAW, Image)
        peer.publisher(JPEG, CompressedImage)
        peer.wait_for(lambda: all(p.get_subscription_count() for p in peer.publishers.values()), "the node")
        yield node, peer
    finally:
        peer.close()
        node.stop()


def status(peer: Peer, camera: str) -> tuple[int, str, dict[str, str]]:
    """Level, message and values of the newest /diagnostics status of ``camera``."""
    for msg in reversed(peer.messages("/diagnostics")):
        for s in msg.status:
            if s.name == f"{NODE}: {camera}":
                return ord(s.level), s.message, {kv.key: kv.value for kv in s.values}
    return -1, "", {}


def wait_count(peer: Peer, camera: str, key: str, at_least: int) -> dict[str, str]:
    peer.wait_for(
        lambda: int(status(peer, camera)[2].get(key, -1)) >= at_least, f"{camera} {key} >= {at_least}"
    )
    return status(peer, camera)[2]


def serve_good(peer: Peer, image: np.ndarray) -> None:
    stamp = Clock.next()
    peer.publish(RAW, array_to_image_msg(image, "rgb8", header(stamp)))
    peer.wait_stamp("/rob0/panoptic/semantic", stamp)


def send_jpeg(peer: Peer, data: bytes | np.ndarray) -> int:
    stamp = Clock.next()
    fields = array_to_compressed(np.zeros((8, 8, 3), np.uint8), codec="jpeg")
    payload = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    peer.publish(JPEG, compressed_msg(fields._replace(data=payload), header(stamp)))
    return stamp


def test_huge_images_are_refused_with_bounded_memory(
    running: tuple[NodeProcess, Peer], image: np.ndarray
) -> None:
    node, peer = running
    serve_good(peer, image)
    peak_before = node.proc_status("VmHWM")
    send_jpeg(peer, huge_png())  # a 8192x8192 PNG of a few tens of kB
    send_jpeg(peer, declared(_jpeg(8, 8), 20000, 20000))  # a JPEG bomb: 400 megapixels declared
    wait_count(peer, JPEG, "too_large", 2)
    good = send_jpeg(peer, array_to_compressed(image, codec="jpeg", order="rgb").data)
    peer.wait_stamp("/rob1/panoptic/semantic", good)  # the camera keeps being served
    grew_mb = (node.proc_status("VmHWM") - peak_before) / 1024
    assert grew_mb < 150, f"the node's peak memory grew by {grew_mb:.0f} MB"
    # raw images too, against the limit in force (a run-time parameter)
    results = peer.set_parameters(NODE, {"max_input_pixels": SIZE[0] * SIZE[1] - 1})
    assert results[0].successful, results[0].reason
    peer.publish(RAW, array_to_image_msg(image, "rgb8", header(Clock.next())))
    wait_count(peer, RAW, "too_large", 1)
    assert peer.set_parameters(NODE, {"max_input_pixels": 7680 * 4320})[0].successful
    serve_good(peer, image)


def test_damaged_jpegs_are_counted_as_corrupt(running: tuple[NodeProcess, Peer], image: np.ndarray) -> None:
    _, peer = running
    before = int(wait_count(peer, JPEG, "corrupt_compressed", 0)["corrupt_compressed"])
    good = array_to_compressed(image, codec="jpeg", order="rgb").data.tobytes()
    # each waits until counted: a complete header passes the callback, and the slot keeps the newest
    send_jpeg(peer, good[: len(good) // 2] + b"\xff\xd9")  # cut at 50 %, end marker appended
    wait_count(peer, JPEG, "corrupt_compressed", before + 1)
    send_jpeg(peer, declared(_jpeg(8, 8), 1024, 1024))  # an 8x8 image declaring 1024x1024
    wait_count(peer, JPEG, "corrupt_compressed", before + 2)


def test_bursts_of_malformed_messages_never_displace_good_frames(
    running: tuple[NodeProcess, Peer], image: np.ndarray
) -> None:
    _, peer = running
    before = int(wait_count(peer, RAW, "malformed", 0)["malformed"])
    for _ in range(5):
        stamp = Clock.next()
        peer.publish(RAW, array_to_image_msg(image, "rgb8", header(stamp)))
        for _ in range(10):  # right behind the good frame, before the worker takes it
            bad = array_to_image_msg(image, "rgb8", header(Clock.next()))
            bad.data = bad.data[:100]
            peer.publish(RAW, bad)
        peer.wait_stamp("/rob0/panoptic/semantic", stamp)  # served all the same
    wait_count(peer, RAW, "malformed", before + 50)


def test_warn_follows_a_recent_window_and_events_are_not_failures(
    running: tuple[NodeProcess, Peer], image: np.ndarray
) -> None:
    _, peer = running
    bad = array_to_image_msg(image, "rgb8", header(Clock.next()))
    bad.step = 1
    peer.publish(RAW, bad)
    peer.wait_for(lambda: status(peer, RAW)[0] == ord(DiagnosticStatus.WARN), "WARN after a bad frame")
    assert "in the last 2 s" in status(peer, RAW)[1]
    # a resolution change on a served frame is an event, not a failure: the level comes back to OK
    stamp = Clock.next()
    peer.publish(RAW, array_to_image_msg(image[::2, ::2].copy(), "rgb8", header(stamp)))
    peer.wait_stamp("/rob0/panoptic/semantic", stamp)
    peer.wait_for(lambda: status(peer, RAW)[0] == ord(DiagnosticStatus.OK), "OK once the window passed", 30)
    values = status(peer, RAW)[2]
    assert int(values["resolution_change"]) >= 1 and int(values["frames_failed"]) == 0


def test_final_counts_balance_at_shutdown(running: tuple[NodeProcess, Peer], image: np.ndarray) -> None:
    """Last test of the module: the node stops and publishes its final counts."""
    node, peer = running
    for _ in range(20):  # a flood: some frames are dropped in the slot, some may be in flight
        peer.publish(RAW, array_to_image_msg(image, "rgb8", header(Clock.next())))
    assert node.stop() == 0
    peer.wait_for(lambda: status(peer, RAW)[2].get("final") == "true", "the final counts")
    for camera in (RAW, JPEG):
        v = {k: int(x) for k, x in status(peer, camera)[2].items() if k.startswith("frames_")}
        parts = ("frames_published", "frames_dropped", "frames_bad", "frames_failed", "frames_in_flight")
        assert v["frames_received"] == sum(v[p] for p in parts), (camera, v)
        assert v["frames_received"] > 0
    assert "final counts /rob0/image_raw: received" in node.log()


def test_publisher_sequence_gaps_count_messages_lost_before_the_callback() -> None:
    stats = NodeStats()
    for number in (1, 2, 5, 6, 9):  # 3, 4, 7, 8 never reached the callback
        assert stats.arrived("cam", b"publisher-a", number)
    for number in (40, 41):  # another publisher, joined late: nothing before its first is counted
        assert stats.arrived("cam", b"publisher-b", number)
    assert stats.arrived("cam", b"publisher-a", None)  # an rmw that reports no sequence numbers
    # the same message again (two subscriptions of the topic while the QoS changes): not counted
    assert not stats.arrived("cam", b"publisher-a", 9) and not stats.arrived("cam", b"publisher-b", 40)
    assert stats.snapshot()["cam"].lost == 4 and stats.received_count("cam") == 8


REFUSALS = [
    ("tracker.high_score:=-0.5", "parameter tracker.high_score=-0.5 refused"),
    (
        "tracker.high_score:=high",
        "parameter tracker.high_score='high' refused: tracker.high_score must be a float",
    ),
    ("qos.depth:=0", "parameter qos.depth=0 refused: qos.depth=0 is below its minimum 1"),
    ("image_topics:=[]", "parameter image_topics=[] refused: give at least one camera topic"),
    ("fusion.center_threshold:=-1.0", "parameter fusion.center_threshold=-1.0 refused"),
]


@pytest.mark.parametrize(("argument", "line"), REFUSALS, ids=[a for a, _ in REFUSALS])
def test_bad_parameters_are_refused_with_one_line(argument: str, line: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "panoptic_node"), "--ros-args", "-p", argument],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert line in output and "Traceback" not in output, output
    assert "allowed" in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_says_how_to_run_on_the_cpu() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "panoptic_node"), "--ros-args", "-p", "device:=cuda"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "could not configure" in output and "device cpu (the node's parameter `device`" in output


FAULT = """
import sys
import rclpy
from rclpy.signals import SignalHandlerOptions
from rclpy.lifecycle import TransitionCallbackReturn
from panoptic_ros.ros import executables
from panoptic_ros.ros.node import PanopticNode

rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
node = PanopticNode()
ok = TransitionCallbackReturn.SUCCESS
assert node.trigger_configure() == ok and node.trigger_activate() == ok
def fail(frames):  # the fault: inference fails for good, as a lost GPU would make it
    raise RuntimeError("CUDA error: the device was lost")
node.engine.network = fail
node._worker.max_failures = 3
print("serving", flush=True)
sys.exit(executables._spin(node))
"""


def test_a_worker_that_cannot_go_on_takes_the_node_down_with_error_diagnostics(
    tmp_path: Path, image: np.ndarray
) -> None:
    args = ["--ros-args", "-r", "__node:=panoptic_fault", "-p", "image_topics:=[/fault/image_raw]",
            "-p", "backend:=onnxruntime", "-p", "device:=cpu", "-p", "warmup_frames:=0",
            "-p", "qos.mode:=explicit", "-p", "qos.reliability:=reliable"]  # fmt: skip
    log = (tmp_path / "fault.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", FAULT, *args],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    peer = Peer("panoptic_fault_peer")
    try:
        peer.listen("/diagnostics", DiagnosticArray)
        pub = peer.publisher("/fault/image_raw", Image)
        peer.wait_for(lambda: pub.get_subscription_count() > 0, "the node")
        errors: list[Any] = []

        def error_seen() -> bool:
            if proc.poll() is None:
                peer.publish("/fault/image_raw", array_to_image_msg(image, "rgb8", header(Clock.next())))
            errors[:] = [
                s
                for m in peer.messages("/diagnostics")
                for s in m.status
                if ord(s.level) == ord(DiagnosticStatus.ERROR)
            ]
            return bool(errors) and proc.poll() is not None

        peer.wait_for(error_seen, "ERROR diagnostics and the node's exit")
    finally:
        peer.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "fault.log").read_text()
    assert proc.returncode == 1, output
    assert any("worker stopped" in s.message and "device was lost" in s.message for s in errors)
    assert "exiting with status 1: the worker stopped" in output
