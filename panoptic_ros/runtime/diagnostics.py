"""The description of the node's ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``), ROS-free.

One status for the pipeline (backend, device, model, label set, the fusion thresholds in force; ERROR
when the worker stopped) and one per camera (every counter of the balance in
:mod:`panoptic_ros.runtime.stats`, rate, latency percentiles per stage). The node wraps the
:class:`~panoptic_ros.core.messages.Message` into rclpy's message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from panoptic_ros.core.messages import Message, header_message
from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.slots import SlotStats
from panoptic_ros.runtime.stats import KINDS, CameraStats

DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class PipelineInfo:
    """What the pipeline status reports: where inference runs and with which thresholds."""

    backend: str
    device: str
    model: str
    label_set: str
    fusion: Mapping[str, Any]
    active: bool

    @classmethod
    def of(cls, engine: FrameEngine, *, active: bool) -> PipelineInfo:
        """The engine's backend, device, model, label set and the fusion thresholds in force."""
        params = engine.pipeline.params
        return cls(
            backend=engine.describe(),
            device=str(engine.device),
            model=str(engine.pipeline.model_path),
            label_set=engine.label_set.name,
            fusion={f.name: getattr(params, f.name) for f in dataclasses.fields(params)},
            active=active,
        )


def _values(**values: object) -> list[Message]:
    return [Message("diagnostic_msgs/msg/KeyValue", {"key": k, "value": str(v)}) for k, v in values.items()]


def _status(level: int, name: str, hardware_id: str, message: str, values: list[Message]) -> Message:
    return Message(
        "diagnostic_msgs/msg/DiagnosticStatus",
        {
            "level": bytes([level]),
            "name": name,
            "hardware_id": hardware_id,
            "message": message,
            "values": values,
        },
    )


def status_line(camera: str, stats: CameraStats, dropped: int, backend: str, now: float) -> str:
    """One line for people (drawn in rviz with the markers): rate, latency, drops, bad frames."""
    total = stats.percentiles("total", (50, 95))
    return (
        f"{camera}: {stats.rate(now):.1f} Hz, latency {total[0]:.0f}/{total[1]:.0f} ms p50/p95, "
        f"{dropped} dropped, {stats.bad + stats.failed} bad ({backend})"
    )


def camera_values(stats: CameraStats, slot: SlotStats, in_flight: int | None = None) -> dict[str, object]:
    """The counters of one camera (see :mod:`panoptic_ros.runtime.stats` for the balance)."""
    values: dict[str, object] = {
        "frames_received": stats.received,
        "frames_published": stats.processed,
        "frames_dropped": slot.dropped,
        "frames_bad": stats.bad,
        "frames_failed": stats.failed,
        "frames_lost_before_callback": stats.lost,
    }
    if in_flight is not None:
        values["frames_in_flight"] = in_flight
    values.update({kind: stats.counts.get(kind, 0) for kind in KINDS})
    return values


def _camera_level(
    fault: str, alert: tuple[int, str], *, waiting: bool, recent: int, window_s: float
) -> tuple[int, str]:
    """A camera's level and message: ERROR when the worker stopped, else the worst of its reasons
    (an alert of the watches, nothing received yet, recent bad frames), every reason named."""
    if fault:
        return ERROR, f"not served: the worker stopped ({fault})"
    reasons = [alert] if alert[0] > OK else []
    if waiting and not reasons:
        reasons.append((WARN, "no frames received yet"))
    if recent:
        reasons.append((WARN, f"{recent} bad, failed or depth-less frames in the last {window_s:.0f} s"))
    if not reasons:
        return OK, "ok"
    return max(level for level, _ in reasons), "; ".join(text for _, text in reasons)


def diagnostics(
    node: str,
    stamp_ns: int,
    pipeline: PipelineInfo,
    *,
    cameras: Sequence[str],
    slots: Mapping[str, SlotStats],
    stats: Mapping[str, CameraStats],
    now: float,
    window_s: float = 10.0,
    fault: str = "",
    in_flight: Mapping[str, int] | None = None,
    alerts: Mapping[str, tuple[int, str]] | None = None,
) -> Message:
    """The ``/diagnostics`` message of the node ``node`` at ``stamp_ns`` (``now``: monotonic seconds).

    A camera is WARN while it had bad, failed or depth-less frames in the last ``window_s`` seconds
    (not forever after one), or when active without a frame yet; stream events of served frames are
    counted, not failures. ``fault``: why the worker stopped (everything goes ERROR). ``in_flight``
    (per camera) marks the final counts published at shutdown. ``alerts``: per camera, a level and a
    message from the watches (frames that do not arrive, :class:`~panoptic_ros.runtime.arrivals.ArrivalWatch`;
    frames over budget, :class:`~panoptic_ros.runtime.watchdog.Watchdog`), reported when nothing worse is.
    """
    thresholds = {f"fusion_{k}": v for k, v in sorted(pipeline.fusion.items())}
    final = {"final": "true"} if in_flight is not None else {}
    statuses = [
        _status(
            ERROR if fault else OK,
            f"{node}: pipeline",
            pipeline.device,
            f"worker stopped: {fault}" if fault else "active" if pipeline.active else "inactive",
            _values(
                backend=pipeline.backend,
                device=pipeline.device,
                model=pipeline.model,
                label_set=pipeline.label_set,
                cameras=len(cameras),
                **thresholds,
                **final,
            ),
        )
    ]
    for key in cameras:
        camera = stats.get(key) or CameraStats()
        values = camera_values(
            camera, slots.get(key) or SlotStats(), None if in_flight is None else in_flight.get(key, 0)
        )
        values.update(
            {"rate_hz": f"{camera.rate(now):.2f}", "backend": pipeline.backend, "device": pipeline.device}
        )
        for stage in sorted(camera.latency_ms):
            p50, p95 = camera.percentiles(stage, (50, 95))
            values[f"latency_{stage}_ms_p50"] = f"{p50:.2f}"
            values[f"latency_{stage}_ms_p95"] = f"{p95:.2f}"
        recent = camera.recent_problems(now, window_s)
        level, message = _camera_level(
            fault,
            (alerts or {}).get(key, (OK, "")),
            waiting=pipeline.active and camera.received == 0,
            recent=recent,
            window_s=window_s,
        )
        statuses.append(
            _status(level, f"{node}: {key}", pipeline.device, message, _values(**values, **final))
        )
    return Message(DIAGNOSTIC_ARRAY, {"header": header_message(stamp_ns, ""), "status": statuses})
