"""Whether camera frames arrive, and which reliability to subscribe with (ROS-free).

The node subscribes to a camera with the reliability its publishers offer (``qos.mode:
match_publisher``, the default), re-evaluated whenever the publishers on the topic change: a
best-effort subscription receives from every publisher but loses images larger than the transport
carries best effort (about 500 KB with Fast DDS's builtin shared memory), a reliable one receives every
frame but only from reliable publishers.

:class:`ArrivalWatch` notices a topic whose publishers send nothing that arrives: publishers on the
graph but no frame for ``timeout`` seconds, or a publisher whose QoS cannot match the subscription.
It names the topic, the publishers' QoS, the likely cause and the fix; the node logs it once and
reports WARN on ``/diagnostics`` until frames arrive again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RELIABLE, BEST_EFFORT = "reliable", "best_effort"
PROFILE_HINT = (
    "load config/fastdds_large_images.xml (FASTDDS_DEFAULT_PROFILES_FILE) in the camera driver's "
    "process and the node's, or make the camera publish reliable"
)


@dataclass(frozen=True)
class Offer:
    """A publisher's QoS as found on the graph."""

    node: str
    reliability: str
    durability: str = "volatile"
    depth: int = 0

    def describe(self) -> str:
        depth = f", depth {self.depth}" if self.depth else ""
        return f"{self.node or '?'}: {self.reliability.replace('_', ' ')}, {self.durability}{depth}"


def adopted_reliability(mode: str, explicit: str, offers: Sequence[Offer]) -> str:
    """The reliability to subscribe with for ``qos.mode`` ``mode`` (``explicit``: ``qos.reliability``).

    ``match_publisher``: reliable when every publisher found is reliable, else best effort (which
    receives from any publisher; also while none is found). ``sensor_data``: best effort.
    """
    if mode == "explicit":
        return RELIABLE if explicit == RELIABLE else BEST_EFFORT
    if mode == "match_publisher" and offers and all(o.reliability == RELIABLE for o in offers):
        return RELIABLE
    return BEST_EFFORT


def incompatible(requested: str, offers: Sequence[Offer]) -> list[Offer]:
    """The publishers a subscription of reliability ``requested`` (volatile) cannot match."""
    return [o for o in offers if requested == RELIABLE and o.reliability != RELIABLE]


@dataclass(frozen=True)
class Problem:
    """Why frames of a topic do not arrive, for the log and ``/diagnostics``."""

    topic: str
    kind: str  # "incompatible_qos" or "no_frames"
    text: str


class ArrivalWatch:
    """One camera topic's arrivals (see the module docstring); call :meth:`update` periodically."""

    def __init__(self, topic: str, timeout: float) -> None:
        self.topic = topic
        self.timeout = timeout
        self.problem: Problem | None = None
        self._received: int | None = None
        self._since: float | None = None  # the last arrival seen, or when publishers appeared

    def update(
        self, now: float, received: int, offers: Sequence[Offer], requested: str, *, profile: bool
    ) -> tuple[Problem | None, bool]:
        """The problem now (or None) and whether it is new (to be logged once) given the frames
        ``received`` so far, the publishers' ``offers``, the subscription's ``requested``
        reliability and whether a large-image transport profile is loaded (``profile``)."""
        arrived = self._received is not None and received != self._received
        self._received = received
        problem = None
        refused = incompatible(requested, offers)
        if refused:
            names = "; ".join(o.describe() for o in refused)
            problem = Problem(
                self.topic,
                "incompatible_qos",
                f"{self.topic}: incompatible QoS: the subscription is reliable, publisher(s) offer best "
                f"effort ({names}); nothing can arrive from them. Fix: qos.mode match_publisher (the "
                "default) or sensor_data",
            )
        elif not offers or self.timeout <= 0:
            self._since = None
        elif arrived:
            self._since = now
        else:
            self._since = now if self._since is None else self._since
            if now - self._since >= self.timeout:
                text = self._silence(now - self._since, offers, requested, profile)
                problem = Problem(self.topic, "no_frames", text)
        new = problem is not None and (self.problem is None or self.problem.kind != problem.kind)
        self.problem = problem
        return problem, new

    def _silence(self, seconds: float, offers: Sequence[Offer], requested: str, profile: bool) -> str:
        names = "; ".join(o.describe() for o in offers)
        head = (
            f"{self.topic}: {len(offers)} publisher(s) ({names}) but no frame arrived for {seconds:.0f} s "
            f"(subscribed {requested.replace('_', ' ')})."
        )
        if requested == BEST_EFFORT and not profile:
            cause = (
                " Likely cause: best-effort images over ~500 KB are lost by Fast DDS's builtin "
                f"transports. Fix: {PROFILE_HINT}"
            )
        elif requested == BEST_EFFORT:
            cause = (
                " Likely cause: best-effort delivery loses the frames (the camera driver's process "
                f"needs the large-image profile too, or they exceed its segment). Fix: {PROFILE_HINT}"
            )
        else:
            cause = " Likely cause: the publisher is not sending (driver stalled or paused) or a firewall."
        return head + cause
