"""The QoS profiles of the node and the bag tools, in one place.

Outputs are reliable (keep last ``depth``); the per-camera outputs that late joiners need
(``categories``, ``label_info``) are latched (transient local, depth 1). Camera subscriptions take the
reliability :func:`panoptic_ros.runtime.arrivals.adopted_reliability` decides for ``qos.mode``
(:mod:`panoptic_ros.ros.inputs` re-evaluates it as publishers come and go).
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from panoptic_ros.runtime.arrivals import BEST_EFFORT, RELIABLE, Offer
from panoptic_ros.runtime.outputs import OUTPUTS


def output_qos(*, latched: bool = False, depth: int = 2, reliable: bool = True) -> QoSProfile:
    """A publisher's QoS: latched (transient local, reliable, depth 1) or volatile keep-last ``depth``."""
    if latched:
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


def type_qos(msgtype: str, *, reliable: bool = True, depth: int = 10) -> QoSProfile:
    """The QoS the node offers for a message type: latched for the types of latched outputs."""
    latched = any(o.latched and o.type == msgtype for o in OUTPUTS.values())
    return output_qos(latched=latched, depth=depth, reliable=reliable)


def camera_qos(reliability: str, depth: int) -> QoSProfile:
    """A camera subscription's QoS: ``reliability`` (``reliable`` or ``best_effort``, as decided by
    :func:`panoptic_ros.runtime.arrivals.adopted_reliability`), volatile, keep last ``depth``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(int(depth), 1),
        reliability=ReliabilityPolicy.RELIABLE if reliability == RELIABLE else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def offer(info: Any) -> Offer:
    """A publisher's QoS (an rclpy ``TopicEndpointInfo`` from the graph) as an :class:`Offer`."""
    qos = info.qos_profile
    reliable = qos.reliability == ReliabilityPolicy.RELIABLE
    latched = qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
    node = f"{info.node_namespace.rstrip('/')}/{info.node_name}"
    durability = "transient local" if latched else "volatile"
    return Offer(node, RELIABLE if reliable else BEST_EFFORT, durability, qos.depth)
