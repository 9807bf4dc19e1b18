"""``bag synth``: a synthetic multi-camera bag with depth, camera_info and ground truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.cli import main
from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.core.image_codec import compressed_to_color, image_to_array
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.data.bag_io import BagMessage, read_messages, topic_types
from panoptic_ros.data.bag_synth import (
    BACKDROP_M,
    CAMERA_HEIGHT_M,
    MAX_RANGE_M,
    PERIOD_NS,
    START_NS,
    SynthBagConfig,
    camera_model,
    synthetic_depth,
    write_synthetic_bag,
)
from panoptic_ros.data.bags import BagError
from panoptic_ros.data.synthetic import generate
from panoptic_ros.data.synthetic_scene import ROAD, SKY
from panoptic_ros.errors import ConfigError

CONFIG = SynthBagConfig(cameras=2, sequences=2, frames=4, size=(64, 128), seed=7)
SUFFIXES = (
    "image_raw",
    "camera_info",
    "depth/image_raw",
    "ground_truth/semantic",
    "ground_truth/instance_ids",
)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synth") / "bag"
    report = write_synthetic_bag(path, CONFIG)
    assert report.image_topics == ("/cam0/image_raw", "/cam1/image_raw")
    assert report.messages == 2 * 2 * 4 * 5
    return path


@pytest.fixture(scope="module")
def messages(bag: Path) -> list[BagMessage]:
    return list(read_messages(bag))


def test_topics_types_and_counts(bag: Path, messages: list[BagMessage]) -> None:
    types = topic_types(bag)
    expected = {f"/cam{k}/{s}" for k in range(2) for s in SUFFIXES}
    assert set(types) == expected
    assert all(types[t] == "sensor_msgs/msg/CameraInfo" for t in expected if t.endswith("camera_info"))
    assert all(types[t] == "sensor_msgs/msg/Image" for t in expected if not t.endswith("camera_info"))
    counts: dict[str, int] = defaultdict(int)
    for m in messages:
        counts[m.topic] += 1
        assert m.msg is not None and not m.error
    assert set(counts.values()) == {8}


def test_stamps_10hz_shared_by_every_topic_and_camera(messages: list[BagMessage]) -> None:
    log_times = [m.log_time_ns for m in messages]
    assert log_times == sorted(log_times) and len(set(log_times)) == len(log_times)
    stamps: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        stamps[m.topic].append(int(m.stamp_ns or 0))
        assert m.msg.header.frame_id == m.topic.split("/")[1] + "_optical_frame"
    expected = [START_NS + i * PERIOD_NS for i in range(8)]
    assert all(v == expected for v in stamps.values()), stamps


def test_ground_truth_and_images_are_the_generated_frames(messages: list[BagMessage]) -> None:
    class_to_id = load_label_set("synthetic").class_to_id
    by_topic: dict[str, list[BagMessage]] = defaultdict(list)
    for m in messages:
        by_topic[m.topic].append(m)
    for camera in range(2):
        samples = list(generate(2, seed=7 + camera, height=64, width=128, sequence_length=4))
        semantic = by_topic[f"/cam{camera}/ground_truth/semantic"]
        instance = by_topic[f"/cam{camera}/ground_truth/instance_ids"]
        images = by_topic[f"/cam{camera}/image_raw"]
        first_sequence_max = max(int(s.instance.max()) for s in samples[:4])
        for k, sample in enumerate(samples):
            assert images[k].msg.encoding == "rgb8"
            assert np.array_equal(image_to_array(images[k].msg), sample.image)
            assert semantic[k].msg.encoding == "mono8" and instance[k].msg.encoding == "32SC1"
            assert np.array_equal(image_to_array(semantic[k].msg), class_to_id[sample.semantic])
            ids = image_to_array(instance[k].msg, native=True)
            offset = 0 if sample.sequence == 0 else first_sequence_max
            assert np.array_equal(ids, np.where(sample.instance > 0, sample.instance + offset, 0))
        # thing ids of the second sequence never reuse the first one's
        first = set(np.unique([image_to_array(m.msg, native=True) for m in instance[:4]])) - {0}
        second = set(np.unique([image_to_array(m.msg, native=True) for m in instance[4:]])) - {0}
        assert first and second and not first & second


def test_camera_info_is_a_plausible_pinhole(messages: list[BagMessage]) -> None:
    info = next(m.msg for m in messages if m.topic == "/cam1/camera_info")
    model = CameraModel.from_k(info.k, info.width, info.height)
    assert (info.width, info.height, info.distortion_model) == (128, 64, "plumb_bob")
    assert model == camera_model(64, 128)
    assert model.fx == model.fy == pytest.approx(0.9 * 128) and (model.cx, model.cy) == (64.0, 32.0)
    assert info.p[0] == model.fx and info.p[10] == 1.0 and list(info.r) == [1, 0, 0, 0, 1, 0, 0, 0, 1]


def test_depth_is_a_ground_plane_with_upright_things(messages: list[BagMessage]) -> None:
    for camera in range(2):
        depths = [m for m in messages if m.topic == f"/cam{camera}/depth/image_raw"]
        semantic = [m for m in messages if m.topic == f"/cam{camera}/ground_truth/semantic"]
        instance = [m for m in messages if m.topic == f"/cam{camera}/ground_truth/instance_ids"]
        for d, s, i in zip(depths, semantic, instance, strict=True):
            assert d.msg.encoding == "32FC1"
            depth = image_to_array(d.msg, native=True)
            sem = image_to_array(s.msg)
            ids = image_to_array(i.msg, native=True)
            assert np.isnan(depth[sem == SKY]).all()
            finite = depth[np.isfinite(depth)]
            assert finite.size and (finite > 0).all() and (finite <= MAX_RANGE_M).all()
            road_rows = np.flatnonzero((sem == ROAD).any(axis=1))
            row_depth = [np.nanmedian(np.where(sem[r] == ROAD, depth[r], np.nan)) for r in road_rows[-10:]]
            assert np.all(np.diff(row_depth) < 0), "the ground must come closer row by row"
            for thing in np.unique(ids[ids > 0]):
                values = depth[ids == thing]
                assert np.ptp(values) == 0, "a thing stands upright: one depth"
                assert values[0] <= BACKDROP_M


def test_synthetic_depth_formula() -> None:
    semantic = np.full((10, 4), SKY, np.uint8)
    semantic[4:] = ROAD
    instance = np.zeros((10, 4), np.int32)
    instance[6:9, 1] = 5  # contact row 8
    camera = CameraModel(100.0, 100.0, 2.0, 5.0, 4, 10)
    depth = synthetic_depth(semantic, instance, camera)
    horizon = 3.0  # the row above the first road row
    assert np.isnan(depth[:4]).all()
    assert depth[9, 0] == pytest.approx(100.0 * CAMERA_HEIGHT_M / (9 - horizon))
    assert depth[6, 1] == depth[8, 1] == pytest.approx(100.0 * CAMERA_HEIGHT_M / (8 - horizon))
    assert np.isnan(depth[4, 0])  # 150 m: beyond the range


def test_compressed_mcap(tmp_path: Path) -> None:
    config = SynthBagConfig(cameras=1, frames=2, size=(32, 64), compressed=True, storage="mcap", seed=3)
    write_synthetic_bag(tmp_path / "bag", config)
    assert (tmp_path / "bag" / "bag.mcap").is_file()
    images = [m for m in read_messages(tmp_path / "bag") if m.topic == "/cam0/image_raw/compressed"]
    assert len(images) == 2 and images[0].msgtype == "sensor_msgs/msg/CompressedImage"
    sample = next(generate(1, seed=3, height=32, width=64, sequence_length=2))
    decoded = compressed_to_color(images[0].msg, "rgb").astype(np.int16)
    error = np.abs(decoded - sample.image).mean()
    swapped = np.abs(decoded[..., ::-1] - sample.image).mean()
    assert error < 15 and error < swapped / 2  # lossy (small noisy image), but RGB in the right order


def test_invalid_configs_and_existing_output(bag: Path) -> None:
    with pytest.raises(ConfigError, match="cameras=0"):
        SynthBagConfig(cameras=0)
    with pytest.raises(ConfigError, match="at least 16"):
        SynthBagConfig(size=(8, 64))
    with pytest.raises(BagError, match="exists"):
        write_synthetic_bag(bag, SynthBagConfig(frames=1, size=(16, 16)))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_bag"
    assert main(["bag", "synth", str(out), "--cameras", "3", "--frames", "2", "--size", "16x32"]) == 0
    assert "/cam2/image_raw" in capsys.readouterr().out
    assert len(topic_types(out)) == 15
    assert main(["bag", "info", str(out)]) == 0
    assert "/cam1/depth/image_raw  sensor_msgs/msg/Image  2 messages" in capsys.readouterr().out
    assert main(["bag-info", str(out)]) == 0  # the old command still works
    assert main(["bag", "synth", str(out)]) == 2  # exists: one-line error
    assert "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bag", "synth", str(tmp_path / "x"), "--size", "32"])
