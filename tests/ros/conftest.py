"""Every test in tests/ros needs rclpy and the generated messages."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/ros/" in str(item.fspath):
            item.add_marker(pytest.mark.ros)
