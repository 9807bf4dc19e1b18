"""Setuptools shim: the project is described in pyproject.toml.

Kept for tools that still call ``setup.py`` (older colcon/pip workflows), and for the shared data a
plain ``pip install .`` puts under ``<prefix>/share/panoptic_ros`` (where
:mod:`panoptic_ros.resources` looks): label sets, node parameters, rviz config, launch files,
message definitions (for the bag tools) and the shipped model. In a ROS workspace the package is
built by CMake (``package.xml`` declares ``ament_cmake``), which installs the same folders.
"""

from pathlib import Path

from setuptools import setup

SHARE = "share/panoptic_ros"


def _files(folder: str, pattern: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob(pattern) if p.is_file())


setup(
    data_files=[
        (f"{SHARE}/config", _files("config", "*.yaml") + _files("config", "*.rviz")),
        (f"{SHARE}/config/labels", _files("config/labels", "*.yaml")),
        (f"{SHARE}/launch", _files("launch", "*.py")),
        (f"{SHARE}/msg", _files("msg", "*.msg")),
        (f"{SHARE}/engines", _files("engines", "*.onnx") + _files("engines", "*.json")),
    ]
)
