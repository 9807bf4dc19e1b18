"""One frame engine: the same synthetic bag (a camera with depth and camera_info) played into the live
node over DDS, paced so nothing is dropped, run through ``panoptic-ros bag process`` and through
``panoptic-ros infer --track``, gives the same label images pixel for pixel, the same instance
arrays field for field (track ids, boxes, scores, velocities, 3D positions: every field) and, node and
``bag process --points``, the same panoptic point clouds byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from panoptic_ros.core import stamps
from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.data.bag_io import read_messages
from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag
from panoptic_ros.msg import PanopticInstanceArray
from tests.conftest import REPO
from tests.ros.node_harness import RELIABLE, NodeProcess, Peer

pytestmark = pytest.mark.slow

CAMERA = "/cam0/image_raw"
INFO = "/cam0/camera_info"
DEPTH = "/cam0/depth/image_raw"
OUT = "/cam0/panoptic"
FRAMES = 8
#: Every process runs with the same thread settings (the node harness's), so sums come out the same.
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
FIELDS = (
    "id", "category_id", "label", "is_thing", "score", "state", "area", "centroid_x", "centroid_y",
    "velocity_x", "velocity_y", "age", "position_valid",
)  # fmt: skip


def _cli(*args: str) -> None:
    command = [sys.executable, "-m", "panoptic_ros.cli", *args, "--backend", "onnxruntime", "--device", "cpu"]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _row(instance: Any) -> dict[str, Any]:
    """The fields of a ``PanopticInstance`` (rclpy, rosbags, or a row of ``instances.jsonl``)."""
    if isinstance(instance, dict):
        row = {k: instance[k] for k in FIELDS}
        row["bbox"] = tuple(instance["bbox"])
        row["position"] = tuple(instance["position"])
        return row
    row = {k: getattr(instance, k) for k in FIELDS}
    box, p = instance.bbox, instance.position
    row["bbox"] = (box.x_offset, box.y_offset, box.width, box.height)
    row["position"] = (p.x, p.y, p.z)
    return row


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("one_engine") / "input"
    write_synthetic_bag(path, SynthBagConfig(cameras=1, sequences=1, frames=FRAMES, size=(120, 240), seed=7))
    return path


@pytest.fixture(scope="module")
def offline(source: Path) -> dict[str, dict[int, Any]]:
    """``bag process`` outputs by stamp (rosbags messages)."""
    out = source.parent / "processed"
    _cli("bag", "process", str(source), str(out), "--points")
    found: dict[str, dict[int, Any]] = {
        "semantic": {},
        "instance_ids": {},
        "instances": {},
        "overlay": {},
        "points": {},
    }
    for message in read_messages(out, [f"{OUT}/{name}" for name in found]):
        found[message.topic.rsplit("/", 1)[1]][stamps.stamp_ns(message.msg)] = message.msg
    return found


@pytest.fixture(scope="module")
def inferred(source: Path) -> dict[int, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """``infer --track --label-maps`` outputs by stamp: the instances line and the label maps."""
    out = source.parent / "inferred"
    _cli("infer", "--input", str(source), "--out", str(out), "--track", "--label-maps")
    lines = [json.loads(line) for line in (out / "instances.jsonl").read_text().splitlines()]
    return {line["stamp_ns"]: (line, dict(np.load(out / "labels" / f"{line['file']}.npz"))) for line in lines}


@pytest.fixture(scope="module")
def live(source: Path) -> dict[str, dict[int, Any]]:
    """The node's outputs by stamp, frames played one at a time (the next only after the outputs of
    the previous came back, depth and camera_info first), so the node drops nothing."""
    params = {
        "image_topics": [CAMERA],
        "camera_info_topics": [INFO],
        "depth_topics": [DEPTH],
        "backend": "onnxruntime",
        "device": "cpu",
        "qos.mode": "explicit",
        "qos.reliability": "reliable",
    }
    node = NodeProcess(source.parent, params, name="panoptic_one_engine")
    peer = Peer("panoptic_one_engine_peer")
    try:
        outputs = {
            "semantic": Image,
            "instance_ids": Image,
            "instances": PanopticInstanceArray,
            "overlay": Image,
            "points": PointCloud2,
        }
        for name, kind in outputs.items():
            peer.listen(f"{OUT}/{name}", kind)
        types = {CAMERA: Image, INFO: CameraInfo, DEPTH: Image}
        for topic, kind in types.items():
            peer.publisher(topic, kind, RELIABLE)
            peer.wait_matched(topic)
        peer.wait_for(
            lambda: (
                all(peer.node.count_publishers(f"{OUT}/{n}") for n in outputs)
                and all(peer.publishers[t].get_subscription_count() for t in types)
            ),
            "the node's outputs and subscriptions",
        )
        time.sleep(1.0)  # the node's publishers discover this peer's subscriptions
        stamps_sent = []
        for message in read_messages(source, list(types), deserialize=False):
            msg = deserialize_message(message.raw, types[message.topic])  # the bag's own bytes
            if message.topic != CAMERA:
                peer.publish(message.topic, msg)
                continue
            time.sleep(0.3)  # depth and camera_info of this stamp reach the node before the image
            stamp = stamps.stamp_ns(msg)
            peer.publish(CAMERA, msg)
            for name in outputs:
                peer.wait_stamp(f"{OUT}/{name}", stamp)
            stamps_sent.append(stamp)
        assert len(stamps_sent) == FRAMES
        found = {name: {stamps.stamp_ns(m): m for m in peer.messages(f"{OUT}/{name}")} for name in outputs}
    finally:
        peer.close()
        assert node.stop() == 0, node.log()[-3000:]
    return found


def test_label_images_are_identical(live: dict, offline: dict, inferred: dict) -> None:
    assert sorted(live["semantic"]) == sorted(offline["semantic"]) == sorted(inferred)
    assert len(inferred) == FRAMES
    for stamp, (_, maps) in inferred.items():
        for name in ("semantic", "instance_ids"):
            node_map = image_to_array(live[name][stamp], native=True)
            bag_map = image_to_array(offline[name][stamp], native=True)
            assert live[name][stamp].encoding == offline[name][stamp].encoding
            assert np.array_equal(node_map, bag_map), (name, stamp)
            assert np.array_equal(node_map, maps[name]), (name, stamp)
        assert np.array_equal(
            image_to_array(live["overlay"][stamp]), image_to_array(offline["overlay"][stamp])
        )


def test_instance_arrays_are_identical_field_for_field(live: dict, offline: dict, inferred: dict) -> None:
    tracked = positioned = 0
    for stamp, (line, _) in inferred.items():
        node_msg, bag_msg = live["instances"][stamp], offline["instances"][stamp]
        assert (node_msg.header.frame_id, node_msg.height, node_msg.width) == (
            bag_msg.header.frame_id, bag_msg.height, bag_msg.width,
        )  # fmt: skip
        assert (line["frame_id"], line["height"], line["width"]) == (
            bag_msg.header.frame_id,
            bag_msg.height,
            bag_msg.width,
        )
        node_rows = [_row(i) for i in node_msg.instances]
        assert node_rows == [_row(i) for i in bag_msg.instances], stamp
        assert node_rows == [_row(i) for i in line["instances"]], stamp
        tracked = max(tracked, max((r["age"] for r in node_rows if r["is_thing"]), default=0))
        positioned += sum(r["position_valid"] for r in node_rows)
    assert tracked > 2, "tracks must live across frames for the comparison to mean something"
    assert positioned > 0, "depth must have given 3D positions"


def test_point_clouds_are_identical(live: dict, offline: dict) -> None:
    assert sorted(live["points"]) == sorted(offline["points"]) and len(live["points"]) == FRAMES
    for stamp, node_msg in live["points"].items():
        bag_msg = offline["points"][stamp]
        assert node_msg.width == bag_msg.width > 0 and node_msg.header.frame_id == bag_msg.header.frame_id
        assert [(f.name, f.offset, f.datatype) for f in node_msg.fields] == [
            (f.name, f.offset, f.datatype) for f in bag_msg.fields
        ]
        assert bytes(node_msg.data) == bytes(np.asarray(bag_msg.data, dtype=np.uint8)), stamp
