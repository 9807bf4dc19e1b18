"""The node's camera subscriptions: QoS that follows the publishers, and a watch on arrivals.

Created at activation, destroyed at deactivation. Each topic (image, camera_info, depth) is subscribed
with the reliability :func:`~panoptic_ros.runtime.arrivals.adopted_reliability` decides from the
publishers on the graph, and decided again whenever they change: at once when the subscription's
*matched* or *incompatible QoS* event fires, and on a periodic check of the graph (discovery can find
a publisher after activation, so a decision taken once at start-up would be a race). A change
subscribes anew before the old subscription is destroyed, so no frame falls between the two; a
frame both deliver is taken once (same publisher and sequence number).

Every image topic has an :class:`~panoptic_ros.runtime.arrivals.ArrivalWatch`: publishers but no
frames (or publishers that cannot match) are logged once and reported WARN on ``/diagnostics``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rclpy.event_handler import SubscriptionEventCallbacks

from panoptic_ros.ros.camera_io import CameraIO
from panoptic_ros.ros.qos import camera_qos, offer
from panoptic_ros.runtime.arrivals import ArrivalWatch, Offer, adopted_reliability
from panoptic_ros.runtime.config import NodeConfig

#: Seconds between two looks at the graph (publishers come and go); events act at once.
GRAPH_CHECK_S = 1.0
#: Seconds between two looks for a topic marked by an event.
EVENT_CHECK_S = 0.1


class InputNode(Protocol):
    """What :class:`CameraInputs` uses of the node (an rclpy node)."""

    def create_subscription(self, *args: Any, **kwargs: Any) -> Any: ...
    def destroy_subscription(self, subscription: Any) -> Any: ...
    def create_timer(self, *args: Any, **kwargs: Any) -> Any: ...
    def destroy_timer(self, timer: Any) -> Any: ...
    def get_publishers_info_by_topic(self, topic: str) -> list[Any]: ...
    def get_logger(self) -> Any: ...


@dataclass
class _Topic:
    kind: type
    callback: Callable[..., None]
    subscription: Any = None
    reliability: str = ""


def large_image_profile() -> bool:
    """Whether a Fast DDS profile file is loaded in this process (``FASTDDS_DEFAULT_PROFILES_FILE``)."""
    return bool(os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"))


class CameraInputs:
    """Every camera's subscriptions and arrival watches (see the module docstring)."""

    def __init__(
        self,
        node: InputNode,
        config: NodeConfig,
        cameras: dict[str, CameraIO],
        on_image: Callable[[str], Callable[..., None]],
        received: Callable[[str], int],
    ) -> None:
        self.node = node
        self.config = config
        self._received = received
        self._topics: dict[str, _Topic] = {}
        self.watches: dict[str, ArrivalWatch] = {}
        self._images: dict[str, str] = {}  # camera key -> image topic
        self._marked: set[str] = set()
        self._next_graph_check = 0.0
        for key, camera in cameras.items():
            for kind, topic, callback in camera.subscriptions(on_image(key)):
                self._topics[topic] = _Topic(kind, callback)
                self._subscribe(topic, self._offers(topic))
            self._images[key] = camera.topics.image
            self.watches[key] = ArrivalWatch(camera.topics.image, config.no_frames_timeout)
        self._timer = node.create_timer(EVENT_CHECK_S, self.check)

    def destroy(self) -> None:
        self.node.destroy_timer(self._timer)
        for entry in self._topics.values():
            if entry.subscription is not None:
                self.node.destroy_subscription(entry.subscription)
        self._topics.clear()

    def problems(self) -> dict[str, str]:
        """The arrival problem of each camera that has one (for ``/diagnostics``)."""
        return {key: w.problem.text for key, w in self.watches.items() if w.problem is not None}

    # --------------------------------------------------------------------------------------------

    def _offers(self, topic: str) -> list[Offer]:
        return [offer(info) for info in self.node.get_publishers_info_by_topic(topic)]

    def _subscribe(self, topic: str, offers: list[Offer]) -> None:
        """Subscribe ``topic`` with the reliability its publishers call for, when that changed; the
        new subscription exists before the old one goes."""
        entry = self._topics[topic]
        config = self.config
        reliability = adopted_reliability(config.qos_mode, config.qos_reliability, offers)
        if reliability == entry.reliability:
            return
        events = SubscriptionEventCallbacks(
            matched=lambda _info: self._marked.add(topic),
            incompatible_qos=lambda _info: self._marked.add(topic),
        )
        qos = camera_qos(reliability, config.qos_depth)
        new = self.node.create_subscription(entry.kind, topic, entry.callback, qos, event_callbacks=events)
        old, entry.subscription = entry.subscription, new
        if old is not None:
            self.node.destroy_subscription(old)
            publishers = "; ".join(o.describe() for o in offers) or "none"
            self.node.get_logger().info(
                f"{topic}: subscribed {reliability.replace('_', ' ')} (was "
                f"{entry.reliability.replace('_', ' ')}; publishers: {publishers})"
            )
        entry.reliability = reliability

    def check(self) -> None:
        """Decide the QoS again for the topics an event marked (every topic once a second) and
        update the arrival watches."""
        now = time.monotonic()
        every = now >= self._next_graph_check
        if not every and not self._marked:
            return
        topics = list(self._topics) if every else [t for t in self._marked if t in self._topics]
        self._marked.clear()
        offers = {topic: self._offers(topic) for topic in topics}
        for topic, found in offers.items():
            self._subscribe(topic, found)
        if not every:
            return
        self._next_graph_check = now + GRAPH_CHECK_S
        log = self.node.get_logger()
        profile = large_image_profile()
        for key, watch in self.watches.items():
            topic = self._images[key]
            had = watch.problem
            problem, new = watch.update(
                now, self._received(key), offers[topic], self._topics[topic].reliability, profile=profile
            )
            if new and problem is not None:
                log.warning(problem.text)
            elif had is not None and problem is None:
                log.info(f"{topic}: frames arriving again ({self._received(key)} received so far)")
