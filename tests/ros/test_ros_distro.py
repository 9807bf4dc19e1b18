"""The tests run against the ROS 2 they were asked for: `make test ROS_DISTRO=jazzy` cannot pass on Kilted."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# The rclpy major version of each ROS 2 distribution that scripts/setup.sh sets up.
RCLPY_MAJOR = {"kilted": 9, "jazzy": 7}


def _package_xml_version(prefix: Path, package: str) -> str:
    text = (prefix / "share" / package / "package.xml").read_text()
    match = re.search(r"<version>\s*([0-9.]+)\s*</version>", text)
    assert match, f"no version in {prefix}/share/{package}/package.xml"
    return match.group(1)


def test_rclpy_and_messages_are_of_one_distro() -> None:
    import rclpy
    from ament_index_python.packages import get_package_prefix

    import panoptic_ros.msg

    # The rclpy imported is the one the ament index (AMENT_PREFIX_PATH) names ...
    rclpy_prefix = Path(get_package_prefix("rclpy")).resolve()
    assert Path(rclpy.__file__).resolve().is_relative_to(rclpy_prefix), (rclpy.__file__, rclpy_prefix)
    # ... and this package's generated messages are those of the build the ament index names.
    own_prefix = Path(get_package_prefix("panoptic_ros")).resolve()
    msg_dir = Path(panoptic_ros.msg.__file__).resolve()
    assert msg_dir.is_relative_to(own_prefix), (msg_dir, own_prefix)

    distro = os.environ.get("ROS_DISTRO")
    if distro is None:
        pytest.skip("ROS_DISTRO is not set (make test and scripts/env.sh set it)")
    assert distro in RCLPY_MAJOR, f"ROS_DISTRO={distro}: the project sets up {sorted(RCLPY_MAJOR)}"
    version = _package_xml_version(rclpy_prefix, "rclpy")
    print(f"ROS 2 {distro}: rclpy {version} from {rclpy_prefix}, messages from {own_prefix}")
    assert int(version.split(".")[0]) == RCLPY_MAJOR[distro], (
        f"ROS_DISTRO={distro} expects rclpy {RCLPY_MAJOR[distro]}.x, found {version} in {rclpy_prefix}"
    )
    # The messages were built against this distro's wheels: the CMake cache of their build names them.
    cache = own_prefix.parent / ("build" + own_prefix.name.removeprefix("install")) / "CMakeCache.txt"
    if cache.is_file():
        expected = f"std_msgs_DIR:PATH={rclpy_prefix}/share/std_msgs/cmake"
        assert expected in cache.read_text().splitlines(), f"{cache} not configured against {rclpy_prefix}"
