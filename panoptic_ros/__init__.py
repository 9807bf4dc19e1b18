"""panoptic_ros: real-time panoptic perception for ROS 2.

The package is layered: everything outside :mod:`panoptic_ros.ros` is ROS-free and runs with plain
Python (the ``panoptic-ros`` command); only :mod:`panoptic_ros.ros` imports ``rclpy`` and messages.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

#: How long PyTorch's idle OpenMP workers (GNU libgomp, on Linux) spin after a parallel region before
#: they sleep, unless the environment sets it. libgomp's default (300,000 iterations) kept them
#: spinning into the network that follows the post-processing (ONNX Runtime's own threads, on the same
#: cores): on 2 cores the network took 1.15-1.3x its time (``python -m benchmarks.run spin``). A short
#: spin still bridges the gaps between one frame's PyTorch ops. libgomp reads it when it loads, so it
#: is set here, before this package imports PyTorch (a process that imported PyTorch first keeps its
#: setting).
GOMP_SPINCOUNT = "10000"
os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
