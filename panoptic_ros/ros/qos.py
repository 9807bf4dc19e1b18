"""The QoS profiles of the node and the bag tools, in one place.

Outputs are reliable (keep last ``depth``); the per-camera outputs that late joiners need
(``categories``, ``label_info``) are latched (transient local, depth 1). Subscriptions follow
``qos.mode``: ``sensor_data`` (best effort), ``match_publisher`` (the publishers' reliability, found on
the graph), ``explicit`` (``qos.reliability``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

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


def subscription_qos(
    mode: str, reliability: str, depth: int, publishers: Sequence[ReliabilityPolicy] = ()
) -> tuple[QoSProfile, str]:
    """A camera subscription's QoS for ``qos.mode`` and, in ``match_publisher`` mode, the reliability
    of the publishers found on the topic; and a warning ('' when none)."""
    chosen = ReliabilityPolicy.BEST_EFFORT
    warning = ""
    if mode == "explicit":
        chosen = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    elif mode == "match_publisher":
        if publishers and all(r == ReliabilityPolicy.RELIABLE for r in publishers):
            chosen = ReliabilityPolicy.RELIABLE
        elif not publishers:
            warning = (
                "qos.mode match_publisher: no publisher on the topic yet; subscribing best effort "
                "(receives from reliable and best-effort publishers)"
            )
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=chosen,
        durability=DurabilityPolicy.VOLATILE,
    )
    return profile, warning
