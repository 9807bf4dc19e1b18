"""The node's ``/diagnostics``: periodic, at once on a worker fault, and the final counts at shutdown.

The contents are described by :mod:`panoptic_ros.runtime.diagnostics` from the node's statistics; this
class owns the publisher and the timer, each camera's over-budget watchdog
(:mod:`panoptic_ros.runtime.watchdog`, its changes logged once), keeps each camera's one-line status
(drawn in rviz with the markers), and prints the final balance of every camera.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

from rclpy.duration import Duration

from panoptic_ros.ros.conversions import message_class, to_ros
from panoptic_ros.ros.inputs import CameraInputs
from panoptic_ros.runtime.config import NodeConfig
from panoptic_ros.runtime.diagnostics import PipelineInfo, camera_values, diagnostics, status_line
from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.slots import SlotStats
from panoptic_ros.runtime.stats import CameraStats, NodeStats
from panoptic_ros.runtime.watchdog import ERROR, OK, WARN, Watchdog


class ReportedNode(Protocol):
    """What the reporter reads of the node (``panoptic_ros.ros.node.PanopticNode``)."""

    engine: FrameEngine | None
    config: NodeConfig | None
    stats: NodeStats
    active: bool
    fault: str
    in_flight: dict[str, int]
    inputs: CameraInputs | None

    def slot_stats(self) -> dict[str, SlotStats]: ...
    def camera_keys(self) -> list[str]: ...
    def get_name(self) -> str: ...
    def get_logger(self) -> Any: ...
    def get_clock(self) -> Any: ...
    def create_publisher(self, *args: Any, **kwargs: Any) -> Any: ...
    def create_timer(self, *args: Any, **kwargs: Any) -> Any: ...
    def destroy_timer(self, timer: Any) -> Any: ...
    def destroy_publisher(self, publisher: Any) -> Any: ...


class Reporter:
    """``/diagnostics`` of one node (created at configure, destroyed at cleanup)."""

    def __init__(self, node: ReportedNode, period: float) -> None:
        self.node = node
        self.status_lines: dict[str, str] = {}
        self.watchdogs: dict[str, Watchdog] = {}
        self._levels: dict[str, int] = {}  # each camera's last watchdog level, to log changes once
        self._pub = node.create_publisher(
            message_class("diagnostic_msgs/msg/DiagnosticArray"), "/diagnostics", 10
        )
        self._timer = node.create_timer(period, self.publish)

    def destroy(self) -> None:
        self.node.destroy_timer(self._timer)
        self.node.destroy_publisher(self._pub)

    def publish(self, *, final: bool = False) -> None:
        """The periodic message; ``final``: the counts at shutdown, with the frames left in flight."""
        node = self.node
        engine, config = node.engine, node.config
        if engine is None or config is None:
            return
        now = time.monotonic()
        slots, snapshot = node.slot_stats(), node.stats.snapshot()
        backend = engine.describe()
        for key, stats in snapshot.items():
            dropped = slots[key].dropped if key in slots else 0
            self.status_lines[key] = status_line(key, stats, dropped, backend, now)
        message = diagnostics(
            node.get_name(),
            node.get_clock().now().nanoseconds,
            PipelineInfo.of(engine, active=node.active),
            cameras=node.camera_keys(),
            slots=slots,
            stats=snapshot,
            now=now,
            window_s=config.diagnostics_window,
            fault=node.fault,
            in_flight=dict(node.in_flight) if final else None,
            alerts=self._alerts(now, snapshot, config),
        )
        self._pub.publish(to_ros(message))

    def _alerts(
        self, now: float, snapshot: dict[str, CameraStats], config: NodeConfig
    ) -> dict[str, tuple[int, str]]:
        """Each camera's worst alert: frames not arriving (WARN) or over budget (WARN, then ERROR)."""
        node = self.node
        arriving = node.inputs.problems() if node.inputs is not None else {}
        alerts: dict[str, tuple[int, str]] = {}
        for key in node.camera_keys():
            stats = snapshot.get(key) or CameraStats()
            watchdog = self.watchdogs.setdefault(key, Watchdog())
            watchdog.window, watchdog.error_after = config.diagnostics_window, config.watchdog_error_after
            verdict = watchdog.check(now, stats.samples, stats.arrived_at, config.target_rate)
            self._log_change(key, verdict.level, verdict.message)
            candidates = [(verdict.level, verdict.message)]
            if key in arriving:
                candidates.append((WARN, arriving[key]))
            alerts[key] = max(candidates, key=lambda c: c[0])
        return alerts

    def _log_change(self, camera: str, level: int, message: str) -> None:
        before = self._levels.get(camera, OK)
        self._levels[camera] = level
        if level == before:
            return
        log = self.node.get_logger()
        if level == ERROR:
            log.error(f"{camera}: {message}")
        elif level == WARN and before == OK:
            log.warning(f"{camera}: {message}")
        elif level == OK:
            log.info(f"{camera}: back within the frame budget")

    def final(self) -> dict[str, dict[str, Any]]:
        """Publish the final counts, wait a moment for subscribers to have them, print one line per
        camera, and return them."""
        self.publish(final=True)
        self._pub.wait_for_all_acked(Duration(seconds=2))
        node = self.node
        slots, snapshot = node.slot_stats(), node.stats.snapshot()
        counts = {}
        for key in node.camera_keys():
            stats = snapshot.get(key) or CameraStats()
            v = counts[key] = camera_values(stats, slots.get(key) or SlotStats(), node.in_flight.get(key, 0))
            print(
                f"[{node.get_name()}] final counts {key}: received {v['frames_received']} = published "
                f"{v['frames_published']} + dropped {v['frames_dropped']} + bad {v['frames_bad']} + failed "
                f"{v['frames_failed']} + in flight {v['frames_in_flight']}; lost before the callback "
                f"{v['frames_lost_before_callback']}",
                file=sys.stderr,
            )
        return counts
