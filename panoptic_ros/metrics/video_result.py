"""The results of the video metrics: STQ / AQ / SQ, identity counts and VPQ, overall and per sequence.

This module owns the result records that :meth:`~panoptic_ros.metrics.video.VideoStat.summarize`
fills (:class:`VideoResult`, :class:`SequenceResult`) and their text table and JSON forms; the metric
definitions and the accumulation are :mod:`panoptic_ros.metrics.video` (STQ) and
:mod:`panoptic_ros.metrics.vpq` (VPQ).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from panoptic_ros.metrics.semantic import SemanticResult
from panoptic_ros.metrics.vpq import VPQResult


class SequenceResult(NamedTuple):
    """The metrics of one sequence (fractions 0..1; NaN when undefined)."""

    name: str
    stq: float
    aq: float
    sq: float
    gt_tracks: int
    pred_tracks: int
    id_switches: int
    fragmentations: int
    object_frames: int
    frames: int
    vpq: float = math.nan  # VPQ (All) of the sequence alone, when taken


@dataclass(frozen=True)
class VideoResult:
    """STQ / AQ / SQ (fractions 0..1, NaN when undefined) and identity counts, overall and per
    sequence; ``semantic`` is the plain mIoU behind SQ (SQ adds the void class under the reference
    variant, :mod:`panoptic_ros.metrics.video`); ``variant`` the STQ variant; ``vpq`` the video PQ,
    when it was taken."""

    stq: float
    aq: float
    sq: float
    num_sequences: int
    num_frames: int
    num_gt_tracks: int
    num_pred_tracks: int
    id_switches: int
    fragmentations: int
    object_frames: int
    per_sequence: tuple[SequenceResult, ...] = field(default=())
    semantic: SemanticResult | None = None
    variant: str = "reference"
    vpq: VPQResult | None = None

    @property
    def id_switches_per_1000(self) -> float:
        """ID switches per 1000 gt object-frames (NaN without any)."""
        return 1000 * self.id_switches / self.object_frames if self.object_frames else math.nan

    def table(self, *, per_sequence: bool = False) -> str:
        """A text table: STQ, AQ, SQ (and VPQ when taken) in percent (one decimal), ID switches (and per
        1000 object-frames), fragmentations, object-frames, tracks and frames; one row per sequence on
        request; then VPQ per window size."""
        header = (
            f"{'':12s}| {'STQ':>5s}  {'AQ':>5s}  {'SQ':>5s}  {'VPQ':>5s}  {'IDsw':>5s} {'/1000':>6s} "
            f"{'Frag':>5s} {'obj-frames':>10s} {'gt tr':>6s} {'pred tr':>7s} {'frames':>6s}"
        )
        lines = [
            f"STQ variant {self.variant}: {_VARIANT_NOTES.get(self.variant, '')}",
            header,
            "-" * len(header),
        ]

        def row(name: str, r: VideoResult | SequenceResult, frames: int, gt: int, pred: int) -> str:
            per_k = 1000 * r.id_switches / r.object_frames if r.object_frames else math.nan
            rate = "     -" if math.isnan(per_k) else f"{per_k:6.2f}"
            vpq = r.vpq if isinstance(r, SequenceResult) else self.vpq_all
            return (
                f"{name[:12]:12s}| {_pct(r.stq)}  {_pct(r.aq)}  {_pct(r.sq)}  {_pct(vpq)}  "
                f"{r.id_switches:5d} {rate} {r.fragmentations:5d} {r.object_frames:10d} {gt:6d} {pred:7d} "
                f"{frames:6d}"
            )

        lines.append(row("All", self, self.num_frames, self.num_gt_tracks, self.num_pred_tracks))
        if per_sequence:
            lines.append("-" * len(header))
            lines.extend(row(s.name, s, s.frames, s.gt_tracks, s.pred_tracks) for s in self.per_sequence)
        if self.vpq is not None:
            lines += ["", self.vpq.table()]
        return "\n".join(lines)

    @property
    def vpq_all(self) -> float:
        """VPQ (All; NaN when not taken or undefined)."""
        return self.vpq.vpq.all if self.vpq is not None else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain data: fractions (0..1), ``null`` for undefined values."""
        return {
            "stq": _none(self.stq),
            "aq": _none(self.aq),
            "sq": _none(self.sq),
            "stq_variant": self.variant,
            "num_sequences": self.num_sequences,
            "num_frames": self.num_frames,
            "num_gt_tracks": self.num_gt_tracks,
            "num_pred_tracks": self.num_pred_tracks,
            "id_switches": self.id_switches,
            "id_switches_per_1000": _none(self.id_switches_per_1000),
            "fragmentations": self.fragmentations,
            "object_frames": self.object_frames,
            "per_sequence": [
                {
                    **s._asdict(),
                    "stq": _none(s.stq),
                    "aq": _none(s.aq),
                    "sq": _none(s.sq),
                    "vpq": _none(s.vpq),
                }
                for s in self.per_sequence
            ],
            "semantic": self.semantic.to_dict() if self.semantic is not None else None,
            "vpq": self.vpq.to_dict() if self.vpq is not None else None,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


_VARIANT_NOTES = {
    "reference": "as deeplab2's STQuality computes it (the STEP benchmarks)",
    "void-ignored": "predictions on void ground truth left out (not the benchmarks' STQ)",
}


def _pct(value: float) -> str:
    return "    -" if math.isnan(value) else f"{100 * value:5.1f}"


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value
