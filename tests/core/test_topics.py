"""Topic names of a camera's outputs: one rule for the node and the bag tools."""

from __future__ import annotations

import pytest

from panoptic_ros.core.topics import (
    OUTPUTS,
    camera_info_topic,
    depth_topic,
    ground_truth_topic,
    is_camera_topic,
    join_topic,
    output_namespace,
    output_topic,
)
from panoptic_ros.errors import ConfigError


@pytest.mark.parametrize(
    ("image_topic", "namespace"),
    [
        ("/ns/image_raw", "/ns"),
        ("/ns/image_raw/compressed", "/ns"),
        ("/image_raw", "/"),
        ("/image_raw/compressed", "/"),
        ("/robot/front/image_rect_color", "/robot/front"),
        ("/robot/front/image_rect_color/compressed", "/robot/front"),
        ("/cam/compressed_images", "/cam"),  # only a whole trailing component is stripped
        ("image_raw", ""),
        ("camera/image_raw", "camera"),
        ("camera/image_raw/compressed", "camera"),
    ],
)
def test_output_namespace(image_topic: str, namespace: str) -> None:
    assert output_namespace(image_topic) == namespace


@pytest.mark.parametrize("bad", ["", "   ", "/", "/ns/", "/compressed", "compressed/"])
def test_output_namespace_rejects_non_topics(bad: str) -> None:
    with pytest.raises(ConfigError, match="topic"):
        output_namespace(bad)


@pytest.mark.parametrize(
    ("image_topic", "output", "topic"),
    [
        ("/ns/image_raw", "semantic", "/ns/panoptic/semantic"),
        ("/ns/image_raw/compressed", "instance_ids", "/ns/panoptic/instance_ids"),
        ("/a/b/image_raw", "instances", "/a/b/panoptic/instances"),
        ("/image_raw", "overlay", "/panoptic/overlay"),
        ("image_raw", "categories", "panoptic/categories"),
        ("cam/image_raw/compressed", "semantic", "cam/panoptic/semantic"),
    ],
)
def test_output_topic(image_topic: str, output: str, topic: str) -> None:
    assert output_topic(image_topic, output) == topic


def test_every_output_has_a_topic_and_unknown_ones_are_rejected() -> None:
    topics = {output_topic("/cam0/image_raw", name) for name in OUTPUTS}
    assert topics == {f"/cam0/panoptic/{name}" for name in OUTPUTS}
    with pytest.raises(ConfigError, match="unknown output 'panoptic'"):
        output_topic("/cam0/image_raw", "panoptic")
    with pytest.raises(ConfigError, match="unknown ground-truth map"):
        ground_truth_topic("/cam0/image_raw", "depth")


def test_sibling_topics() -> None:
    assert camera_info_topic("/cam0/image_raw/compressed") == "/cam0/camera_info"
    assert depth_topic("/cam0/image_raw") == "/cam0/depth/image_raw"
    assert ground_truth_topic("/cam0/image_raw", "semantic") == "/cam0/ground_truth/semantic"
    assert camera_info_topic("/image_raw") == "/camera_info"
    assert depth_topic("image_raw") == "depth/image_raw"


def test_join_topic() -> None:
    assert join_topic("/", "a", "b") == "/a/b"
    assert join_topic("/ns/", "/a/", "b") == "/ns/a/b"
    assert join_topic("", "a") == "a"
    assert join_topic("ns", "a") == "ns/a"


@pytest.mark.parametrize(
    ("topic", "camera"),
    [
        ("/cam0/image_raw", True),
        ("/cam0/image_raw/compressed", True),
        ("/front/image_rect_color", True),
        ("/cam0/depth/image_raw", False),
        ("/camera/aligned_depth_to_color/image_raw", False),
        ("/cam0/image_raw/compressedDepth", False),
        ("/cam0/ground_truth/semantic", False),
        ("/cam0/panoptic/overlay", False),
        ("/", False),
    ],
)
def test_is_camera_topic(topic: str, camera: bool) -> None:
    assert is_camera_topic(topic) is camera
