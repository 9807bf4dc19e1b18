"""A camera's side inputs for 3D positions: its latest camera_info and recent depth images.

Subscription callbacks store the messages as they come (no decoding there); the worker asks for the
depth image nearest a frame's stamp within a tolerance and decodes only that one
(:mod:`panoptic_ros.core.decode`). ROS-free: the messages are any objects with the ROS field names.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

from panoptic_ros.core import stamps
from panoptic_ros.core.decode import camera_model, depth_frame
from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.errors import ImageDecodeError

#: Depth images kept per camera for matching.
KEEP_DEPTH = 8


class SideInputs:
    """One camera's camera_info and depth images (thread-safe: callbacks put, the worker matches)."""

    def __init__(self, *, compressed_depth: bool = False) -> None:
        self.compressed_depth = compressed_depth
        self._lock = threading.Lock()
        self._info: Any = None
        self._depth: deque[tuple[int, Any]] = deque(maxlen=KEEP_DEPTH)

    def put_info(self, msg: Any) -> None:
        self._info = msg

    def put_depth(self, msg: Any) -> None:
        with self._lock:
            self._depth.append((stamps.stamp_ns(msg), msg))

    def match(
        self, stamp_ns: int, size: tuple[int, int], tolerance_ns: int
    ) -> tuple[np.ndarray, CameraModel] | None:
        """The depth (meters) and camera model for a frame of ``size`` (height, width) stamped
        ``stamp_ns``: the nearest depth image within ``tolerance_ns``, with the latest camera_info.
        None when either is missing or too far in time.

        Raises:
            ImageDecodeError: the depth image cannot be decoded, or is not ``H x W``.
            ConfigError: a depth encoding that is not depth, or an uncalibrated camera_info.
        """
        info = self._info
        if info is None:
            return None
        with self._lock:
            candidates = list(self._depth)
        if not candidates:
            return None
        depth_stamp, depth_msg = min(candidates, key=lambda c: abs(c[0] - stamp_ns))
        if abs(depth_stamp - stamp_ns) > tolerance_ns:
            return None
        model = camera_model(info, fallback_size=size)
        depth = depth_frame(depth_msg, compressed=self.compressed_depth)
        if depth.ndim != 2:
            raise ImageDecodeError(f"depth image has shape {depth.shape}, expected H x W")
        return depth, model
