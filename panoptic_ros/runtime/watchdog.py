"""The over-budget watchdog: a camera whose frames take longer than its frame period (ROS-free).

The budget of a camera is one frame period: ``1 / target_rate``, or with ``target_rate`` 0 the period
of the frames the camera actually sends (measured over the window). A frame's time is what the node
spends on it after it left the newest-frame slot (decode, inference, fusion, tracking, outputs,
publishing; the wait in the slot is not counted, since frames over budget make it grow). When the
95th percentile over the last ``window`` seconds exceeds the budget the camera goes WARN; when that
lasts ``error_after`` seconds, ERROR. The message names the stage that grew most against its own
best (lowest) median over earlier windows, or, when it was over budget from the start, the stage
that costs most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

OK, WARN, ERROR = 0, 1, 2
#: Stages that are not the node's work on a frame (waiting, and the sum of all).
NOT_WORK = ("queue", "total")
#: Frames a window needs before it is judged.
MIN_FRAMES = 5


def frame_ms(stages: Mapping[str, float]) -> float:
    """A frame's time: its stages after the slot (``total - queue`` when both are known)."""
    if "total" in stages:
        return stages["total"] - stages.get("queue", 0.0)
    return sum(v for k, v in stages.items() if k not in NOT_WORK)


@dataclass(frozen=True)
class Verdict:
    """The watchdog's state of one camera: ``level`` (OK, WARN, ERROR), the message, and the figures."""

    level: int
    message: str = ""
    p95_ms: float = float("nan")
    budget_ms: float = float("nan")


@dataclass
class Watchdog:
    """One camera's watchdog (see the module docstring)."""

    window: float = 10.0
    error_after: float = 30.0
    over_since: float | None = None
    baseline: dict[str, float] = field(default_factory=dict)
    target_rate: float | None = None  # the one of the last check: a new target restarts the count

    def check(
        self,
        now: float,
        samples: Sequence[tuple[float, Mapping[str, float]]],
        arrivals: Sequence[float],
        target_rate: float,
    ) -> Verdict:
        """The verdict at ``now`` from the served frames ``samples`` (time, stage ms) and the arrival
        times of the camera's frames (for the camera's own rate when ``target_rate`` is 0)."""
        recent = [stages for t, stages in samples if t >= now - self.window]
        if target_rate != self.target_rate:  # a new budget: over it for 0 s so far
            self.target_rate, self.over_since = target_rate, None
        if target_rate > 0:
            budget_s, source = 1.0 / target_rate, f"target_rate {target_rate:g} Hz"
        else:
            came = sorted(t for t in arrivals if t >= now - self.window)
            if len(came) < MIN_FRAMES:
                return self._idle()
            budget_s = (came[-1] - came[0]) / (len(came) - 1)
            source = f"the camera's {1 / budget_s:.1f} Hz" if budget_s > 0 else "the camera's rate"
        if len(recent) < MIN_FRAMES or budget_s <= 0:
            return self._idle()
        budget_ms = 1000 * budget_s
        p95 = float(np.percentile([frame_ms(s) for s in recent], 95))
        medians = _medians(recent)
        if p95 <= budget_ms:
            self.over_since = None
            for stage, ms in medians.items():  # the best of healthy windows: what a stage can cost
                self.baseline[stage] = min(ms, self.baseline.get(stage, ms))
            return Verdict(OK, "", p95, budget_ms)
        self.over_since = now if self.over_since is None else self.over_since
        lasting = now - self.over_since
        level = ERROR if self.error_after > 0 and lasting >= self.error_after else WARN
        message = (
            f"over budget: p95 frame time {p95:.0f} ms > {budget_ms:.0f} ms ({source}) for {lasting:.0f} s; "
            f"{_culprit(medians, self.baseline)}"
        )
        return Verdict(level, message, p95, budget_ms)

    def _idle(self) -> Verdict:
        self.over_since = None
        return Verdict(OK)


def _medians(recent: Sequence[Mapping[str, float]]) -> dict[str, float]:
    stages = {k for s in recent for k in s if k not in NOT_WORK}
    return {k: float(np.median([s[k] for s in recent if k in s])) for k in sorted(stages)}


def _culprit(medians: Mapping[str, float], baseline: Mapping[str, float]) -> str:
    """The stage that grew most against its baseline, else the costliest."""
    grown = {k: ms - baseline[k] for k, ms in medians.items() if k in baseline}
    if grown and max(grown.values()) > 0:
        stage = max(grown, key=lambda k: grown[k])
        return f"grew most: {stage} (median {medians[stage]:.0f} ms, was {baseline[stage]:.0f} ms)"
    stage = max(medians, key=lambda k: medians[k])
    return f"costliest: {stage} (median {medians[stage]:.0f} ms)"
