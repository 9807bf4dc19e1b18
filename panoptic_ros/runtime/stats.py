"""Counters, latency percentiles and log throttling of the node, per camera (ROS-free)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

#: Kinds of bad input and trouble counted per camera (diagnostics keys).
ERROR_KINDS = (
    "malformed",
    "unsupported_encoding",
    "corrupt_compressed",
    "resolution_change",
    "time_jump_back",
    "depth_error",
    "processing_error",
)


@dataclass
class CameraStats:
    """One camera's counters and recent latencies (milliseconds per stage, last ``window`` frames)."""

    window: int = 200
    processed: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    latency_ms: dict[str, deque[float]] = field(default_factory=dict)
    published_at: deque[float] = field(default_factory=lambda: deque(maxlen=400))

    def add_latency(self, stage: str, ms: float) -> None:
        ring = self.latency_ms.get(stage)
        if ring is None:
            ring = self.latency_ms[stage] = deque(maxlen=self.window)
        ring.append(ms)

    def percentiles(self, stage: str, qs: tuple[float, ...] = (50, 95, 99)) -> tuple[float, ...]:
        ring = self.latency_ms.get(stage)
        if not ring:
            return tuple(float("nan") for _ in qs)
        return tuple(float(v) for v in np.percentile(np.fromiter(ring, dtype=np.float64), qs))

    def rate(self, now: float, period: float = 2.0) -> float:
        """Frames published per second over the last ``period`` seconds."""
        recent = [t for t in self.published_at if t >= now - period]
        return len(recent) / period


class NodeStats:
    """Thread-safe per-camera statistics shared by the callbacks, the worker and the diagnostics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraStats] = defaultdict(CameraStats)
        self._last_log: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = defaultdict(int)

    def count(self, camera: str, kind: str) -> None:
        with self._lock:
            self._cameras[camera].errors[kind] += 1

    def frame(self, camera: str, latencies_ms: dict[str, float]) -> None:
        with self._lock:
            stats = self._cameras[camera]
            stats.processed += 1
            stats.published_at.append(time.monotonic())
            for stage, ms in latencies_ms.items():
                stats.add_latency(stage, ms)

    def snapshot(self) -> dict[str, CameraStats]:
        """A copy of every camera's statistics (safe to read without the lock)."""
        with self._lock:
            return {
                name: CameraStats(
                    window=s.window,
                    processed=s.processed,
                    errors=dict(s.errors),
                    latency_ms={k: deque(v, maxlen=s.window) for k, v in s.latency_ms.items()},
                    published_at=deque(s.published_at, maxlen=400),
                )
                for name, s in self._cameras.items()
            }

    def should_log(self, camera: str, kind: str, period: float) -> tuple[bool, int]:
        """Whether to log a ``kind`` event of ``camera`` now (at most once per ``period`` seconds), and
        how many were suppressed since the last logged one."""
        key = (camera, kind)
        now = time.monotonic()
        with self._lock:
            last = self._last_log.get(key)
            if last is not None and now - last < period:
                self._suppressed[key] += 1
                return False, 0
            self._last_log[key] = now
            suppressed, self._suppressed[key] = self._suppressed[key], 0
            return True, suppressed

    def reset(self) -> None:
        with self._lock:
            self._cameras.clear()
            self._last_log.clear()
            self._suppressed.clear()
