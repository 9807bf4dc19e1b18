"""Counters, latency percentiles and log throttling of the node, per camera (ROS-free).

Every frame that reaches a subscription callback is accounted for:

``received = published + dropped + bad + failed + in_flight``

- ``bad``: refused before serving: malformed fields, unsupported encodings, corrupt compressed data,
  images over ``max_input_pixels`` (:data:`BAD_KINDS`), counted in the callback or by the worker;
- ``dropped``: replaced in the newest-frame slot by a newer frame of the same camera (slot counters);
- ``failed``: inference or building the outputs raised (:data:`FAILURE_KINDS`);
- ``in_flight``: waiting in a slot when the worker stopped (reported with the final counts).

Beside the balance: ``lost`` counts messages the middleware dropped before the callback (gaps in the
publishers' sequence numbers, where the rmw reports them), ``depth_error`` frames served without 3D
positions, ``center_overflow`` frames served with instance centers left out for lack of slots, and
stream events (:data:`EVENT_KINDS`) on frames that were served.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

#: Frames refused before serving.
BAD_KINDS = ("malformed", "unsupported_encoding", "corrupt_compressed", "too_large")
#: Frames that failed while being served.
FAILURE_KINDS = ("processing_error",)
#: Problems of side inputs; the frame is still served (without 3D positions).
SIDE_KINDS = ("depth_error",)
#: Served frames where a fixed capacity left something out (instance centers beyond the fixed-shape
#: fusion's slots, only without ``fusion.top_k``).
CAPACITY_KINDS = ("center_overflow",)
#: Stream events of served frames (the tracker resets); not failures.
EVENT_KINDS = ("resolution_change", "time_jump_back")
KINDS = (*BAD_KINDS, *FAILURE_KINDS, *SIDE_KINDS, *CAPACITY_KINDS, *EVENT_KINDS)
#: Recent frames kept per camera for the watchdog (a window of 10 s at up to 200 Hz).
SAMPLES = 2000


@dataclass
class CameraStats:
    """One camera's counters and recent latencies (milliseconds per stage, last ``window`` frames)."""

    window: int = 200
    received: int = 0
    processed: int = 0
    lost: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    latency_ms: dict[str, deque[float]] = field(default_factory=dict)
    published_at: deque[float] = field(default_factory=lambda: deque(maxlen=400))
    problems_at: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    #: served frames (publish time, milliseconds per stage) and arrival times, for the watchdog
    samples: deque[tuple[float, dict[str, float]]] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    arrived_at: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))

    @property
    def bad(self) -> int:
        return sum(self.counts[k] for k in BAD_KINDS)

    @property
    def failed(self) -> int:
        return sum(self.counts[k] for k in FAILURE_KINDS)

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

    def recent_problems(self, now: float, period: float) -> int:
        """Bad, failed and depth-less frames in the last ``period`` seconds."""
        return sum(1 for t in self.problems_at if t >= now - period)


class NodeStats:
    """Thread-safe per-camera statistics shared by the callbacks, the worker and the diagnostics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraStats] = defaultdict(CameraStats)
        self._last_log: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = defaultdict(int)
        self._sequences: dict[tuple[str, bytes], int] = {}

    def count(self, camera: str, kind: str) -> None:
        """One more of ``kind`` (:data:`KINDS`); problems also enter the recent window."""
        with self._lock:
            stats = self._cameras[camera]
            stats.counts[kind] += 1
            if kind not in EVENT_KINDS:
                stats.problems_at.append(time.monotonic())

    def received_count(self, camera: str) -> int:
        with self._lock:
            return self._cameras[camera].received if camera in self._cameras else 0

    def arrived(self, camera: str, publisher: bytes, number: int | None) -> bool:
        """A message reached the callback: count it received, and the messages of ``publisher`` lost
        before it (a gap in its publication sequence numbers ``number``, where the rmw reports them).
        False for a message already received (the same number again, as two subscriptions of one
        topic deliver while the QoS changes): it is not counted and must not be served twice."""
        with self._lock:
            stats = self._cameras[camera]
            if number is not None and number > 0:
                key = (camera, publisher)
                last = self._sequences.get(key)
                if last is not None and number <= last:
                    return False
                self._sequences[key] = number
                stats.lost += number - last - 1 if last is not None else 0
            stats.received += 1
            stats.arrived_at.append(time.monotonic())
            return True

    def frame(self, camera: str, latencies_ms: dict[str, float]) -> None:
        with self._lock:
            stats = self._cameras[camera]
            stats.processed += 1
            now = time.monotonic()
            stats.published_at.append(now)
            stats.samples.append((now, dict(latencies_ms)))
            for stage, ms in latencies_ms.items():
                stats.add_latency(stage, ms)

    def snapshot(self) -> dict[str, CameraStats]:
        """A copy of every camera's statistics (safe to read without the lock)."""
        with self._lock:
            return {
                name: CameraStats(
                    window=s.window,
                    received=s.received,
                    processed=s.processed,
                    lost=s.lost,
                    counts=dict(s.counts),
                    latency_ms={k: deque(v, maxlen=s.window) for k, v in s.latency_ms.items()},
                    published_at=deque(s.published_at, maxlen=400),
                    problems_at=deque(s.problems_at, maxlen=1000),
                    samples=deque(s.samples, maxlen=SAMPLES),
                    arrived_at=deque(s.arrived_at, maxlen=SAMPLES),
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
            self._sequences.clear()
