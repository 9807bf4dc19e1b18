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
    }


def test_replay_and_multi_camera_arguments() -> None:
    assert {"bag", "rate", "loop", "cameras", "params_file", "model"} <= _declared_arguments(
        LAUNCH / "replay.launch.py"
    )
    assert {"cameras", "params_file", "model"} <= _declared_arguments(LAUNCH / "multi_camera.launch.py")


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
