"""Shared test set-up: ROS availability, an isolated DDS domain per run, repository paths."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ros_available() -> str | None:
    """None when rclpy and this package's messages import, else the reason they do not."""
    for module in ("rclpy", "panoptic_ros.msg"):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not importable"
        except ImportError as err:
            return f"{module} is not importable ({err})"
    return None


ROS_MISSING = _ros_available()


def pytest_configure(config: pytest.Config) -> None:
    # One DDS domain per test run, so parallel runs on one machine never see each other's topics,
    # and discovery stays on this machine.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random().randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ROS_MISSING is None:
        return
    if os.environ.get("PANOPTIC_ROS_REQUIRE_ROS") == "1":
        # `make test` sets this: there the ROS tests must run, so a missing build is an error.
        raise pytest.UsageError(f"ROS tests required but {ROS_MISSING}; run 'make setup'")
    skip = pytest.mark.skip(reason=f"ROS 2 not available: {ROS_MISSING} (run 'make setup' to build it)")
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)
