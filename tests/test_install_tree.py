"""The CMake install tree (what `colcon build` gives a robot) has everything `ros2 run/launch` needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

INSTALL = REPO / "install"
SHARE = INSTALL / "share" / "panoptic_ros"
SITE = INSTALL / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

pytestmark = pytest.mark.ros


def test_share_folders_installed() -> None:
    for folder in ("launch", "config", "engines"):
        assert (SHARE / folder).is_dir(), f"{SHARE / folder} missing"
    assert (SHARE / "package.xml").is_file()
    for name in ("cityscapes", "coco_panoptic", "synthetic"):
        assert (SHARE / "config" / "labels" / f"{name}.yaml").is_file()
    assert (SHARE / "config" / "fastdds_large_images.xml").is_file()  # the launch files' default profile
    assert (INSTALL / "share" / "ament_index" / "resource_index" / "packages" / "panoptic_ros").is_file()


def test_messages_installed() -> None:
    for name in ("PanopticInstance", "PanopticInstanceArray", "Category", "CategoryArray"):
        assert (SHARE / "msg" / f"{name}.msg").is_file()
        assert (SHARE / "msg" / f"{name}.idl").is_file()
    assert (SITE / "panoptic_ros" / "msg" / "__init__.py").is_file()


def test_executables_installed_and_runnable() -> None:
    exe_dir = INSTALL / "lib" / "panoptic_ros"
    executables = sorted(p.name for p in exe_dir.iterdir() if os.access(p, os.X_OK))
    assert {"panoptic_ros_cli", "panoptic_node", "panoptic_lifecycle_node"} <= set(executables)
    # Run it as `ros2 run` would, against the installed tree only (not the source checkout).
    env = dict(os.environ, PYTHONPATH=str(SITE), PANOPTIC_ROS_SHARE=str(SHARE))
    result = subprocess.run(
        [sys.executable, str(exe_dir / "panoptic_ros_cli"), "labels"],
        cwd=INSTALL,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "cityscapes" in result.stdout and "coco_panoptic" in result.stdout


def test_installed_python_package_is_the_installed_copy() -> None:
    code = "import panoptic_ros, panoptic_ros.msg; print(panoptic_ros.__file__)"
    env = dict(os.environ, PYTHONPATH=str(SITE))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=INSTALL, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(SITE)), result.stdout


def test_pip_wheel_carries_the_shared_data(tmp_path: Path) -> None:
    """`pip install .` (no ROS) installs config, label sets, launch files, msg definitions (for the
    bag tools) and the shipped model under <prefix>/share/panoptic_ros, where resources.py looks."""
    import zipfile

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("panoptic_ros-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    share = "panoptic_ros-0.1.0.data/data/share/panoptic_ros/"
    for path in (
        "config/panoptic.yaml",
        "config/labels/synthetic.yaml",
        "launch/panoptic.launch.py",
        "msg/PanopticInstance.msg",
        "engines/panoptic_synthetic.onnx",
    ):
        assert share + path in names, f"{path} missing from the wheel"
    assert not any(n.startswith("panoptic_ros/msg/") for n in names), "generated messages must not ship"
