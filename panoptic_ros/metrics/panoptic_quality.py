"""Panoptic Quality (PQ = SQ x RQ, Kirillov et al. 2019) with the rules of the COCO panoptic
reference evaluation (``pq_compute``).

Per image, one joint histogram of (ground-truth id, predicted id) pairs gives every intersection.
Then, per category:

- a (gt, pred) pair **matches** when both have the same category, the gt segment is not crowd, and
  ``IoU > 0.5`` (strictly) with ``union = pred_area + gt_area - intersection - pred_on_void``: predicted
  pixels that lie on void ground truth (id 0) are left out of the union. Matches are unique.
- a matched pair is a TP and adds its IoU to ``iou_sum``;
- an unmatched, non-crowd gt segment is a FN; crowd gt segments are never matched nor counted;
- an unmatched prediction is a FP unless more than half of its pixels lie on void or on crowd gt of
  its own category: ``(pred_on_void + pred_on_crowd_of_same_category) / pred_area > 0.5``.

Per category ``PQ = iou_sum / (TP + FP/2 + FN/2)``, ``SQ = iou_sum / TP`` (0 without TP),
``RQ = TP / (TP + FP/2 + FN/2)``. Categories with ``TP + FP + FN = 0`` are left out; the All /
Things / Stuff values are unweighted means over the remaining categories.

Sanity rules as in the reference: every non-zero id of a PNG needs a ``segments_info`` entry and
every entry needs pixels; an unknown category is an error. Both raise :class:`DatasetError` naming
the file.

Differences from the reference, on purpose: areas are counted from the PNG for ground truth too (the
reference takes the gt ``area`` from the JSON; they agree for consistent data), and all crowd
segments of a category count as that category's crowd region (the reference keeps the last one).

This module owns the metric: the per-image matching (:func:`pq_from_maps`: a checked joint histogram,
:func:`pair_histogram`, matched by :func:`pq_from_histogram`, which the video PQ of
:mod:`panoptic_ros.metrics.vpq` runs on windows of frames), the counts (:class:`PQStat`) and the
result records (:class:`PQResult`). Evaluating COCO panoptic folders is
:mod:`panoptic_ros.metrics.folders`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import (
    MAX_SEGMENT_ID,
    VOID_ID,
    DatasetError,
    SegmentInfo,
    check_segment_map,
)
from panoptic_ros.metrics.semantic import SemanticResult

OFFSET = MAX_SEGMENT_ID + 1  # combined pair key = gt_id * OFFSET + pred_id


# --------------------------------------------------------------------------------------------------
# accumulator


@dataclass(frozen=True, eq=False)
class PQStat:
    """Per-category counts over any number of images: ``tp``, ``fp``, ``fn`` (int64) and ``iou_sum``
    (float64), indexed like ``category_ids``. Add two stats with ``+`` to merge them."""

    category_ids: tuple[int, ...]
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    iou_sum: np.ndarray
    num_images: int = 0

    def __post_init__(self) -> None:
        size = len(self.category_ids)
        for name, dtype in (("tp", np.int64), ("fp", np.int64), ("fn", np.int64), ("iou_sum", np.float64)):
            array = np.array(getattr(self, name), dtype=dtype)
            if array.shape != (size,):
                raise ValueError(
                    f"PQStat.{name} must have one entry per category ({size}), got {array.shape}"
                )
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @classmethod
    def zeros(cls, category_ids: Sequence[int]) -> PQStat:
        ids = tuple(int(i) for i in category_ids)
        zeros = np.zeros(len(ids), dtype=np.int64)
        return cls(ids, zeros, zeros, zeros, np.zeros(len(ids)), 0)

    def __add__(self, other: PQStat) -> PQStat:
        if not isinstance(other, PQStat):
            return NotImplemented
        if other.category_ids != self.category_ids:
            raise ValueError("cannot merge PQ statistics over different category lists")
        total = [getattr(self, name) + getattr(other, name) for name in ("tp", "fp", "fn", "iou_sum")]
        return PQStat(self.category_ids, *total, self.num_images + other.num_images)

    def counts(self, category_id: int) -> tuple[int, int, int, float]:
        """``(tp, fp, fn, iou_sum)`` of one category."""
        k = self.category_ids.index(category_id)
        return int(self.tp[k]), int(self.fp[k]), int(self.fn[k]), float(self.iou_sum[k])

    def summarize(self, label_set: LabelSet, *, semantic: SemanticResult | None = None) -> PQResult:
        """PQ / SQ / RQ per class and for All / Things / Stuff (see the module docstring)."""
        per_class: dict[int, ClassPQ] = {}
        for k, category_id in enumerate(self.category_ids):
            tp, fp, fn, iou = int(self.tp[k]), int(self.fp[k]), int(self.fn[k]), float(self.iou_sum[k])
            if tp + fp + fn == 0:
                continue
            category = label_set.by_id(category_id)
            denominator = tp + 0.5 * fp + 0.5 * fn
            per_class[category_id] = ClassPQ(
                category_id=category_id,
                name=category.name,
                is_thing=category.is_thing,
                pq=iou / denominator,
                sq=iou / tp if tp else 0.0,
                rq=tp / denominator,
                tp=tp,
                fp=fp,
                fn=fn,
                iou_sum=iou,
            )
        classes = list(per_class.values())
        return PQResult(
            all=_average(classes),
            things=_average([c for c in classes if c.is_thing]),
            stuff=_average([c for c in classes if not c.is_thing]),
            per_class=per_class,
            num_images=self.num_images,
            semantic=semantic,
        )


# --------------------------------------------------------------------------------------------------
# results


class PQSummary(NamedTuple):
    """Unweighted means over ``n`` categories (fractions 0..1; NaN when ``n == 0``)."""

    pq: float
    sq: float
    rq: float
    n: int


class ClassPQ(NamedTuple):
    """PQ, SQ, RQ (fractions 0..1) and the counts of one category."""

    category_id: int
    name: str
    is_thing: bool
    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int
    iou_sum: float


def _average(classes: Sequence[ClassPQ]) -> PQSummary:
    if not classes:
        return PQSummary(math.nan, math.nan, math.nan, 0)
    n = len(classes)
    return PQSummary(
        sum(c.pq for c in classes) / n, sum(c.sq for c in classes) / n, sum(c.rq for c in classes) / n, n
    )


@dataclass(frozen=True)
class PQResult:
    """The evaluation of a set of images: All / Things / Stuff, per class, and optionally mIoU."""

    all: PQSummary
    things: PQSummary
    stuff: PQSummary
    per_class: Mapping[int, ClassPQ]
    num_images: int
    semantic: SemanticResult | None = None

    def table(self, *, per_class: bool = False) -> str:
        """A text table like the reference tool's: rows All / Things / Stuff, columns PQ SQ RQ (in
        percent, one decimal) and N; per-class rows and the mIoU line when available."""
        header = f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}  {'N':>5s}"
        lines = [header, "-" * len(header)]
        for name, summary in (("All", self.all), ("Things", self.things), ("Stuff", self.stuff)):
            lines.append(_row(name, summary.pq, summary.sq, summary.rq, summary.n))
        if self.semantic is not None:
            lines.append("-" * len(header))
            lines.append(self.semantic.table())
        if per_class and self.per_class:
            width = max(10, *(len(c.name) + 1 for c in self.per_class.values()))
            lines.append("")
            lines.append(
                f"{'class':{width}s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}  {'TP':>6s} {'FP':>6s} {'FN':>6s}"
            )
            for c in self.per_class.values():
                scores = f"{_pct(c.pq)}  {_pct(c.sq)}  {_pct(c.rq)}"
                lines.append(f"{c.name:{width}s}| {scores}  {c.tp:6d} {c.fp:6d} {c.fn:6d}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: fractions (0..1), ``null`` for undefined averages."""

        def summary(s: PQSummary) -> dict[str, Any]:
            return {"pq": _none(s.pq), "sq": _none(s.sq), "rq": _none(s.rq), "n": s.n}

        return {
            "num_images": self.num_images,
            "All": summary(self.all),
            "Things": summary(self.things),
            "Stuff": summary(self.stuff),
            "per_class": {str(cid): c._asdict() for cid, c in self.per_class.items()},
            "semantic": self.semantic.to_dict() if self.semantic is not None else None,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _row(name: str, pq: float, sq: float, rq: float, n: int) -> str:
    return f"{name:10s}| {_pct(pq)}  {_pct(sq)}  {_pct(rq)}  {n:5d}"


def _pct(value: float) -> str:
    return "    -" if math.isnan(value) else f"{100 * value:5.1f}"


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------------------------------
# one image (or one window of frames: panoptic_ros.metrics.vpq)


class SegmentTable(NamedTuple):
    """The segments of one image: ``ids`` (int64, in the order of segments_info), ``category`` (int64
    index into the category list) and ``crowd`` (bool)."""

    ids: np.ndarray
    category: np.ndarray
    crowd: np.ndarray


class PairHistogram(NamedTuple):
    """The joint histogram of an image: every (gt id, predicted id) pair present (0 = void on either
    side) with its pixel count, and both sides' segment tables."""

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    counts: np.ndarray
    gt: SegmentTable
    pred: SegmentTable


def _segment_table(segments: Sequence[SegmentInfo], index_of: Mapping[int, int], source: str) -> SegmentTable:
    ids = np.array([s.id for s in segments], dtype=np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DatasetError(
            f"{source}: segment ids {unique[counts > 1][:10].tolist()} appear twice in segments_info"
        )
    if ids.size and (ids.min() <= VOID_ID or ids.max() > MAX_SEGMENT_ID):
        raise DatasetError(f"{source}: segment ids must lie in [1, {MAX_SEGMENT_ID}]")
    unknown = sorted({s.category_id for s in segments if s.category_id not in index_of})
    if unknown:
        raise DatasetError(
            f"{source}: segments have category_id {unknown[:10]}, which the ground-truth categories do "
            "not have"
        )
    category = np.array([index_of[s.category_id] for s in segments], dtype=np.int64)
    crowd = np.array([bool(s.iscrowd) for s in segments], dtype=bool)
    return SegmentTable(ids, category, crowd)


def _segment_index(values: np.ndarray, segs: SegmentTable, source: str) -> np.ndarray:
    """Index into ``segs`` of each id in ``values``; -1 for void. Unlisted ids are an error."""
    index = np.full(values.shape, -1, dtype=np.int64)
    if segs.ids.size:
        order = np.argsort(segs.ids)
        sorted_ids = segs.ids[order]
        pos = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
        found = sorted_ids[pos] == values
        index[found] = order[pos[found]]
    unlisted = (index < 0) & (values != VOID_ID)
    if unlisted.any():
        raise DatasetError(
            f"{source}: segment ids {np.unique(values[unlisted])[:10].tolist()} are in the PNG but not in "
            "segments_info; every non-zero id needs an entry"
        )
    return index


def _areas(index: np.ndarray, counts: np.ndarray, segs: SegmentTable, source: str) -> np.ndarray:
    listed = index >= 0
    areas = np.bincount(index[listed], weights=counts[listed], minlength=segs.ids.size)
    areas = np.rint(areas).astype(np.int64)
    if (areas == 0).any():
        raise DatasetError(
            f"{source}: segments_info lists ids {segs.ids[areas == 0][:10].tolist()} that have no pixels "
            "in the PNG; every entry needs pixels"
        )
    return areas


def pair_histogram(
    gt_map: np.ndarray,
    gt_segments: Sequence[SegmentInfo],
    pred_map: np.ndarray,
    pred_segments: Sequence[SegmentInfo],
    *,
    label_set: LabelSet,
    gt_source: str = "ground truth",
    pred_source: str = "prediction",
) -> PairHistogram:
    """The checked joint histogram of two ``H x W`` segment maps (0 = void) and their
    ``segments_info``: sizes agree, every id of a map is listed, categories are known."""
    gt = check_segment_map(gt_map, source=gt_source)
    pred = check_segment_map(pred_map, source=pred_source)
    if gt.shape != pred.shape:
        raise DatasetError(
            f"{pred_source} is {pred.shape[1]} x {pred.shape[0]} (w x h) but {gt_source} is "
            f"{gt.shape[1]} x {gt.shape[0]}; predictions must have the size of the ground truth"
        )
    index_of = {c.id: k for k, c in enumerate(label_set)}
    gts = _segment_table(gt_segments, index_of, gt_source)
    preds = _segment_table(pred_segments, index_of, pred_source)
    keys, counts = np.unique(gt.ravel() * OFFSET + pred.ravel(), return_counts=True)
    hist = PairHistogram(keys // OFFSET, keys % OFFSET, counts.astype(np.int64), gts, preds)
    for ids, table, source in ((hist.gt_ids, gts, gt_source), (hist.pred_ids, preds, pred_source)):
        _areas(_segment_index(ids, table, source), hist.counts, table, source)  # listed, with pixels
    return hist


def pq_from_histogram(hist: PairHistogram, size: int) -> tuple[np.ndarray, ...]:
    """``(tp, fp, fn, iou_sum)`` per category index (``size`` categories) of a checked joint histogram
    (:func:`pair_histogram`, or several merged): the matching rules above, all pairs at once."""
    gts, preds, counts = hist.gt, hist.pred, hist.counts
    g = _segment_index(hist.gt_ids, gts, "ground truth")
    p = _segment_index(hist.pred_ids, preds, "prediction")
    gt_area = _areas(g, counts, gts, "ground truth")
    pred_area = _areas(p, counts, preds, "prediction")
    on_void = (g < 0) & (p >= 0)
    pred_on_void = np.bincount(p[on_void], weights=counts[on_void], minlength=preds.ids.size)

    both = (g >= 0) & (p >= 0)
    gi, pi, inter = g[both], p[both], counts[both]
    same_category = gts.category[gi] == preds.category[pi]
    crowd = gts.crowd[gi]

    candidate = same_category & ~crowd
    union = pred_area[pi] + gt_area[gi] - inter - np.rint(pred_on_void[pi]).astype(np.int64)
    matched = candidate & (2 * inter > union)  # IoU > 0.5, exactly, in integers
    iou = inter[matched] / union[matched]
    matched_category = gts.category[gi[matched]]
    tp = np.bincount(matched_category, minlength=size)
    iou_sum = np.bincount(matched_category, weights=iou, minlength=size)

    gt_matched = np.zeros(gts.ids.size, dtype=bool)
    gt_matched[gi[matched]] = True
    pred_matched = np.zeros(preds.ids.size, dtype=bool)
    pred_matched[pi[matched]] = True

    fn = np.bincount(gts.category[~gt_matched & ~gts.crowd], minlength=size)

    on_own_crowd = same_category & crowd
    pred_on_crowd = np.bincount(pi[on_own_crowd], weights=inter[on_own_crowd], minlength=preds.ids.size)
    ignored = 2 * (pred_on_void + pred_on_crowd) > pred_area
    fp = np.bincount(preds.category[~pred_matched & ~ignored], minlength=size)
    return tp, fp, fn, iou_sum


def pq_from_maps(
    gt_map: np.ndarray,
    gt_segments: Sequence[SegmentInfo],
    pred_map: np.ndarray,
    pred_segments: Sequence[SegmentInfo],
    *,
    label_set: LabelSet,
    gt_source: str = "ground truth",
    pred_source: str = "prediction",
) -> PQStat:
    """PQ counts of one image from two ``H x W`` segment maps (0 = void) and their ``segments_info``.

    Only ``id``, ``category_id`` and (for ground truth) ``iscrowd`` of the segments are used; areas
    come from the maps. ``gt_source`` / ``pred_source`` name the inputs in error messages.
    """
    hist = pair_histogram(
        gt_map, gt_segments, pred_map, pred_segments, label_set=label_set, gt_source=gt_source,
        pred_source=pred_source,
    )  # fmt: skip
    category_ids = tuple(c.id for c in label_set)
    return PQStat(category_ids, *pq_from_histogram(hist, len(category_ids)), 1)
