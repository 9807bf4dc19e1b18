"""Lifecycle transitions of ``panoptic_lifecycle_node`` driven over its services (20 full cycles, no
growth in threads or memory), a wrong model refused at configure, and overload at several times the
processing rate (drops counted, the newest frame always served)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifecycle_msgs.msg import Transition
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image

from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.ros.conversions import array_to_image_msg
from tests.conftest import REPO
from tests.ros.node_harness import RELIABLE, NodeProcess, Peer, header, stamp_of

CAMERA = "/lc/image_raw"
CYCLES = 20
START_NS = 1_800_000_000_000_000_000


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer("panoptic_lifecycle_peer")
    yield p
    p.close()


def _params(**extra: object) -> dict[str, object]:
    return {
        "image_topics": [CAMERA],
        "backend": "onnxruntime",
        "device": "cpu",
        "warmup_frames": 0,
        "diagnostics_period": 0.2,
        "qos.mode": "explicit",
        "qos.reliability": "reliable",
        **extra,
    }


def test_twenty_lifecycle_cycles_without_growth(tmp_path, peer: Peer) -> None:
    name = "panoptic_lc"
    # the shipped parameters file first (rclpy parses it), then the test's overrides
    node = NodeProcess(
        tmp_path, _params(), lifecycle=True, name=name, base_files=(REPO / "config" / "panoptic.yaml",)
    )
    try:
        peer.listen(f"{CAMERA.rsplit('/', 1)[0]}/panoptic/semantic", Image)
        pub = peer.publisher(CAMERA, Image, RELIABLE)
        image = next(generate(1, seed=3)).image
        assert peer.lifecycle_state(name) == "unconfigured"
        samples: list[tuple[int, int]] = []
        for cycle in range(CYCLES):
            assert peer.transition(name, Transition.TRANSITION_CONFIGURE), (
                f"configure failed in cycle {cycle}"
            )
            assert peer.transition(name, Transition.TRANSITION_ACTIVATE)
            assert peer.lifecycle_state(name) == "active"
            if cycle in (0, CYCLES - 1):  # serves frames while active
                peer.wait_for(lambda: pub.get_subscription_count() > 0, "the node's subscription")
                stamp = START_NS + cycle
                pub.publish(array_to_image_msg(image, "rgb8", header(stamp)))
                peer.wait_stamp("/lc/panoptic/semantic", stamp)
            assert peer.transition(name, Transition.TRANSITION_DEACTIVATE)
            assert peer.transition(name, Transition.TRANSITION_CLEANUP)
            assert peer.lifecycle_state(name) == "unconfigured"
            samples.append((node.proc_status("Threads"), node.proc_status("VmRSS")))
        threads = [t for t, _ in samples]
        rss_mb = [r / 1024 for _, r in samples]
        # after a few cycles to settle allocator pools, nothing grows with the number of cycles
        assert max(threads[3:]) <= threads[3], threads
        assert rss_mb[-1] - rss_mb[3] < 40, rss_mb
        assert node.alive()
    finally:
        code = node.stop()
        print(node.log())
    assert code == 0


FROZEN = """
import gc, sys
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions
from panoptic_ros.ros.node import PanopticNode

rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
node = PanopticNode()
ok = TransitionCallbackReturn.SUCCESS
before = gc.get_freeze_count()
assert node.trigger_configure() == ok
configured = gc.get_freeze_count()
engine_walked = any(o is node.engine for o in gc.get_objects())
assert node.trigger_cleanup() == ok
print(before, configured, engine_walked, gc.get_freeze_count())
node.destroy_node()
rclpy.shutdown()
"""


def test_configure_freezes_the_loaded_objects_out_of_full_collections_and_cleanup_thaws_them() -> None:
    """A full collection walks only what the frames made (no 30-110 ms pause over the model and the
    modules, ``runtime/memory.py``); cleanup gives the engine's objects back to the collector."""
    args = ["--ros-args", "-r", "__node:=panoptic_frozen", "-p", f"image_topics:=[{CAMERA}]",
            "-p", "backend:=onnxruntime", "-p", "device:=cpu", "-p", "warmup_frames:=1"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", FROZEN, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    before, configured, engine_walked, after_cleanup = out.stdout.split()[-4:]
    assert before == "0" and int(configured) > 100_000, out.stdout  # modules, model, tables
    assert engine_walked == "False"
    assert after_cleanup == "0"


WANTED_WORK = """
import sys, time
import numpy as np
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import MarkerArray
from panoptic_ros.msg import PanopticInstanceArray
from panoptic_ros.ros.conversions import array_to_image_msg
from panoptic_ros.ros.node import PanopticNode
from tests.ros.node_harness import camera_info, header

rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
node = PanopticNode()
ok = TransitionCallbackReturn.SUCCESS
assert node.trigger_configure() == ok and node.trigger_activate() == ok
camera = node._cameras[sys.argv[1]]
peer = rclpy.create_node("wanted_work_peer")
image = array_to_image_msg(np.zeros((48, 64, 3), np.uint8), "rgb8", header(5))
camera.side.put_info(camera_info(64, 48, 5))  # as the camera_info and depth callbacks would
camera.side.put_depth(array_to_image_msg(np.full((48, 64), 3.0, np.float32), "32FC1", header(5)))

def until(name, subscribed):
    deadline = time.monotonic() + 30
    while camera.wanted(name) != subscribed:
        assert time.monotonic() < deadline, f"{name} never became {subscribed}"
        time.sleep(0.05)
    frame = node._decode(sys.argv[1], (image, 0))
    assert frame.depth is not None, "the depth image was not matched"
    made = (frame.semantic_image, frame.instance_image, frame.overlay, frame.positions)
    return "".join(str(int(flag)) for flag in made)

instances = peer.create_subscription(PanopticInstanceArray, "/lc/panoptic/instances", print, 1)
steps = [until("instances", True)]
png = peer.create_subscription(CompressedImage, "/lc/panoptic/semantic/compressed", print, 1)
steps.append(until("semantic/compressed", True))
peer.destroy_subscription(png)
steps.append(until("semantic/compressed", False))
ids = peer.create_subscription(Image, "/lc/panoptic/instance_ids", print, 1)
steps.append(until("instance_ids", True))
peer.destroy_subscription(ids)
steps.append(until("instance_ids", False))
peer.destroy_subscription(instances)
steps.append(until("instances", False))
markers = peer.create_subscription(MarkerArray, "/lc/panoptic/markers", print, 1)
steps.append(until("markers", True))
print(" ".join(steps))
peer.destroy_node()
node.trigger_deactivate()
node.trigger_cleanup()
node.destroy_node()
rclpy.shutdown()
"""


def test_label_images_and_positions_are_made_only_while_someone_subscribes() -> None:
    """The node asks the engine for each camera-size label map only while one of its topics (raw or
    compressed) has a subscriber (the semantic map for ``semantic``, the instance ids for
    ``instance_ids``), and for 3D positions only while ``instances``, ``markers`` or ``detections``
    has one, as it asks for the overlay only while the overlay has one (the label maps are 1.4 ms of a
    1080p frame on dev-cpu, the ids 8 MB of it; the positions were 6 ms before their compiled loop)."""
    args = [CAMERA, "--ros-args", "-r", "__node:=panoptic_wanted_work", "-p", f"image_topics:=[{CAMERA}]",
            "-p", "depth_topics:=[/lc/depth]", "-p", "camera_info_topics:=[/lc/camera_info]",
            "-p", "backend:=onnxruntime", "-p", "device:=cpu", "-p", "warmup_frames:=0"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", WANTED_WORK, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # (semantic image, instance ids image, overlay, positions) per step: instances only; + semantic
    # PNG; the PNG's subscriber gone; + instance ids; theirs gone; the instances' gone too; markers only
    steps = ["0001", "1001", "0001", "0101", "0001", "0000", "0001"]
    assert out.stdout.split()[-7:] == steps, out.stdout


def _configure_refused(tmp_path: Path, peer: Peer, name: str, **params: object) -> str:
    """Start a lifecycle node with ``params``, check that configure fails and the node stays alive and
    unconfigured; its log."""
    node = NodeProcess(tmp_path, _params(**params), lifecycle=True, name=name)
    try:
        assert not peer.transition(name, Transition.TRANSITION_CONFIGURE)
        assert peer.lifecycle_state(name) == "unconfigured"
        assert node.alive()
    except AssertionError as err:  # the node's own account of what it did (this flaked once under load)
        node.stop()
        raise AssertionError(f"{err}\n--- the node's log:\n{node.log()}") from err
    finally:
        node.stop()
    return node.log()


def test_wrong_model_is_refused_at_configure_with_a_reason(tmp_path, peer: Peer) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is not an onnx file")
    log = _configure_refused(tmp_path, peer, "panoptic_bad_model", model=str(bogus))
    assert "configure failed" in log and str(bogus.name) in log


def test_int8_without_a_companion_is_refused_at_configure_with_the_command(tmp_path, peer: Peer) -> None:
    model = tmp_path / "model.onnx"
    shutil.copyfile(default_model(), model)  # the shipped float model, without its INT8 companion
    log = _configure_refused(tmp_path, peer, "panoptic_no_companion", model=str(model), precision="int8")
    assert "configure failed" in log and "no INT8 companion (model.int8.onnx)" in log, log
    assert f"panoptic-ros quantize {model}" in log


def test_overload_drops_old_frames_and_serves_the_newest(tmp_path, peer: Peer) -> None:
    name = "panoptic_overload"
    node = NodeProcess(tmp_path, _params(**{"qos.depth": 100}), name=name)
    try:
        peer.listen("/lc/panoptic/semantic", Image)
        peer.listen_diagnostics()
        pub = peer.publisher(CAMERA, Image, RELIABLE)
        peer.wait_for(lambda: pub.get_subscription_count() > 0, "the node's subscription")
        frames = [s.image for s in generate(1, seed=4, sequence_length=8)]
        sent = 150
        # as fast as DDS takes them: many times the node's processing rate on this CPU
        for k in range(sent):
            pub.publish(array_to_image_msg(frames[k % len(frames)], "rgb8", header(START_NS + k)))
        last = START_NS + sent - 1
        peer.wait_stamp("/lc/panoptic/semantic", last)  # the newest frame is always served
        published = len(peer.messages("/lc/panoptic/semantic"))
        values = peer.wait_diagnostics(
            name,
            CAMERA,
            lambda v: int(v.get("frames_published", -1)) == published,
            "diagnostics of the burst",
        )
        received, dropped = int(values["frames_received"]), int(values["frames_dropped"])
        # every frame that reached the node was either served or replaced by a newer one (counted)
        assert published + dropped == received, values
        assert dropped > received / 2, "the node cannot have processed most of the burst: no back-pressure?"
        # bounded latency without a clock: the frame served last is the newest sent, so no backlog of
        # older frames was waiting in front of it (the diagnostics' latency percentiles give the times)
        assert stamp_of(peer.messages("/lc/panoptic/semantic")[-1]) == last
        assert float(values["latency_queue_ms_p95"]) >= 0
        assert node.alive()
    finally:
        node.stop()


def test_qos_modes_and_configure_parameters_between_cycles(tmp_path: Path, peer: Peer) -> None:
    """sensor_data subscribes best effort; match_publisher adopts the reliable publisher found on the
    graph; a read-at-configure parameter is refused while configured and accepted when unconfigured."""
    name = "panoptic_qos"
    node = NodeProcess(tmp_path, {**_params(), "qos.mode": "sensor_data"}, lifecycle=True, name=name)
    try:
        peer.publisher(CAMERA, Image, RELIABLE)  # a reliable camera driver

        def subscription_reliability() -> ReliabilityPolicy:
            infos: list = []
            peer.wait_for(
                lambda: bool(infos.extend(peer.node.get_subscriptions_info_by_topic(CAMERA)) or infos),
                "the node's subscription on the graph",
            )
            return infos[0].qos_profile.reliability

        assert peer.transition(name, Transition.TRANSITION_CONFIGURE)
        assert peer.transition(name, Transition.TRANSITION_ACTIVATE)
        assert subscription_reliability() == ReliabilityPolicy.BEST_EFFORT
        (refused,) = peer.set_parameters(name, {"qos.mode": "match_publisher"})
        assert not refused.successful and "configure" in refused.reason
        assert peer.transition(name, Transition.TRANSITION_DEACTIVATE)
        assert peer.transition(name, Transition.TRANSITION_CLEANUP)
        peer.wait_for(lambda: not peer.node.get_subscriptions_info_by_topic(CAMERA), "the subscription gone")
        (accepted,) = peer.set_parameters(name, {"qos.mode": "match_publisher"})
        assert accepted.successful, accepted.reason
        assert peer.transition(name, Transition.TRANSITION_CONFIGURE)
        assert peer.transition(name, Transition.TRANSITION_ACTIVATE)
        assert subscription_reliability() == ReliabilityPolicy.RELIABLE
    finally:
        node.stop()
