"""panoptic_ros: real-time panoptic perception for ROS 2.

The package is layered: everything outside :mod:`panoptic_ros.ros` is ROS-free and runs with plain
Python (the ``panoptic-ros`` command); only :mod:`panoptic_ros.ros` imports ``rclpy`` and messages.
"""

from __future__ import annotations

__version__ = "0.1.0"
