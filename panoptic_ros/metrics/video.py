"""Video panoptic quality: Segmentation and Tracking Quality (STQ, Weber et al. 2021, "STEP:
Segmenting and Tracking Every Pixel") as its reference implementation computes it (deeplab2
``evaluation/numpy/segmentation_and_tracking_quality.py``, ``STQuality``, behind the KITTI-STEP and
MOTChallenge-STEP leaderboards), and CLEAR-MOT style identity counts. Video PQ (VPQ) is
:mod:`panoptic_ros.metrics.vpq`.

**Tracks.** The reference reads a frame as ``category << bits | id``, so a track is a (category, id)
pair: a predicted id that changes category becomes another track. With the thing categories given
(``thing_ids``), a ground-truth pixel of a thing category is on track (category, id) when its id is
> 0 and is **crowd** when its id is 0 (or flagged crowd); a predicted pixel of a thing category is
on track (category, id), id 0 included. Without ``thing_ids`` the thing pixels of either side are
those with an id > 0 (ground-truth crowd only where flagged).

**Association quality (AQ)**, over each sequence, for thing tracks only::

    AQ = 1 / |gt tracks| * sum over gt tracks g of
             1 / |g| * sum over predicted tracks p with TPA(p, g) > 0 of TPA(p, g) * IoU_id(p, g)
    IoU_id(p, g) = TPA / (TPA + FPA + FNA),  FPA = |p| - TPA,  FNA = |g| - TPA

with pixel counts over the whole sequence: ``TPA(p, g)`` the pixels where ``p`` and ``g`` overlap,
``|g|`` the pixels of ``g``, ``|p|`` the pixels of ``p`` outside ground-truth crowd: only crowd is
left out of both sides, so predicted thing pixels on void ground truth count against their track
(FPA). Classes do not have to agree between ``p`` and ``g`` (SQ measures classes). AQ over several
sequences sums the per-sequence numerators and divides by the total number of gt tracks.

**Segmentation quality (SQ)** is the class IoU mean of the confusion matrix accumulated over the
frames (:mod:`panoptic_ros.metrics.semantic`): gt void is ignored, predicted void on a labeled pixel
is a miss for its class, classes absent from both are left out, and -- as in the reference, whose
matrix drops the void row but keeps the void column -- predicted void on labeled pixels, when there
is any, is one more class with IoU 0 in the mean. **STQ** = ``sqrt(AQ x SQ)``. ``VideoResult.semantic``
is the plain mIoU (without the void class).

**Variant** ``"void-ignored"`` (the project's earlier rule, kept as an option because PQ and VPQ treat
void that way): predicted pixels on void ground truth are also left out of ``|p|``, and predicted void
is only a miss (no void class in SQ). The default is ``"reference"``.

Where the reference divides by its epsilon, here the value is undefined (NaN, ``null`` in JSON): AQ
without any gt track (the reference reports 0, and so STQ 0).

**ID switches and fragmentations** (CLEAR-MOT style), per gt object and frame in which it has pixels:
the object is *tracked* by the predicted track covering most of its pixels when their IoU in that
frame is above 0.5 (the same ``|p|`` as above), else untracked. An **ID switch** is counted when the
tracking predicted track differs from the one that last tracked the object (gaps in between do not
matter); a **fragmentation** when the object is tracked again after being untracked in its previous
frame with pixels, having been tracked before. Only predicted tracks with an id (> 0) can track an
object: a predicted thing region without an id (things the tracker has not confirmed) counts in AQ as
the reference's track (category, 0), but not as a track here, nor in the number of predicted tracks.
``object_frames`` counts the (gt object, frame) pairs.

Every frame adds one joint histogram of (gt track, predicted track) pairs and one confusion matrix;
no per-pixel Python loop.

This module owns the accumulation: a frame's labels (:class:`FrameLabels`, :func:`frame_labels`, from
:mod:`panoptic_ros.metrics.video_frames`), one sequence's pixel counts (:class:`SequenceAccumulator`
-> :class:`SequenceStat`) and the statistics of several sequences (:class:`VideoStat`), summarized
into the records of :mod:`panoptic_ros.metrics.video_result`.
:func:`~panoptic_ros.metrics.folders.evaluate_video_folders` evaluates folders of COCO panoptic
sequences.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import DatasetError
from panoptic_ros.metrics.semantic import SEMANTIC_VOID, ConfusionMatrix, confusion_from_maps
from panoptic_ros.metrics.video_frames import FrameLabels, frame_labels
from panoptic_ros.metrics.video_result import SequenceResult, VideoResult
from panoptic_ros.metrics.vpq import VPQStat

__all__ = [
    "STQ_VARIANTS",
    "FrameLabels",
    "SequenceAccumulator",
    "SequenceStat",
    "StqVariant",
    "VideoStat",
    "frame_labels",
]

#: IoU above which a gt object counts as tracked by a predicted track in a frame (CLEAR-MOT).
TRACKED_IOU = 0.5
#: How STQ treats void ground truth: as its reference does (the default), or left out of both terms.
StqVariant = Literal["reference", "void-ignored"]
STQ_VARIANTS: tuple[StqVariant, ...] = ("reference", "void-ignored")
_TRACK_BITS = 32  # track key = category << 32 | id
_ID_MASK = (1 << _TRACK_BITS) - 1


# --------------------------------------------------------------------------------------------------
# one sequence


def _aggregate(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``keys`` (``[n]`` or ``[n, 2]``) and the sums of their ``counts``."""
    if keys.shape[0] == 0:
        return keys, counts.astype(np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return unique, np.bincount(inverse.reshape(-1), weights=counts, minlength=unique.shape[0]).astype(
        np.int64
    )


@dataclass(frozen=True, eq=False)
class SequenceStat:
    """Pixel counts of one sequence over all its frames (host arrays).

    Attributes:
        name: the sequence's name.
        gt_ids, gt_sizes: gt track keys (``category << 32 | id``) and ``|g|``.
        pred_ids, pred_sizes: predicted track keys and ``|p|`` (see the module docstring).
        pair_ids: ``[K, 2]`` (gt key, predicted key) pairs that overlap; ``pair_tpa``: their TPA.
        confusion: the semantic confusion matrix of the sequence.
        id_switches, fragmentations, object_frames, num_frames: see the module docstring.
        variant: the STQ variant the counts follow.
        vpq: the sequence's video PQ counts, when they were taken (:mod:`panoptic_ros.metrics.vpq`).
    """

    name: str
    gt_ids: np.ndarray
    gt_sizes: np.ndarray
    pred_ids: np.ndarray
    pred_sizes: np.ndarray
    pair_ids: np.ndarray
    pair_tpa: np.ndarray
    confusion: ConfusionMatrix
    id_switches: int
    fragmentations: int
    object_frames: int
    num_frames: int
    variant: StqVariant = "reference"
    vpq: VPQStat | None = None

    @property
    def num_gt_tracks(self) -> int:
        return int(self.gt_ids.size)

    @property
    def num_pred_tracks(self) -> int:
        """Predicted tracks with an identity (a thing region with id 0 is not a track here)."""
        return int(np.count_nonzero(self.pred_ids & _ID_MASK))

    def aq_sum(self) -> float:
        """``sum over g of 1/|g| * sum over p of TPA * IoU_id`` (AQ times the number of gt tracks)."""
        if self.pair_tpa.size == 0:
            return 0.0
        g_index = np.searchsorted(self.gt_ids, self.pair_ids[:, 0])
        p_index = np.searchsorted(self.pred_ids, self.pair_ids[:, 1])
        tpa = self.pair_tpa.astype(np.float64)
        gt_size = self.gt_sizes[g_index].astype(np.float64)
        pred_size = self.pred_sizes[p_index].astype(np.float64)
        iou_id = tpa / (pred_size + gt_size - tpa)  # TPA + FPA + FNA = |p| + |g| - TPA
        return float((tpa * iou_id / gt_size).sum())

    def sq(self) -> float:
        """The sequence's SQ (class IoU mean, with the void class under the reference variant)."""
        return self.confusion.result(void_class=self.variant == "reference").miou


def _track_keys(semantic: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """``category << 32 | id`` of each pixel (int64): one key per (category, track id) pair."""
    return (semantic.astype(np.int64) << _TRACK_BITS) | tracks


class SequenceAccumulator:
    """Accumulates the frames of one sequence, in order (identity counts depend on the order).

    Args:
        name: the sequence's name (reported per sequence).
        category_ids: every category id that may appear (rows of the confusion matrix).
        thing_ids: the thing categories (see "Tracks" in the module docstring); None: thing pixels
            are those with a track id.
        variant: ``"reference"`` (default) or ``"void-ignored"`` (module docstring).
    """

    def __init__(
        self,
        name: str,
        category_ids: Sequence[int],
        *,
        thing_ids: Collection[int] | None = None,
        variant: StqVariant = "reference",
    ) -> None:
        if variant not in STQ_VARIANTS:
            raise ValueError(f"STQ variant {variant!r}: expected one of {', '.join(STQ_VARIANTS)}")
        self.name = name
        self.category_ids = tuple(int(c) for c in category_ids)
        self.variant: StqVariant = variant
        self._things = None if thing_ids is None else np.array(sorted(thing_ids), dtype=np.int64)
        self._gt: list[tuple[np.ndarray, np.ndarray]] = []
        self._pred: list[tuple[np.ndarray, np.ndarray]] = []
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._confusion = ConfusionMatrix.zeros(self.category_ids)
        self._last_id: dict[int, int] = {}  # gt key -> predicted key that last tracked it
        self._tracked_last: dict[int, bool] = {}  # gt key -> tracked in its previous frame with pixels
        self._id_switches = 0
        self._fragmentations = 0
        self._object_frames = 0
        self._frames = 0

    def _on(self, labels: FrameLabels, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Semantic map, track ids (checked) and thing pixels of one side."""
        semantic = np.asarray(labels.semantic)
        tracks = np.asarray(labels.tracks, dtype=np.int64)
        if tracks.size and (tracks.min() < 0 or tracks.max() >= 1 << _TRACK_BITS):
            raise DatasetError(f"{source}: track ids must lie in [0, 2**{_TRACK_BITS})")
        if self._things is None:
            return semantic, tracks, (tracks > 0) & (semantic != SEMANTIC_VOID)
        return semantic, tracks, np.isin(semantic, self._things)

    def add(self, gt: FrameLabels, pred: FrameLabels, *, source: str = "frame") -> None:
        """Add one frame: ground truth and prediction of the same size."""
        shapes = {np.shape(a) for a in (gt.semantic, gt.tracks, pred.semantic, pred.tracks)}
        if gt.crowd is not None:
            shapes.add(np.shape(gt.crowd))
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise DatasetError(
                f"{source}: ground truth and prediction maps must all be H x W of one size, got shapes "
                f"{sorted(shapes)}"
            )
        gt_semantic, gt_tracks, gt_thing = self._on(gt, source)
        pred_semantic, pred_tracks, pred_thing = self._on(pred, source)
        crowd = np.zeros(gt_thing.shape, bool) if gt.crowd is None else np.asarray(gt.crowd, dtype=bool)
        if self._things is not None:
            crowd = gt_thing & (crowd | (gt_tracks == 0))
        gt_on = gt_thing & ~crowd
        pred_on = pred_thing & ~crowd
        if self.variant == "void-ignored":
            pred_on &= gt_semantic != SEMANTIC_VOID
        gt_keys = _track_keys(gt_semantic[gt_on], gt_tracks[gt_on])
        g_ids, g_inverse, g_sizes = np.unique(gt_keys, return_inverse=True, return_counts=True)
        p_ids, p_sizes = np.unique(
            _track_keys(pred_semantic[pred_on], pred_tracks[pred_on]), return_counts=True
        )
        # joint histogram of (gt track, predicted track) over pixels where both are on
        both = gt_on & pred_on
        g_index = g_inverse.reshape(-1)[pred_on[gt_on]]
        p_index = np.searchsorted(p_ids, _track_keys(pred_semantic[both], pred_tracks[both]))
        hist = np.bincount(g_index * max(p_ids.size, 1) + p_index, minlength=g_ids.size * p_ids.size)
        pair = np.flatnonzero(hist)
        pair_g, pair_p, inter = pair // max(p_ids.size, 1), pair % max(p_ids.size, 1), hist[pair]
        self._gt.append((g_ids, g_sizes))
        self._pred.append((p_ids, p_sizes))
        self._pairs.append((np.stack([g_ids[pair_g], p_ids[pair_p]], axis=1), inter))
        self._confusion = self._confusion + confusion_from_maps(
            gt_semantic, pred_semantic, self.category_ids, source=source
        )
        self._count_identities(
            g_ids, g_sizes, p_ids=p_ids, p_sizes=p_sizes, pair_g=pair_g, pair_p=pair_p, inter=inter
        )
        self._frames += 1

    def _count_identities(
        self,
        g_ids: np.ndarray,
        g_sizes: np.ndarray,
        *,
        p_ids: np.ndarray,
        p_sizes: np.ndarray,
        pair_g: np.ndarray,
        pair_p: np.ndarray,
        inter: np.ndarray,
    ) -> None:
        self._object_frames += int(g_ids.size)
        # only predicted tracks with an identity can track an object: a thing region without an id
        # (track (category, 0): things not yet confirmed) counts in AQ, as in the reference, not here
        identified = (p_ids[pair_p] & _ID_MASK) > 0
        pair_g, pair_p, inter = pair_g[identified], pair_p[identified], inter[identified]
        # the predicted track covering most of each gt object (ties: the lower predicted id)
        order = np.lexsort((pair_p, -inter, pair_g))
        first = order[np.unique(pair_g[order], return_index=True)[1]]
        best_of = np.full(g_ids.size, -1, dtype=np.int64)
        best_iou = np.zeros(g_ids.size)
        g, p, i = pair_g[first], pair_p[first], inter[first]
        best_of[g] = p
        best_iou[g] = i / (g_sizes[g] + p_sizes[p] - i)
        for k, gt_id in enumerate(g_ids.tolist()):  # objects of one frame, not pixels
            tracked = best_of[k] >= 0 and best_iou[k] > TRACKED_IOU
            if tracked:
                pred_id = int(p_ids[best_of[k]])
                last = self._last_id.get(gt_id)
                if last is not None and last != pred_id:
                    self._id_switches += 1
                if last is not None and not self._tracked_last.get(gt_id, False):
                    self._fragmentations += 1
                self._last_id[gt_id] = pred_id
            self._tracked_last[gt_id] = tracked

    def finish(self) -> SequenceStat:
        """The sequence's totals."""

        def merged(parts: list[tuple[np.ndarray, np.ndarray]], width: int) -> tuple[np.ndarray, np.ndarray]:
            if not parts:
                return np.zeros((0, width) if width > 1 else 0, np.int64), np.zeros(0, np.int64)
            keys = np.concatenate([k for k, _ in parts]).astype(np.int64)
            counts = np.concatenate([c for _, c in parts])
            return _aggregate(keys, counts)

        gt_ids, gt_sizes = merged(self._gt, 1)
        pred_ids, pred_sizes = merged(self._pred, 1)
        pair_ids, pair_tpa = merged(self._pairs, 2)
        return SequenceStat(
            name=self.name,
            gt_ids=gt_ids,
            gt_sizes=gt_sizes,
            pred_ids=pred_ids,
            pred_sizes=pred_sizes,
            pair_ids=pair_ids.reshape(-1, 2),
            pair_tpa=pair_tpa,
            confusion=self._confusion,
            id_switches=self._id_switches,
            fragmentations=self._fragmentations,
            object_frames=self._object_frames,
            num_frames=self._frames,
            variant=self.variant,
        )


# --------------------------------------------------------------------------------------------------
# several sequences


def _stq(aq: float, sq: float) -> float:
    return math.sqrt(aq * sq) if not (math.isnan(aq) or math.isnan(sq)) else math.nan


@dataclass(frozen=True)
class VideoStat:
    """The statistics of any number of sequences; merge with ``+`` (sequence names must differ)."""

    sequences: tuple[SequenceStat, ...] = ()

    def __add__(self, other: VideoStat) -> VideoStat:
        if not isinstance(other, VideoStat):
            return NotImplemented
        names = {s.name for s in self.sequences} & {s.name for s in other.sequences}
        if names:
            raise ValueError(f"sequences {sorted(names)[:5]} are in both statistics; names must be unique")
        return VideoStat(self.sequences + other.sequences)

    def summarize(self, label_set: LabelSet | None = None) -> VideoResult:
        """STQ, AQ, SQ, identity counts and (when every sequence has them) VPQ over all sequences,
        and per sequence."""
        variants = {s.variant for s in self.sequences}
        if len(variants) > 1:
            raise ValueError(f"sequences were counted under different STQ variants: {sorted(variants)}")
        variant = next(iter(variants), "reference")
        vpqs = [s.vpq for s in self.sequences]
        per_sequence = []
        aq_total, gt_total = 0.0, 0
        confusion: ConfusionMatrix | None = None
        for s in self.sequences:
            aq_sum = s.aq_sum()
            aq = aq_sum / s.num_gt_tracks if s.num_gt_tracks else math.nan
            sq = s.sq()
            aq_total += aq_sum
            gt_total += s.num_gt_tracks
            confusion = s.confusion if confusion is None else confusion + s.confusion
            vpq = s.vpq.summarize().vpq.all if s.vpq is not None else math.nan
            per_sequence.append(
                SequenceResult(
                    s.name, _stq(aq, sq), aq, sq, s.num_gt_tracks, s.num_pred_tracks, s.id_switches,
                    s.fragmentations, s.object_frames, s.num_frames, vpq,
                )
            )  # fmt: skip
        semantic = confusion.result(label_set) if confusion is not None else None
        aq = aq_total / gt_total if gt_total else math.nan
        sq = confusion.result(void_class=variant == "reference").miou if confusion is not None else math.nan
        vpq_total = None
        if vpqs and all(v is not None for v in vpqs):
            vpq_total = sum(vpqs[1:], start=vpqs[0])  # type: ignore[arg-type]
        return VideoResult(
            stq=_stq(aq, sq),
            aq=aq,
            sq=sq,
            num_sequences=len(self.sequences),
            num_frames=sum(s.num_frames for s in self.sequences),
            num_gt_tracks=gt_total,
            num_pred_tracks=sum(s.num_pred_tracks for s in self.sequences),
            id_switches=sum(s.id_switches for s in self.sequences),
            fragmentations=sum(s.fragmentations for s in self.sequences),
            object_frames=sum(s.object_frames for s in self.sequences),
            per_sequence=tuple(per_sequence),
            semantic=semantic,
            variant=variant,
            vpq=vpq_total.summarize() if vpq_total is not None else None,
        )
