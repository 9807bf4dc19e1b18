"""The node in its own process over real DDS: two cameras (raw with depth + camera_info, and
compressed), every output, parameter changes, and every kind of malformed input between good frames."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.core.image_encode import array_to_compressed
from panoptic_ros.data.synthetic import generate
from panoptic_ros.msg import CategoryArray, PanopticInstance
from panoptic_ros.ros.conversions import array_to_compressed_msg, array_to_image_msg, compressed_msg
from tests.core.test_image_codec import MALFORMED, _valid_fields
from tests.ros.node_harness import (
    LATCHED,
    NodeProcess,
    Peer,
    camera_info,
    header,
    stamp_of,
)

NODE = "panoptic_it"
RAW = "/cam0/image_raw"
COMPRESSED = "/cam1/image_raw/compressed"
DEPTH = "/cam0/depth/image_raw"
INFO = "/cam0/camera_info"
SIZE = (192, 384)
COMPRESSED_SIZE = (240, 320)  # another size than the model input: resized on the way in and back
PERIOD_NS = 100_000_000


@pytest.fixture(scope="module")
def frames() -> list[Any]:
    return list(generate(1, seed=77, height=SIZE[0], width=SIZE[1], sequence_length=60))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Peer]]:
    tmp = tmp_path_factory.mktemp("node")
    node = NodeProcess(
        tmp,
        {
            "image_topics": [RAW, COMPRESSED],
            "camera_info_topics": [INFO, ""],
            "depth_topics": [DEPTH, ""],
            "backend": "onnxruntime",
            "device": "cpu",
            "warmup_frames": 1,
            "diagnostics_period": 0.2,
            "log_throttle": 0.0,
            "tracker.min_hits": 1,
            "qos.mode": "explicit",  # the peer publishes reliably; a best-effort link may lose fragments
            "qos.reliability": "reliable",
            "qos.depth": 5,
            # two cameras: their batches' results on two threads (the other node tests run one)
            "camera_threads": 2,
        },
        name=NODE,
    )
    peer = Peer()
    try:
        peer.listen_outputs("/cam0")
        peer.listen_outputs("/cam1", ("semantic", "instance_ids", "instances", "overlay"))
        peer.listen_diagnostics()
        peer.publisher(RAW, Image)
        peer.publisher(COMPRESSED, CompressedImage)
        peer.publisher(DEPTH, Image)
        peer.publisher(INFO, CameraInfo)
        peer.wait_for(node_subscribed(peer), "the node's subscriptions")
        yield node, peer
    finally:
        peer.close()
        code = node.stop()
        print(node.log())
        assert code == 0, f"node exited with {code}"


def node_subscribed(peer: Peer) -> Any:
    return lambda: all(p.get_subscription_count() > 0 for p in peer.publishers.values())


class Clock:
    """Increasing stamps shared by the tests of the module."""

    stamp = 1_700_000_000_000_000_000

    @classmethod
    def next(cls) -> int:
        cls.stamp += PERIOD_NS
        return cls.stamp


def send_raw(peer: Peer, rgb: np.ndarray, stamp: int, *, depth_m: float | None = 8.0) -> None:
    h, w = rgb.shape[:2]
    if depth_m is not None:
        peer.publish(INFO, camera_info(w, h, stamp))
        depth = np.full((h, w), depth_m, dtype=np.float32)
        depth[: h // 4] = np.nan  # "sky": no depth
        peer.publish(DEPTH, array_to_image_msg(depth, "32FC1", header(stamp)))
    peer.publish(RAW, array_to_image_msg(rgb, "rgb8", header(stamp)))


def send_compressed(peer: Peer, rgb: np.ndarray, stamp: int) -> None:
    import cv2

    small = cv2.resize(rgb, COMPRESSED_SIZE[::-1], interpolation=cv2.INTER_AREA)
    peer.publish(
        COMPRESSED, array_to_compressed_msg(small, header(stamp, "cam1_optical"), codec="jpeg", order="rgb")
    )


def test_raw_camera_gets_every_output_with_its_stamp_and_size(
    running: tuple[NodeProcess, Peer], frames: list
) -> None:
    _, peer = running
    for sample in frames[:4]:
        stamp = Clock.next()
        send_raw(peer, sample.image, stamp)
        got = {
            name: peer.wait_stamp(f"/cam0/panoptic/{name}", stamp)
            for name in ("semantic", "instance_ids", "instances", "overlay", "markers")
        }
    semantic, ids, instances, overlay = got["semantic"], got["instance_ids"], got["instances"], got["overlay"]
    for image, encoding in ((semantic, "mono8"), (ids, "32SC1"), (overlay, "bgr8")):
        assert (image.height, image.width, image.encoding) == (*SIZE, encoding)
        assert image.header.frame_id == "camera_optical"
    assert (instances.height, instances.width) == SIZE
    # the labels are the model's, not noise: most pixels agree with the synthetic ground truth
    semantic_map = image_to_array(semantic)
    gt = frames[3].semantic
    valid = gt != 255
    assert (semantic_map[valid] == gt[valid]).mean() > 0.8
    # instance ids: every non-zero pixel value is a listed thing with the pixel count as its area
    id_map = image_to_array(ids)
    things = {i.id: i for i in instances.instances if i.is_thing and i.area > 0}
    assert things, "the synthetic frame has things; the node found none"
    values, counts = np.unique(id_map[id_map > 0], return_counts=True)
    assert set(values.tolist()) == set(things)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        assert things[value].area == count
        assert things[value].label
        assert things[value].age >= 1
    stuff = [i for i in instances.instances if not i.is_thing]
    assert stuff and all(i.state == PanopticInstance.STATE_CONFIRMED for i in stuff)
    assert len({i.id for i in instances.instances}) == len(instances.instances)
    # depth 8 m below the top quarter: segments there are placed at 8 m, markers label them
    placed = [i for i in instances.instances if i.position_valid]
    assert placed and all(abs(i.position.z - 8.0) < 1e-3 for i in placed)
    markers = got["markers"].markers
    assert markers[0].action == markers[0].DELETEALL
    labels = [m for m in markers[1:] if m.ns == "panoptic" and m.text]
    assert labels and all(abs(m.pose.position.z - 8.0) < 1e-3 for m in labels)


def test_track_ids_persist_across_frames(running: tuple[NodeProcess, Peer], frames: list) -> None:
    _, peer = running
    seen: list[set[int]] = []
    for sample in frames[4:10]:
        stamp = Clock.next()
        send_raw(peer, sample.image, stamp)
        msg = peer.wait_stamp("/cam0/panoptic/instances", stamp)
        seen.append({i.id for i in msg.instances if i.is_thing and i.area > 0})
    # consecutive frames of a slowly moving scene keep most of their track ids
    kept = [len(a & b) / max(len(a | b), 1) for a, b in itertools.pairwise(seen)]
    assert np.mean(kept) > 0.5, kept


def test_categories_are_latched_for_late_joiners(running: tuple[NodeProcess, Peer]) -> None:
    _, peer = running
    for camera in ("/cam0", "/cam1"):
        peer.listen(
            f"{camera}/panoptic/categories", CategoryArray, LATCHED
        )  # subscribes long after publishing
    peer.wait_for(
        lambda: peer.messages("/cam0/panoptic/categories") and peer.messages("/cam1/panoptic/categories"),
        "categories",
    )
    msg = peer.messages("/cam0/panoptic/categories")[0]
    assert msg.label_set == "synthetic" and msg.void_id == 255
    assert any(c.is_thing for c in msg.categories) and any(not c.is_thing for c in msg.categories)


def test_compressed_camera_and_both_cameras_at_once(running: tuple[NodeProcess, Peer], frames: list) -> None:
    _, peer = running
    for sample in frames[10:13]:
        stamp = Clock.next()
        send_compressed(peer, sample.image, stamp + 1)
        send_raw(peer, sample.image, stamp)
        compressed_out = peer.wait_stamp("/cam1/panoptic/semantic", stamp + 1)
        raw_out = peer.wait_stamp("/cam0/panoptic/semantic", stamp)
    assert (compressed_out.height, compressed_out.width) == COMPRESSED_SIZE
    assert compressed_out.header.frame_id == "cam1_optical"
    assert (raw_out.height, raw_out.width) == SIZE
    instances = peer.wait_stamp("/cam1/panoptic/instances", stamp + 1)
    assert not any(i.position_valid for i in instances.instances), "cam1 has no depth: no 3D positions"


def test_diagnostics_report_rate_latency_backend(running: tuple[NodeProcess, Peer]) -> None:
    _, peer = running
    values = peer.wait_diagnostics(
        NODE, RAW, lambda v: int(v.get("frames_published", 0)) >= 10, "diagnostics"
    )
    assert values["backend"].startswith("onnxruntime") and values["device"] == "cpu"
    for stage in ("inference", "fusion", "tracking", "total", "queue", "decode", "publish"):
        assert float(values[f"latency_{stage}_ms_p50"]) >= 0
    assert float(values["latency_total_ms_p95"]) >= float(values["latency_inference_ms_p50"])
    assert "frames_dropped" in values and "rate_hz" in values


def test_parameter_change_takes_effect_and_bad_values_are_refused(
    running: tuple[NodeProcess, Peer], frames: list
) -> None:
    _, peer = running
    # one instance center per frame at most: one thing, the rest of the frame is stuff (or void)
    (result,) = peer.set_parameters(NODE, {"fusion.top_k": 1})
    assert result.successful, result.reason
    stamp = Clock.next()
    send_raw(peer, frames[13].image, stamp)
    msg = peer.wait_stamp("/cam0/panoptic/instances", stamp)
    assert msg.instances and sum(i.is_thing and i.area > 0 for i in msg.instances) <= 1
    ids = image_to_array(peer.wait_stamp("/cam0/panoptic/instance_ids", stamp))
    assert np.unique(ids[ids > 0]).size <= 1

    refused = {
        "fusion.center_threshold": -0.5,  # outside the descriptor's range
        "tracker.low_score": 0.9,  # above tracker.high_score
        "model": "other.onnx",  # read at configure only
        "qos.mode": "sometimes",  # not a choice
    }
    for name, value in refused.items():
        (result,) = peer.set_parameters(NODE, {name: value})
        assert not result.successful, name
        assert result.reason, f"{name} refused without a reason"
    (result,) = peer.set_parameters(NODE, {"fusion.top_k": 200})
    assert result.successful
    stamp = Clock.next()
    send_raw(peer, frames[14].image, stamp)
    msg = peer.wait_stamp("/cam0/panoptic/instances", stamp)
    assert sum(i.is_thing and i.area > 0 for i in msg.instances) > 1


def _sendable(changes: dict[str, Any]) -> bool:
    """Malformed cases that a ROS message can carry (uint32 sizes, string encoding, byte data)."""
    for key, value in changes.items():
        if key in ("height", "width", "step") and not (type(value) is int and 0 <= value < 2**32):
            return False
        if key == "data" and not isinstance(value, bytes):
            return False
    return True


RAW_CASES = [(name, changes) for name, changes, _ in MALFORMED if _sendable(changes)]


def _raw_bad(changes: dict[str, Any], stamp: int) -> Image:
    fields = SimpleNamespace(**{**_valid_fields(), **changes})
    msg = Image(header=header(stamp), height=fields.height, width=fields.width, encoding=fields.encoding)
    msg.is_bigendian, msg.step = fields.is_bigendian, fields.step
    msg.data = fields.data
    return msg


def test_every_malformed_input_is_counted_and_the_next_frame_served(
    running: tuple[NodeProcess, Peer], frames: list
) -> None:
    node, peer = running
    before = peer.wait_diagnostics(NODE, RAW, bool, "diagnostics")
    before_c = peer.wait_diagnostics(NODE, COMPRESSED, bool, "diagnostics")
    jpeg = array_to_compressed(frames[0].image, codec="jpeg", order="rgb")
    compressed_cases = {
        "garbage bytes": jpeg._replace(data=np.frombuffer(b"\x00garbage" * 50, dtype=np.uint8)),
        "truncated jpeg": jpeg._replace(data=jpeg.data[: len(jpeg.data) // 3]),
        "empty": jpeg._replace(data=np.zeros(0, dtype=np.uint8)),
    }
    unsupported = sum(
        1 for _, c in RAW_CASES if "encoding" in c and c["encoding"] not in ("yuv422", "yuyv", "nv12")
    )

    def bad_count(camera: str, keys: tuple[str, ...], was: dict[str, str]) -> Any:
        return lambda v: sum(int(v.get(k, 0)) - int(was.get(k, 0)) for k in keys)

    raw_bad = bad_count(RAW, ("malformed", "unsupported_encoding"), before)
    # each bad frame waits until it is counted: sent back to back, the newest would replace the rest in
    # the node's slot of one (and be counted as drops instead)
    for k, (name, changes) in enumerate(RAW_CASES):
        peer.publish(RAW, _raw_bad(changes, Clock.next()))
        peer.wait_diagnostics(
            NODE, RAW, lambda v, n=k + 1: raw_bad(v) >= n, f"malformed frame {name!r} counted"
        )
        if k % 4 == 3:  # a good frame now and then: it is served
            stamp = Clock.next()
            send_raw(peer, frames[15 + k % 10].image, stamp, depth_m=None)
            peer.wait_stamp("/cam0/panoptic/semantic", stamp)
    compressed_bad = bad_count(COMPRESSED, ("corrupt_compressed",), before_c)
    for k, (name, fields) in enumerate(compressed_cases.items()):
        peer.publish(COMPRESSED, compressed_msg(fields, header(Clock.next())))
        peer.wait_diagnostics(
            NODE, COMPRESSED, lambda v, n=k + 1: compressed_bad(v) >= n, f"compressed {name!r} counted"
        )
        stamp = Clock.next()
        send_compressed(peer, frames[30].image, stamp)
        peer.wait_stamp("/cam1/panoptic/semantic", stamp)
    # a camera changing resolution and a stamp jumping back (a bag loop) reset that camera's tracker
    stamp = Clock.next()
    peer.publish(RAW, array_to_image_msg(frames[31].image[::2, ::2].copy(), "rgb8", header(stamp)))
    assert (peer.wait_stamp("/cam0/panoptic/semantic", stamp).height,) == (SIZE[0] // 2,)
    back = stamp - 50 * PERIOD_NS
    peer.publish(RAW, array_to_image_msg(frames[32].image, "rgb8", header(back)))
    peer.wait_stamp("/cam0/panoptic/semantic", back)
    stamp = Clock.next()
    send_raw(peer, frames[33].image, stamp)
    assert peer.wait_stamp("/cam0/panoptic/instances", stamp).instances

    def grew(key: str, by: int, was: dict[str, str]) -> Any:
        return lambda v: int(v.get(key, 0)) - int(was.get(key, 0)) >= by

    n_raw = len(RAW_CASES)
    after = peer.wait_diagnostics(
        NODE, RAW, lambda v: raw_bad(v) >= n_raw, "every malformed raw frame counted"
    )
    assert int(after["unsupported_encoding"]) - int(before["unsupported_encoding"]) == unsupported
    assert int(after["malformed"]) - int(before["malformed"]) == n_raw - unsupported
    peer.wait_diagnostics(NODE, RAW, grew("resolution_change", 2, before), "resolution changes counted")
    peer.wait_diagnostics(NODE, RAW, grew("time_jump_back", 1, before), "the jump back counted")
    peer.wait_diagnostics(
        NODE, COMPRESSED, grew("corrupt_compressed", 3, before_c), "corrupt compressed counted"
    )
    assert node.alive()
    log = node.log()
    assert "unsupported encoding" in log and "malformed" in log and "corrupt compressed" in log


def test_points_and_lossless_labels_match_the_label_images(
    running: tuple[NodeProcess, Peer], frames: list
) -> None:
    """panoptic/points and the PNG label topics, made once someone subscribes: the compressed labels
    decode to the raw images exactly; each point sits on a pixel with depth and carries that pixel's
    category and instance id."""
    from sensor_msgs.msg import CompressedImage as Compressed
    from sensor_msgs.msg import PointCloud2

    from panoptic_ros.core.image_codec import compressed_to_array
    from panoptic_ros.runtime.cloud import POINT_DTYPE

    _, peer = running
    peer.listen("/cam0/panoptic/points", PointCloud2)
    peer.listen("/cam0/panoptic/semantic/compressed", Compressed)
    peer.listen("/cam0/panoptic/instance_ids/compressed", Compressed)
    wanted = ("points", "semantic/compressed", "instance_ids/compressed")
    stamp = 0
    for _ in range(200):  # until the node's publishers have matched the new subscriptions (a bound)
        stamp = Clock.next()
        send_raw(peer, frames[5].image, stamp)
        peer.wait_stamp("/cam0/panoptic/semantic", stamp)
        if all(any(stamp_of(m) == stamp for m in peer.messages(f"/cam0/panoptic/{n}")) for n in wanted):
            break
    got = {n: peer.wait_stamp(f"/cam0/panoptic/{n}", stamp) for n in ("semantic", "instance_ids", *wanted)}
    semantic, ids = image_to_array(got["semantic"]), image_to_array(got["instance_ids"])
    png_semantic = compressed_to_array(got["semantic/compressed"])
    png_ids = compressed_to_array(got["instance_ids/compressed"])
    assert png_semantic.encoding == "mono8" and np.array_equal(png_semantic.array, semantic)
    assert png_ids.encoding == "32SC1" and np.array_equal(png_ids.array, ids)
    assert got["instance_ids/compressed"].format == "32SC1; png compressed mono16"  # track ids are small
    cloud_msg = got["points"]
    assert cloud_msg.header.frame_id == "camera_optical" and cloud_msg.height == 1 and cloud_msg.is_dense
    assert [f.name for f in cloud_msg.fields] == ["x", "y", "z", "rgb", "label"]
    cloud = np.frombuffer(bytes(cloud_msg.data), dtype=POINT_DTYPE)
    h, w = SIZE
    assert cloud.size == (h - h // 4) * w  # every pixel with depth (the top quarter has none)
    assert np.allclose(cloud["z"], 8.0)
    f = 0.8 * w  # the camera_info send_raw publishes
    u = np.rint(cloud["x"] * f / cloud["z"] + w / 2).astype(int)
    v = np.rint(cloud["y"] * f / cloud["z"] + h / 2).astype(int)
    assert v.min() >= h // 4
    assert np.array_equal(cloud["label"] >> 16, semantic[v, u].astype(np.uint32))
    assert np.array_equal(cloud["label"] & 0xFFFF, ids[v, u].astype(np.uint32))


def test_over_budget_frames_warn_then_error_naming_a_stage(
    running: tuple[NodeProcess, Peer], frames: list
) -> None:
    """A budget no CPU meets (target_rate 1000 Hz): WARN at once, ERROR after watchdog_error_after,
    the message naming a stage; a reachable budget: OK again."""
    from diagnostic_msgs.msg import DiagnosticStatus

    _, peer = running
    results = peer.set_parameters(NODE, {"target_rate": 1000.0, "watchdog_error_after": 1.0})
    assert all(r.successful for r in results), results

    def status() -> DiagnosticStatus | None:
        for msg in reversed(peer.messages("/diagnostics")):
            for s in msg.status:
                if s.name == f"{NODE}: {RAW}":
                    return s
        return None

    budget = "> 1 ms (target_rate 1000 Hz)"  # the new budget (a frame paced by the node may be over
    # the camera's own rate before the change: wait for the message of the new one)

    def seen(level: bytes) -> DiagnosticStatus | None:
        """The first status at ``level`` for the new budget among every message received so far (the
        WARN lasts ``watchdog_error_after``, which a slow test loop may not poll within)."""
        for msg in peer.messages("/diagnostics"):
            for s in msg.status:
                if s.name == f"{NODE}: {RAW}" and s.level == level and budget in s.message:
                    return s
        return None

    def serve_until(level: bytes) -> DiagnosticStatus:
        for _ in range(300):  # frames until the status shows (a bound, not a timing check)
            stamp = Clock.next()
            send_raw(peer, frames[1].image, stamp)
            peer.wait_stamp("/cam0/panoptic/semantic", stamp)
            found = seen(level)
            if found is not None:
                return found
        raise AssertionError(f"never level {level!r} with {budget!r}: {status()}")

    try:
        warn = serve_until(DiagnosticStatus.WARN)
        assert "grew most:" in warn.message or "costliest:" in warn.message
        error = serve_until(DiagnosticStatus.ERROR)
        assert "over budget" in error.message
    finally:
        results = peer.set_parameters(NODE, {"target_rate": 0.01, "watchdog_error_after": 30.0})
        assert all(r.successful for r in results), results
    for _ in range(300):
        stamp = Clock.next()
        send_raw(peer, frames[1].image, stamp)
        peer.wait_stamp("/cam0/panoptic/semantic", stamp)
        found = status()
        if found is not None and "over budget" not in found.message:
            break
    else:
        raise AssertionError(f"still over budget with a 100 s budget: {status()}")
