"""Video Panoptic Quality (VPQ, Kim et al., "Video Panoptic Segmentation", CVPR 2020): PQ over
spatio-temporal tubes, as the VPSNet evaluation computes it for Cityscapes-VPS (``tools/eval_vpq.py``
of mcahny/vps; VIPSeg's ``eval_vpq_vspw.py`` is the same code with other window sizes).

**Windows.** The reference is given the annotated frames of a video, which Cityscapes-VPS annotates
every 5th frame; for each window size ``k`` in (0, 5, 10, 15) it takes ``k / 5 + 1`` consecutive
given frames (1, 2, 3 or 4), so a window spans ``k + 1`` frames of the video, and it slides the
window by one given frame (a sequence of ``T`` given frames has ``T - k / 5`` windows, none when it
is shorter). Here ``frame_step`` says how many video frames apart the given frames are: with 1 (the
default: every frame annotated, as in the synthetic sequences and bags) a window holds ``k + 1``
consecutive frames; 5 reproduces the reference on folders of Cityscapes-VPS frames. ``k`` must be a
multiple of ``frame_step``.

**Tubes.** In a window, a segment is its id on all the window's frames (for things the track id; for
stuff whatever the writer gives, which in this project's outputs is ``STUFF_SEGMENT_BASE +
category`` in every frame); its category and crowd flag are those of its first frame in the window
and its area is summed over the window. Tubes are matched by PQ's rules
(:mod:`panoptic_ros.metrics.panoptic_quality`): same category, gt not crowd, IoU > 0.5 with the
predicted pixels on void ground truth left out of the union; an unmatched non-crowd gt tube is an
FN, an unmatched predicted tube an FP unless more than half of it lies on void or on crowd of its
category. So a track switch inside a window splits the predicted tube: the gt tube keeps a TP only
while one part still has IoU > 0.5 with it. With ``k = 0`` the windows are single frames: VPQ_0 is
the image PQ of the same frames.

**Scores.** TP, FP, FN and IoU sums per category add up over every window of every sequence; per
``k``, PQ / SQ / RQ of All, Things and Stuff are the unweighted means over the categories with
``TP + FP + FN > 0``. **VPQ** (All, Things, Stuff each) is the mean of the four PQ_k; undefined (NaN)
when some ``k`` has no window. As for image PQ, all crowd segments of a category count as its crowd
region (the reference keeps the last one listed).

Each frame's joint histogram of (gt id, predicted id) pairs is taken once
(:func:`~panoptic_ros.metrics.panoptic_quality.pair_histogram`); a window's histogram is the sum of its
frames' (one ``np.unique`` over their pairs), so no pixel is visited again per window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.metrics.panoptic_quality import (
    OFFSET,
    PairHistogram,
    PQResult,
    PQStat,
    SegmentTable,
    pq_from_histogram,
)

#: The window sizes ``k`` of VPQ (in video frames).
VPQ_WINDOWS = (0, 5, 10, 15)


def _first_of(tables: Sequence[SegmentTable]) -> SegmentTable:
    """The segments of several frames: each id once, with its first frame's category and crowd flag."""
    ids = np.concatenate([t.ids for t in tables])
    ids, first = np.unique(ids, return_index=True)  # index of each id's first occurrence
    category = np.concatenate([t.category for t in tables])[first]
    return SegmentTable(ids, category, np.concatenate([t.crowd for t in tables])[first])


def merge_histograms(hists: Sequence[PairHistogram]) -> PairHistogram:
    """The joint histogram of a window: the frames' pair counts summed, segments merged by id."""
    if len(hists) == 1:
        return hists[0]
    keys = np.concatenate([h.gt_ids * OFFSET + h.pred_ids for h in hists])
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.zeros(unique.size, dtype=np.int64)
    np.add.at(counts, inverse.reshape(-1), np.concatenate([h.counts for h in hists]))
    return PairHistogram(
        unique // OFFSET,
        unique % OFFSET,
        counts,
        _first_of([h.gt for h in hists]),
        _first_of([h.pred for h in hists]),
    )


class WindowPQ(NamedTuple):
    """PQ over the windows of one size: ``k`` (video frames), the number of windows, the result."""

    k: int
    windows: int
    result: PQResult


class VPQValues(NamedTuple):
    """VPQ of All / Things / Stuff (fractions 0..1; NaN when undefined)."""

    all: float
    things: float
    stuff: float


@dataclass(frozen=True, eq=False)
class VPQStat:
    """Per-window-size PQ counts of any number of sequences; merge with ``+``."""

    label_set: LabelSet
    frame_step: int
    windows: tuple[int, ...]
    stats: tuple[PQStat, ...]

    def __add__(self, other: VPQStat) -> VPQStat:
        if not isinstance(other, VPQStat):
            return NotImplemented
        if (other.windows, other.frame_step) != (self.windows, self.frame_step):
            raise ValueError("cannot merge VPQ statistics over different windows or frame steps")
        stats = tuple(a + b for a, b in zip(self.stats, other.stats, strict=True))
        return VPQStat(self.label_set, self.frame_step, self.windows, stats)

    def summarize(self) -> VPQResult:
        """PQ per window size and their mean, VPQ (module docstring)."""
        per_window = tuple(
            WindowPQ(k, stat.num_images, stat.summarize(self.label_set))
            for k, stat in zip(self.windows, self.stats, strict=True)
        )

        def mean(pick: str) -> float:
            values = [getattr(w.result, pick).pq for w in per_window]
            return math.nan if any(math.isnan(v) for v in values) else sum(values) / len(values)

        return VPQResult(self.frame_step, per_window, VPQValues(mean("all"), mean("things"), mean("stuff")))


class VPQAccumulator:
    """Collects the frames of one sequence, in order, as joint histograms; :meth:`finish` counts the
    windows.

    Args:
        label_set: the ground truth's categories (thing / stuff split).
        frame_step: video frames between consecutive given frames (module docstring).
        windows: the window sizes ``k``, multiples of ``frame_step``.
    """

    def __init__(
        self, label_set: LabelSet, *, frame_step: int = 1, windows: Sequence[int] = VPQ_WINDOWS
    ) -> None:
        if frame_step < 1 or any(k < 0 or k % frame_step for k in windows):
            raise ValueError(
                f"VPQ windows {tuple(windows)} must be non-negative multiples of the frame step "
                f"{frame_step} (>= 1)"
            )
        self.label_set = label_set
        self.frame_step = frame_step
        self.windows = tuple(int(k) for k in windows)
        self._frames: list[PairHistogram] = []

    def add(self, hist: PairHistogram) -> None:
        """Add the next frame's checked joint histogram
        (:func:`~panoptic_ros.metrics.panoptic_quality.pair_histogram`)."""
        self._frames.append(hist)

    def finish(self) -> VPQStat:
        """The counts over every window of every size."""
        category_ids = tuple(c.id for c in self.label_set)
        size = len(category_ids)
        stats = []
        for k in self.windows:
            length = k // self.frame_step + 1
            starts = range(len(self._frames) - length + 1)
            totals = np.zeros((4, size))  # rows tp, fp, fn, iou_sum
            for start in starts:  # windows, not pixels: each is one merge of small histograms
                window = merge_histograms(self._frames[start : start + length])
                totals += np.stack(pq_from_histogram(window, size))
            tp, fp, fn = np.rint(totals[:3]).astype(np.int64)
            stats.append(PQStat(category_ids, tp, fp, fn, totals[3], len(starts)))
        return VPQStat(self.label_set, self.frame_step, self.windows, tuple(stats))


@dataclass(frozen=True)
class VPQResult:
    """PQ per window size (:class:`WindowPQ`) and VPQ, their mean."""

    frame_step: int
    per_window: tuple[WindowPQ, ...]
    vpq: VPQValues

    def table(self) -> str:
        """A text table: one row per ``k`` (windows, PQ of All / Things / Stuff in percent) and VPQ."""
        header = f"{'VPQ      k':12s}| {'windows':>7s}  {'All':>5s}  {'Things':>6s}  {'Stuff':>5s}"
        lines = [header, "-" * len(header)]
        for w in self.per_window:
            r = w.result
            lines.append(
                f"{w.k:>10d}  | {w.windows:7d}  {_pct(r.all.pq)}  {_pct(r.things.pq):>6s}  {_pct(r.stuff.pq)}"
            )
        v = self.vpq
        lines.append(f"{'VPQ':12s}| {'':7s}  {_pct(v.all)}  {_pct(v.things):>6s}  {_pct(v.stuff)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: fractions (0..1), ``null`` for undefined values."""

        def summary(s: Any) -> dict[str, Any]:
            return {"pq": _none(s.pq), "sq": _none(s.sq), "rq": _none(s.rq), "n": s.n}

        return {
            "vpq": {
                "All": _none(self.vpq.all),
                "Things": _none(self.vpq.things),
                "Stuff": _none(self.vpq.stuff),
            },
            "frame_step": self.frame_step,
            "per_window": [
                {
                    "k": w.k,
                    "windows": w.windows,
                    "All": summary(w.result.all),
                    "Things": summary(w.result.things),
                    "Stuff": summary(w.result.stuff),
                }
                for w in self.per_window
            ],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _pct(value: float) -> str:
    return "    -" if math.isnan(value) else f"{100 * value:5.1f}"


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value
