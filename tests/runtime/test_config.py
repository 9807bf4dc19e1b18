"""The node's parameter table and the validated configuration built from it (no ROS needed)."""

from __future__ import annotations

import pytest

from panoptic_ros.errors import ConfigError
from panoptic_ros.runtime.config import BY_NAME, PARAMETERS, NodeConfig


def test_defaults_make_a_valid_configuration() -> None:
    config = NodeConfig.from_values({})
    assert [c.image for c in config.cameras] == ["/camera/image_raw"]
    assert config.qos_mode == "match_publisher" and config.no_frames_timeout > 0 and config.engine.tracking


def test_every_parameter_has_a_description_and_a_type() -> None:
    for spec in PARAMETERS:
        assert spec.description, spec.name
        assert spec.value_type in (bool, int, float, str, list), spec.name
        if spec.default is not None:
            spec.check(spec.default)


def test_cameras_pair_topics_and_detect_compressed() -> None:
    config = NodeConfig.from_values(
        {
            "image_topics": ["/a/image_raw", "/b/image_raw/compressed"],
            "camera_info_topics": ["/a/camera_info", ""],
            "depth_topics": ["/a/depth/image_raw", ""],
        }
    )
    a, b = config.cameras
    assert (a.compressed, b.compressed) == (False, True)
    assert (a.camera_info, a.depth, b.depth) == ("/a/camera_info", "/a/depth/image_raw", "")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"image_topics": []}, ["image_topics", "empty"]),
        ({"image_topics": ["/a", "/a"]}, ["twice"]),
        ({"image_topics": ["/a", "/b"], "depth_topics": ["/d"]}, ["depth_topics", "1 entries", "2"]),
        ({"qos.depth": 0}, ["qos.depth", "minimum"]),
        ({"backend": "cuda"}, ["backend", "one of"]),
        ({"precision": "bf16"}, ["precision", "one of"]),
        ({"tracker.low_score": 0.9}, ["low_score", "high_score"]),
        ({"tracking": "yes"}, ["tracking", "bool"]),
        ({"sync_tolerance": float("nan")}, ["sync_tolerance"]),
        ({"no_such_parameter": 1}, ["unknown parameter"]),
    ],
)
def test_bad_values_are_refused_with_the_reason(values: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_values(values)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_integers_are_accepted_for_float_parameters() -> None:
    BY_NAME["sync_tolerance"].check(1)
    with pytest.raises(ConfigError):
        BY_NAME["qos.depth"].check(1.5)


def test_precision_reaches_the_backend_unless_auto() -> None:
    from panoptic_ros.resources import default_model
    from panoptic_ros.runtime import FrameEngine

    assert NodeConfig.from_values({}).backend_options() == {}
    options = NodeConfig.from_values({"side_thread": False, "precision": "int8"}).engine_options()
    assert options["side_thread"] is False and options["backend_options"] == {"precision": "int8"}
    assert NodeConfig.from_values({}).engine_options()["side_thread"] is True
    described = {}
    for precision in ("auto", "fp32", "int8"):
        options = NodeConfig.from_values({"precision": precision}).backend_options()
        assert options == ({} if precision == "auto" else {"precision": precision})
        engine = FrameEngine.open(
            default_model(), backend="onnxruntime", device="cpu", backend_options=options
        )
        try:
            described[precision] = engine.describe()
        finally:
            engine.close()
    # the shipped model has a current INT8 companion: auto runs it on the CPU
    assert described == {
        "auto": "onnxruntime int8 on cpu",
        "fp32": "onnxruntime fp32 on cpu",
        "int8": "onnxruntime int8 on cpu",
    }
