"""The description of the node's ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``), ROS-free.

One status for the pipeline (backend, device, model, label set, the fusion thresholds in force) and one
per camera (frames received, published, dropped, rate, latency percentiles per stage, every bad-input
counter). The node wraps the :class:`~panoptic_ros.core.messages.Message` into rclpy's message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from panoptic_ros.core.messages import Message, header_message
from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.slots import SlotStats
from panoptic_ros.runtime.stats import ERROR_KINDS, CameraStats

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
    bad = sum(stats.errors.values())
    return (
        f"{camera}: {stats.rate(now):.1f} Hz, latency {total[0]:.0f}/{total[1]:.0f} ms p50/p95, "
        f"{dropped} dropped, {bad} bad ({backend})"
    )


def diagnostics(
    node: str,
    stamp_ns: int,
    pipeline: PipelineInfo,
    *,
    cameras: Sequence[str],
    slots: Mapping[str, SlotStats],
    stats: Mapping[str, CameraStats],
    now: float,
) -> Message:
    """The ``/diagnostics`` message of the node ``node`` at ``stamp_ns`` (``now``: monotonic seconds,
    for rates)."""
    thresholds = {f"fusion_{k}": v for k, v in sorted(pipeline.fusion.items())}
    statuses = [
        _status(
            OK,
            f"{node}: pipeline",
            pipeline.device,
            "active" if pipeline.active else "inactive",
            _values(
                backend=pipeline.backend,
                device=pipeline.device,
                model=pipeline.model,
                label_set=pipeline.label_set,
                cameras=len(cameras),
                **thresholds,
            ),
        )
    ]
    for key in cameras:
        camera = stats.get(key) or CameraStats()
        slot = slots.get(key) or SlotStats()
        values: dict[str, object] = {
            "frames_received": slot.received,
            "frames_published": camera.processed,
            "frames_dropped": slot.dropped,
            "rate_hz": f"{camera.rate(now):.2f}",
            **{kind: camera.errors.get(kind, 0) for kind in ERROR_KINDS},
            "backend": pipeline.backend,
            "device": pipeline.device,
        }
        for stage in sorted(camera.latency_ms):
            p50, p95 = camera.percentiles(stage, (50, 95))
            values[f"latency_{stage}_ms_p50"] = f"{p50:.2f}"
            values[f"latency_{stage}_ms_p95"] = f"{p95:.2f}"
        bad = sum(camera.errors.values())
        level, message = OK, "ok"
        if pipeline.active and slot.received == 0:
            level, message = WARN, "no frames received yet"
        elif bad:
            level, message = WARN, f"{bad} bad or failed frames so far"
        statuses.append(_status(level, f"{node}: {key}", pipeline.device, message, _values(**values)))
    return Message(DIAGNOSTIC_ARRAY, {"header": header_message(stamp_ns, ""), "status": statuses})
