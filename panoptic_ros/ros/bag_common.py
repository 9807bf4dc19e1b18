"""What the bag player and recorder share: their error, message classes by type name, QoS."""

from __future__ import annotations

from panoptic_ros.ros import conversions
from panoptic_ros.ros.conversions import MessageTypeError
from panoptic_ros.ros.qos import type_qos

__all__ = ["BagRosError", "normalize_type", "ros_message_class", "topic_qos"]


class BagRosError(MessageTypeError):
    """Playing or recording a bag over ROS failed: no subscriber matched, a type is not installed,
    a topic never appeared."""


def normalize_type(msgtype: str) -> str:
    """``pkg/msg/Name`` from ``pkg/msg/Name`` or ``pkg/Name`` (:class:`BagRosError` otherwise)."""
    try:
        return conversions.normalize_type(msgtype)
    except MessageTypeError as err:
        raise BagRosError(str(err)) from err


def ros_message_class(msgtype: str) -> type:
    """The generated rclpy message class of ``pkg/msg/Name``.

    Raises:
        BagRosError: the message package is not installed or has no such message.
    """
    try:
        return conversions.message_class(msgtype)
    except MessageTypeError as err:
        raise BagRosError(str(err)) from err


topic_qos = type_qos
