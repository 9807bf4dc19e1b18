"""Header stamps as nanoseconds: the one conversion in each direction.

Front-ends turn a message's header stamp into nanoseconds once, when a frame arrives
(:func:`stamp_ns`); results carry nanoseconds; the output description turns them back into
``sec``/``nanosec`` once, when a message is described (:func:`split_ns`). Works on rclpy and
``rosbags`` messages alike (both have ``header.stamp.sec`` and ``header.stamp.nanosec``).
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def time_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` (``sec``, ``nanosec``) in nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_ns(msg: Any) -> int:
    """The header stamp of a message in nanoseconds."""
    return time_ns(msg.header.stamp)


def split_ns(ns: int) -> tuple[int, int]:
    """Nanoseconds as ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (the floor for negative times)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec
