"""``panoptic-ros bag play``: publish a rosbag2 file's messages through rclpy with their original timing.

Without ``ros2 bag`` (not on PyPI), this replays camera bags into a running node: every message of
the chosen topics is deserialized with ``rosbags`` (a message that does not deserialize is counted
and skipped, so a corrupt record never reaches a subscriber) and its stored CDR bytes are published
as a serialized message (``Publisher.publish(bytes)``), so no conversion to rclpy objects is needed.
Messages go out at their bag times, the gaps scaled by ``1 / rate``. Header stamps are the bag's,
also when ``loop`` restarts the bag: consumers see time jump back at each restart (the node's
tracker resets on it).

Before the first message the player waits until every camera topic it plays (not depth, ground
truth or outputs; every topic when there is none; or the topics named) has a matched subscriber,
then lets discovery settle briefly, so the first frames are not published into the void.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.signals import SignalHandlerOptions

from panoptic_ros.core.topics import is_camera_topic
from panoptic_ros.data.bag_io import read_messages, topic_types
from panoptic_ros.data.bag_types import (
    CAMERA_INFO_TYPE,
    CATEGORY_ARRAY_TYPE,
    CATEGORY_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    INSTANCE_ARRAY_TYPE,
    INSTANCE_TYPE,
)
from panoptic_ros.data.bags import BagError
from panoptic_ros.errors import ConfigError
from panoptic_ros.ros.bag_common import BagRosError, ros_message_class, topic_qos

#: Types played when no topics are named: camera images, calibration (and depth, an Image) and ours.
PLAYED_TYPES = (
    IMAGE_TYPE,
    COMPRESSED_TYPE,
    CAMERA_INFO_TYPE,
    CATEGORY_TYPE,
    CATEGORY_ARRAY_TYPE,
    INSTANCE_TYPE,
    INSTANCE_ARRAY_TYPE,
)
#: How long reliable publishers may take to deliver their last messages before the player exits (s).
DRAIN_S = 5.0


@dataclass(frozen=True)
class Published:
    """One published message, as passed to ``on_publish``: topic, type, bag time, header stamp (None
    without a header), index in the bag pass and the pass number (0 for the first)."""

    topic: str
    msgtype: str
    log_time_ns: int
    stamp_ns: int | None
    index: int
    loop: int


@dataclass(frozen=True)
class PlayReport:
    """What :func:`play` published: messages per topic, malformed ones skipped per topic, passes over
    the bag and the wall time."""

    published: dict[str, int]
    malformed: dict[str, int]
    passes: int
    seconds: float

    def summary(self) -> str:
        total = sum(self.published.values())
        bad = sum(self.malformed.values())
        return (
            f"published {total} messages on {len(self.published)} topics in {self.passes} pass(es), "
            f"{bad} malformed skipped, {self.seconds:.1f} s"
        )


def select_topics(types: dict[str, str], topics: Sequence[str] | None, bag: Path) -> dict[str, str]:
    """The topics to play and their types: ``topics`` (each must be in the bag), else every topic of
    a :data:`PLAYED_TYPES` type.

    Raises:
        BagError: a named topic is not in the bag, or nothing is left to play.
    """
    if topics:
        missing = [t for t in topics if t not in types]
        if missing:
            raise BagError(f"bag {bag} has no topic {missing}; its topics: {sorted(types)}")
        chosen = {t: types[t] for t in dict.fromkeys(topics)}
    else:
        chosen = {t: m for t, m in types.items() if m in PLAYED_TYPES}
    if not chosen:
        raise BagError(f"bag {bag} has no topic to play (images, camera_info or panoptic_ros types)")
    return chosen


def _wait_for_subscribers(publishers: dict[str, Any], watched: Sequence[str], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        missing = [t for t in watched if publishers[t].get_subscription_count() == 0]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise BagRosError(
                f"no subscriber matched {missing} within {wait_s:g} s; start the consumer first (same "
                "ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE and QoS), or play without waiting (--wait 0)"
            )
        time.sleep(0.05)


def watched_topics(chosen: dict[str, str], wait_for: Sequence[str] | None) -> list[str]:
    """The topics that need a subscriber before playing: ``wait_for`` (each must be played), else
    the camera topics played (:func:`~panoptic_ros.core.topics.is_camera_topic`), else all of them.

    Raises:
        ConfigError: a ``wait_for`` topic is not played.
    """
    if wait_for:
        unknown = [t for t in wait_for if t not in chosen]
        if unknown:
            raise ConfigError(f"wait-for topics {unknown} are not played; played: {sorted(chosen)}")
        return list(dict.fromkeys(wait_for))
    cameras = [t for t, m in chosen.items() if m in (IMAGE_TYPE, COMPRESSED_TYPE) and is_camera_topic(t)]
    return cameras or list(chosen)


def publish_offset_s(log_time_ns: int, first_log_time_ns: int, rate: float) -> float:
    """When a message goes out, in seconds after the pass's first one: its bag-time gap over ``rate``."""
    return (log_time_ns - first_log_time_ns) / 1e9 / rate


def _sleep_until(target: float, stop: threading.Event | None) -> bool:
    """Sleep until the monotonic time ``target``; False when ``stop`` was set meanwhile."""
    while True:
        remaining = target - time.monotonic()
        if stop is not None and stop.is_set():
            return False
        if remaining <= 0:
            return True
        if stop is not None:
            stop.wait(min(remaining, 0.1))
        else:
            time.sleep(min(remaining, 0.1))


def play(
    bag: str | Path,
    *,
    rate: float = 1.0,
    loop: bool = False,
    topics: Sequence[str] | None = None,
    qos_reliable: bool = True,
    on_publish: Callable[[Published], None] | None = None,
    wait_for: Sequence[str] | None = None,
    wait_s: float = 10.0,
    settle_s: float = 0.5,
    depth: int = 10,
    stop: threading.Event | None = None,
) -> PlayReport:
    """Publish the messages of ``bag`` (see the module docstring).

    Args:
        bag: a rosbag2 folder (sqlite3 or MCAP).
        rate: playback speed factor (2.0 = twice as fast); must be positive.
        loop: start over at the end until ``stop`` is set (or Ctrl-C).
        topics: the topics to play; default every image, camera_info and panoptic_ros topic.
        qos_reliable: reliable publishers (default), else best effort. ``CategoryArray`` topics are
            always reliable and transient local.
        on_publish: called after each publish.
        wait_for: topics that need a subscriber before the first message; default the camera
            topics played (not depth, ground truth or outputs), or all when there are none.
        wait_s: how long to wait for subscribers before the first message; 0 = do not wait.
        settle_s: pause after the subscribers matched, for their side of discovery.
        depth: publisher history depth.
        stop: set it to end playback early.

    Raises:
        ConfigError: ``rate`` is not positive.
        BagError: the bag cannot be read or has none of the topics.
        BagRosError: a message type is not installed, or no subscriber matched within ``wait_s``.
    """
    if not rate > 0:
        raise ConfigError(f"rate={rate} must be positive")
    bag = Path(bag)
    chosen = select_topics(topic_types(bag), topics, bag)
    watched = watched_topics(chosen, wait_for)
    classes = {topic: ros_message_class(msgtype) for topic, msgtype in chosen.items()}
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    start = time.monotonic()
    published: dict[str, int] = {}
    malformed: dict[str, int] = {}
    passes = 0
    try:
        node = rclpy.create_node("panoptic_bag_player", context=context)
        publishers = {
            topic: node.create_publisher(
                classes[topic], topic, topic_qos(chosen[topic], reliable=qos_reliable, depth=depth)
            )
            for topic in chosen
        }
        if wait_s > 0:
            _wait_for_subscribers(publishers, watched, wait_s)
            _sleep_until(time.monotonic() + settle_s, stop)
        while stop is None or not stop.is_set():
            first_log: int | None = None
            pass_start = 0.0
            for index, message in enumerate(read_messages(bag, list(chosen))):
                if message.msg is None:
                    malformed[message.topic] = malformed.get(message.topic, 0) + 1
                    continue
                if first_log is None:  # the schedule starts at the first message, not at opening the bag
                    first_log, pass_start = message.log_time_ns, time.monotonic()
                target = pass_start + publish_offset_s(message.log_time_ns, first_log, rate)
                if not _sleep_until(target, stop):
                    break
                publishers[message.topic].publish(message.raw)
                published[message.topic] = published.get(message.topic, 0) + 1
                if on_publish is not None:
                    on_publish(
                        Published(
                            message.topic,
                            message.msgtype,
                            message.log_time_ns,
                            message.stamp_ns,
                            index,
                            passes,
                        )
                    )
            passes += 1
            if not loop or first_log is None:
                break
        # let reliable readers fetch the last messages; polled with a zero timeout, because a blocking
        # wait holds the GIL and would stall every other thread of this process (e.g. a recorder)
        deadline = time.monotonic() + DRAIN_S
        pending = list(publishers.values())
        while pending and time.monotonic() < deadline:
            pending = [p for p in pending if not p.wait_for_all_acked(Duration(nanoseconds=0))]
            if pending:
                time.sleep(0.02)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return PlayReport(published, malformed, passes, time.monotonic() - start)
