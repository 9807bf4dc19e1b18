"""What the bag player and recorder share: rclpy message classes by type name, their error, QoS."""

from __future__ import annotations

import importlib
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from panoptic_ros.data.bag_types import CATEGORY_ARRAY_TYPE
from panoptic_ros.errors import PanopticRosError


class BagRosError(PanopticRosError, RuntimeError):
    """Playing or recording a bag over ROS failed: no subscriber matched, a type is not installed,
    a topic never appeared."""


def normalize_type(msgtype: str) -> str:
    """``pkg/msg/Name`` from ``pkg/msg/Name`` or ``pkg/Name``.

    Raises:
        BagRosError: anything else.
    """
    parts = msgtype.strip().split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and parts[1] == "msg" and parts[0] and parts[2]:
        return "/".join(parts)
    raise BagRosError(f"message type {msgtype!r} is not of the form package/msg/Name")


def ros_message_class(msgtype: str) -> Any:
    """The generated rclpy message class of ``pkg/msg/Name`` (imported from ``pkg.msg``).

    Raises:
        BagRosError: the message package is not installed or has no such message.
    """
    package, _, name = normalize_type(msgtype).split("/")
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError as err:
        raise BagRosError(
            f"message type {msgtype}: the ROS package {package!r} is not importable ({err}); "
            "install its messages or leave the topic out"
        ) from err
    try:
        return getattr(module, name)
    except AttributeError as err:
        raise BagRosError(f"message type {msgtype}: {package}.msg has no message {name!r}") from err


def topic_qos(msgtype: str, *, reliable: bool = True, depth: int = 10) -> QoSProfile:
    """The QoS the node uses for a type: ``CategoryArray`` is latched (transient local, reliable,
    depth 1); everything else volatile, reliable (or best effort), keep last ``depth``."""
    if normalize_type(msgtype) == CATEGORY_ARRAY_TYPE:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(int(depth), 1),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )
