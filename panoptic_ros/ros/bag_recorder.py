"""``panoptic-ros bag record``: write topics received over ROS 2 into a rosbag2 file, without ``ros2 bag``.

Subscriptions are raw (``create_subscription(..., raw=True)``): the CDR bytes go into the bag as
received, with the wall time at which the middleware received them (the message info's
``received_timestamp``, as rosbag2 records; ``time.time_ns()`` in the callback where the middleware
gives none) as bag time, through the ``rosbags`` writer
with this package's types registered (:mod:`panoptic_ros.data.bag_types`), so ``bag eval`` and
``bag play`` read the result. A topic is named with its type (``/cam0/panoptic/instances=
panoptic_ros/msg/PanopticInstanceArray``) or alone, then its type is looked up on the ROS graph.

Each subscription takes the QoS of the topic's publishers found on the graph (transient local when
they all offer it, best effort when any publishes best effort), else reliable and volatile, which
receives from every publisher.

The messages are taken from one wait set (:func:`receive`), not through an executor: rclpy's executor
collects every entity of the node again in Python each time it wakes (about 0.4 ms with 25
subscriptions and their QoS event handlers), and a recorder wakes for nearly every message.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from rclpy.waitable import NumberOfEntities

from panoptic_ros.data.bag_io import BagWriter
from panoptic_ros.data.bags import Storage
from panoptic_ros.errors import ConfigError
from panoptic_ros.ros.bag_common import BagRosError, normalize_type, ros_message_class

#: History depth of the recording subscriptions (a recorder should not drop bursts).
RECORD_DEPTH = 100
#: Longest wait for a message before the recorder checks whether to stop (nanoseconds).
WAKE_NS = 50_000_000


@dataclass(frozen=True)
class RecordReport:
    """What :func:`record` wrote: the bag, messages per topic, wall time."""

    path: Path
    counts: dict[str, int]
    seconds: float

    def summary(self) -> str:
        return (
            f"recorded {sum(self.counts.values())} messages on {len(self.counts)} topics into {self.path} "
            f"in {self.seconds:.1f} s"
        )


def parse_topic(spec: str) -> tuple[str, str | None]:
    """``TOPIC`` or ``TOPIC=TYPE`` -> ``(topic, type or None)``."""
    topic, sep, msgtype = spec.partition("=")
    topic = topic.strip()
    if not topic:
        raise ConfigError(f"topic {spec!r} is empty; use TOPIC or TOPIC=package/msg/Type")
    return topic, normalize_type(msgtype) if sep else None


def _discover(node: Any, wanted: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        graph = dict(node.get_topic_names_and_types())
        found = {t: normalize_type(graph[t][0]) for t in wanted if graph.get(t)}
        missing = [t for t in wanted if t not in found]
        if not missing:
            return found
        if time.monotonic() >= deadline:
            raise BagRosError(
                f"topics {missing} did not appear on the ROS graph within {timeout_s:g} s; start their "
                "publisher first or give the type (TOPIC=package/msg/Type)"
            )
        time.sleep(0.1)


def graph_qos(node: Any, topic: str, msgtype: str = "") -> QoSProfile:
    """A subscription QoS compatible with every publisher of ``topic`` now on the graph. A label set
    (``CategoryArray``) topic with no publisher yet is subscribed transient local, as the node
    publishes it, so that the recorder gets it even when it subscribes first."""
    offered = [info.qos_profile for info in node.get_publishers_info_by_topic(topic)]
    latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    latched = latched or (not offered and msgtype.endswith("/CategoryArray"))
    best_effort = any(q.reliability == ReliabilityPolicy.BEST_EFFORT for q in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=RECORD_DEPTH,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def record(
    out: str | Path,
    topics: Sequence[str],
    *,
    duration: float | None = None,
    storage: Storage = "sqlite3",
    discover_s: float = 10.0,
    stop: threading.Event | None = None,
    on_message: Callable[[str, int], None] | None = None,
    ready: threading.Event | None = None,
) -> RecordReport:
    """Record ``topics`` (``TOPIC`` or ``TOPIC=TYPE``) into the new bag ``out`` until ``duration``
    seconds passed, ``stop`` is set, or Ctrl-C.

    Args:
        on_message: called with ``(topic, bag time ns)`` after each message is written.
        ready: set once the subscriptions exist.

    Raises:
        ConfigError: no topics, or a non-positive duration.
        BagError: ``out`` exists or cannot be written.
        BagRosError: a type is not installed, or an untyped topic never appeared.
    """
    specs = [parse_topic(s) for s in topics]
    if not specs:
        raise ConfigError("name at least one topic to record (--topics TOPIC[=TYPE] ...)")
    if duration is not None and not duration > 0:
        raise ConfigError(f"duration={duration} must be positive")
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    start = time.monotonic()
    try:
        # no executor serves this node: it offers no services (ros2 param / node info would wait on them)
        node = rclpy.create_node(
            "panoptic_bag_recorder",
            context=context,
            start_parameter_services=False,
            parameter_overrides=[Parameter("start_type_description_service", value=False)],
        )
        types = {t: m for t, m in specs if m is not None}
        untyped = [t for t, m in specs if m is None]
        if untyped:
            types.update(_discover(node, untyped, discover_s))
        classes = {topic: ros_message_class(msgtype) for topic, msgtype in types.items()}
        with BagWriter(out, storage) as writer:

            def write(topic: str, data: bytes, info: Mapping[str, int]) -> None:
                # when DDS received it (as rosbag2 records), not when this thread got to it: a busy
                # recorder must not add its own backlog to the latencies measured from the bag
                received = int(info.get("received_timestamp", 0)) or time.time_ns()
                writer.write_raw(topic, types[topic], data, received)
                if on_message is not None:
                    on_message(topic, received)

            subscriptions = []
            for topic, msgtype in types.items():
                writer.add_topic(topic, msgtype)
                subscription = node.create_subscription(  # taken by receive(): no callback runs
                    classes[topic], topic, lambda *_: None, graph_qos(node, topic, msgtype), raw=True
                )
                subscriptions.append((topic, subscription))
            if ready is not None:
                ready.set()
            deadline = start + duration if duration is not None else None

            def recording() -> bool:
                return (stop is None or not stop.is_set()) and (
                    deadline is None or time.monotonic() < deadline
                )

            receive(context, subscriptions, write, recording)
            counts = dict(writer.counts)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return RecordReport(Path(out), counts, time.monotonic() - start)


def receive(
    context: rclpy.Context,
    subscriptions: Sequence[tuple[str, Subscription]],
    write: Callable[[str, bytes, Mapping[str, int]], None],
    going: Callable[[], bool],
) -> None:
    """Take every message of the raw ``subscriptions`` as it arrives, ``write(topic, data, info)``,
    and serve their QoS event handlers (an incompatible publisher is reported as an executor would),
    until ``going()`` is false or the context shuts down (checked at least every :data:`WAKE_NS`).

    One wait set, refilled on each wake with the subscriptions and their event handlers; a ready
    subscription gives up to :data:`RECORD_DEPTH` messages (its history) per wake, so a burst costs
    one wake and a topic that never pauses cannot keep the others or the stop waiting.
    """
    handlers = [handler for _, subscription in subscriptions for handler in subscription.event_handlers]
    size = NumberOfEntities(num_subs=len(subscriptions))
    for handler in handlers:
        size += handler.get_num_entities()
    wait_set = _rclpy.WaitSet(
        size.num_subscriptions,
        size.num_guard_conditions,
        size.num_timers,
        size.num_clients,
        size.num_services,
        size.num_events,
        context.handle,
    )
    while going() and context.ok():
        wait_set.clear_entities()
        for _, subscription in subscriptions:
            wait_set.add_subscription(subscription.handle)
        for handler in handlers:
            handler.add_to_wait_set(wait_set)
        wait_set.wait(WAKE_NS)
        ready = set(wait_set.get_ready_entities("subscription"))
        for topic, subscription in subscriptions:
            if subscription.handle.pointer in ready:
                for _ in range(RECORD_DEPTH):  # a history's worth: one busy topic cannot starve the rest
                    taken = subscription.handle.take_message(subscription.msg_type, True)
                    if taken is None:
                        break
                    write(topic, *taken)
        for handler in handlers:
            if handler.is_ready(wait_set):
                _run_once(handler.execute(handler.take_data()))


def _run_once(result: Coroutine[Any, Any, None] | None) -> None:
    """Finish an event handler's ``execute``: a coroutine that does not await (rclpy's), run to its
    end, or nothing (a synchronous one already ran)."""
    if not inspect.iscoroutine(result):
        return
    try:
        result.send(None)
    except StopIteration:
        return
    result.close()
    raise BagRosError("an event handler of the recorder awaited; it cannot be served without an executor")
