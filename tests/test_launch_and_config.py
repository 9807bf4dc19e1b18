"""Launch files, the parameters file and the rviz configuration agree with the node and the install.

`launch`/`launch_ros` are not on PyPI, so launch files cannot be executed here; they are parsed and
checked for the arguments the documentation promises, the executables CMake installs, and the files
they reference. The parameters file is loaded into the node by tests/ros/test_node_lifecycle.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from panoptic_ros.runtime.config import BY_NAME, PARAMETERS, NodeConfig

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"


def _declared_arguments(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            first = node.args[0]
            assert isinstance(first, ast.Constant)
            names.add(first.value)
    return names


def _executables(path: Path) -> set[str]:
    """Executables named in the launch file or in the shared action it calls."""
    text = path.read_text()
    if "node_action(" in text:
        text += (REPO / "panoptic_ros" / "ros" / "launch_support.py").read_text()
    tree = ast.parse(text)
    return {
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "executable" and isinstance(kw.value, ast.Constant)
    }


@pytest.mark.parametrize("name", ["panoptic.launch.py", "multi_camera.launch.py", "replay.launch.py"])
def test_launch_file_compiles_and_starts_installed_executables(name: str) -> None:
    path = LAUNCH / name
    compile(path.read_text(), str(path), "exec")
    cmake = (REPO / "CMakeLists.txt").read_text()
    for exe in _executables(path) - {"rviz2"}:
        assert f"scripts/{exe}" in cmake, f"{name} starts {exe}, which CMake does not install"
        assert (REPO / "scripts" / exe).is_file()


def test_single_camera_launch_takes_exactly_the_documented_arguments() -> None:
    assert _declared_arguments(LAUNCH / "panoptic.launch.py") == {
        "camera",
        "namespace",
        "params_file",
        "model",
        "fastdds_profile",
    }


def test_replay_and_multi_camera_arguments() -> None:
    assert {"bag", "rate", "loop", "cameras", "params_file", "model"} <= _declared_arguments(
        LAUNCH / "replay.launch.py"
    )
    assert {"cameras", "params_file", "model"} <= _declared_arguments(LAUNCH / "multi_camera.launch.py")
    for name in ("panoptic.launch.py", "multi_camera.launch.py", "replay.launch.py"):
        text = (LAUNCH / name).read_text()
        assert "fastdds_profile" in _declared_arguments(LAUNCH / name), name
        # on by default: the argument defaults to the shipped profile, and every process gets it
        assert "default_value=os.path.join(share, PROFILE)" in text and "profile_env(" in text, name


def test_shipped_fastdds_profile_gives_shared_memory_a_large_segment() -> None:
    from xml.etree import ElementTree

    from panoptic_ros.ros.launch_support import PROFILE, PROFILE_ENV, profile_env

    ns = {"dds": "http://www.eprosima.com"}
    root = ElementTree.parse(REPO / PROFILE).getroot()
    transports = {
        t.findtext("dds:transport_id", namespaces=ns): t
        for t in root.iterfind(".//dds:transport_descriptor", ns)
    }
    shm = [t for t in transports.values() if t.findtext("dds:type", namespaces=ns) == "SHM"]
    assert shm and int(shm[0].findtext("dds:segment_size", namespaces=ns)) >= 32 * 1024 * 1024
    assert any(t.findtext("dds:type", namespaces=ns) == "UDPv4" for t in transports.values())  # other hosts
    participant = root.find(".//dds:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//dds:userTransports/dds:transport_id", ns)]
    assert set(used) == set(transports)
    assert participant.findtext(".//dds:useBuiltinTransports", namespaces=ns) == "false"
    assert profile_env("/x.xml") == {PROFILE_ENV: "/x.xml"} and profile_env("") == profile_env("none") == {}


def test_replay_serves_the_bags_cameras_only(tmp_path: Path) -> None:
    """replay.launch.py picks cameras by the rule of `bag process` and `infer`: on a `bag synth` bag
    (images, depth, camera_info, two ground-truth label images per camera) only the images are
    cameras, each with its own depth and camera_info; an explicit choice is kept."""
    from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag
    from panoptic_ros.data.bag_types import BagError
    from panoptic_ros.data.bags import image_topics
    from panoptic_ros.ros.launch_support import bag_inputs

    bag = tmp_path / "synth"
    write_synthetic_bag(bag, SynthBagConfig(cameras=2, frames=2, size=(48, 96)))
    assert len(image_topics(bag)) > 2  # depth and ground truth are image topics too
    params, played = bag_inputs(bag)
    assert params["image_topics"] == ["/cam0/image_raw", "/cam1/image_raw"]
    assert [t.endswith("camera_info") for t in params["camera_info_topics"]] == [True, True]
    assert ["depth" in t for t in params["depth_topics"]] == [True, True]
    assert set(played) == {*params["image_topics"], *params["camera_info_topics"], *params["depth_topics"]}
    config = NodeConfig.from_values(params)  # the node accepts it
    assert [c.depth for c in config.cameras] == params["depth_topics"]
    only, played = bag_inputs(bag, ["/cam1/image_raw"])
    assert only["image_topics"] == ["/cam1/image_raw"] and "/cam0/image_raw" not in played
    with pytest.raises(BagError, match="no image topic"):
        bag_inputs(bag, ["/nowhere/image_raw"])


def test_parameters_file_documents_valid_values() -> None:
    data = yaml.safe_load((REPO / "config" / "panoptic.yaml").read_text())
    values = data["/**"]["ros__parameters"]
    unknown = sorted(set(values) - set(BY_NAME))
    assert not unknown, f"config/panoptic.yaml sets parameters the node does not have: {unknown}"
    config = NodeConfig.from_values(values)
    assert config.cameras[0].image == "/camera/image_raw"
    text = (REPO / "config" / "panoptic.yaml").read_text()
    undocumented = [p.name for p in PARAMETERS if p.name not in text]
    assert not undocumented, f"parameters missing from config/panoptic.yaml: {undocumented}"


def test_rviz_config_shows_overlay_and_markers() -> None:
    rviz = yaml.safe_load((REPO / "config" / "panoptic.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Class"]: d.get("Topic", {}).get("Value") for d in displays if d.get("Enabled")}
    assert topics["rviz_default_plugins/Image"] == "/camera/panoptic/overlay"
    assert topics["rviz_default_plugins/MarkerArray"] == "/camera/panoptic/markers"


def test_node_documentation_lists_every_parameter() -> None:
    text = (REPO / "docs" / "node.md").read_text()
    missing = [p.name for p in PARAMETERS if f"`{p.name}`" not in text]
    assert not missing, f"docs/node.md does not document {missing}"


def test_launch_overrides_keep_the_params_file_in_force() -> None:
    from panoptic_ros.ros.launch_support import node_overrides, split_topics

    assert node_overrides(["/a/image_raw"]) == {"image_topics": ["/a/image_raw"]}
    cameras = split_topics("/a/image_raw, /b/image_raw/compressed")
    assert cameras == ["/a/image_raw", "/b/image_raw/compressed"]
    overrides = node_overrides(cameras, model="m.onnx", depths=split_topics("/a/depth/image_raw,"))
    assert overrides["depth_topics"] == ["/a/depth/image_raw", ""] and overrides["model"] == "m.onnx"
    NodeConfig.from_values(overrides)  # a configuration the node accepts
    with pytest.raises(ValueError, match="no camera"):
        node_overrides(split_topics(""))
