"""Video panoptic quality: Segmentation and Tracking Quality (STQ, Weber et al. 2021, "STEP:
Segmenting and Tracking Every Pixel") and CLEAR-MOT style identity counts.

**Association quality (AQ)**, over each sequence, for "thing" tracks only::

    AQ = 1 / |gt tracks| * sum over gt tracks g of
             1 / |g| * sum over predicted tracks p with TPA(p, g) > 0 of TPA(p, g) * IoU_id(p, g)
    IoU_id(p, g) = TPA / (TPA + FPA + FNA),  FPA = |p| - TPA,  FNA = |g| - TPA

with pixel counts over the whole sequence: ``TPA(p, g)`` the pixels where the predicted track ``p``
and the ground-truth track ``g`` overlap, ``|g|`` the pixels of ``g``, ``|p|`` the pixels of ``p``
**where the ground truth is labeled** (not void) **and not crowd**: predictions on void or crowd
ground truth are neither rewarded nor punished. Classes do not have to agree (AQ measures identity
only; SQ measures classes). A gt track is a non-crowd thing segment id; a predicted track is the id
of a segment of a thing category. AQ over several sequences sums the per-sequence numerators and
divides by the total number of gt tracks, as the reference implementation does.

Note on void: the reference code (deeplab2 ``STQuality.update_state``) removes crowd pixels from
``|p|`` but not gt-void pixels unless the caller masks them first (evaluation scripts such as
VIPSeg's do). Here gt-void pixels are always left out of ``|p|``, following the definition above.

**Segmentation quality (SQ)** is the class mIoU of the confusion matrix accumulated over the frames
(:mod:`panoptic_ros.metrics.semantic`: gt void ignored, predicted void on a labeled pixel is a miss,
classes absent from both left out). **STQ** = ``sqrt(AQ x SQ)``; NaN when either is undefined.

**ID switches and fragmentations** (CLEAR-MOT style), per gt object and frame in which it has pixels:
the object is *tracked* by the predicted track covering most of its pixels when their IoU in that
frame is above 0.5 (the same ``|p|`` as above), else untracked. An **ID switch** is counted when the
tracking predicted id differs from the id that last tracked the object (gaps in between do not
matter); a **fragmentation** when the object is tracked again after being untracked in its previous
frame with pixels, having been tracked before. ``object_frames`` counts the (gt object, frame) pairs.

Every frame adds one joint histogram of (gt track, predicted track) pairs and one confusion matrix;
no per-pixel Python loop.

This module owns the accumulation: a frame's labels (:class:`FrameLabels`, :func:`frame_labels`), one
sequence's pixel counts (:class:`SequenceAccumulator` -> :class:`SequenceStat`) and the statistics of
several sequences (:class:`VideoStat`), summarized into the records of
:mod:`panoptic_ros.metrics.video_result`. :func:`~panoptic_ros.metrics.folders.evaluate_video_folders`
evaluates folders of COCO panoptic sequences.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import VOID_ID, DatasetError, SegmentInfo, check_segment_map
from panoptic_ros.metrics.semantic import SEMANTIC_VOID, ConfusionMatrix, confusion_from_maps
from panoptic_ros.metrics.video_result import SequenceResult, VideoResult

#: IoU above which a gt object counts as tracked by a predicted track in a frame (CLEAR-MOT).
TRACKED_IOU = 0.5


class FrameLabels(NamedTuple):
    """One frame's labels for the video metrics (ground truth or prediction).

    Attributes:
        semantic: ``[H, W]`` integer category ids, :data:`~panoptic_ros.metrics.semantic.SEMANTIC_VOID`
            (-1) for void.
        tracks: ``[H, W]`` integer track id of thing pixels (``> 0``), 0 elsewhere (stuff, void, and
            for ground truth crowd).
        crowd: ``[H, W]`` bool crowd pixels (ground truth only; None for none).
    """

    semantic: np.ndarray
    tracks: np.ndarray
    crowd: np.ndarray | None = None


def frame_labels(
    segment_map: np.ndarray,
    segments: Sequence[SegmentInfo],
    thing_ids: Collection[int],
    *,
    source: str = "segment map",
) -> FrameLabels:
    """:class:`FrameLabels` of a COCO panoptic segment map: segments of thing categories are tracks
    with their segment id as track id; crowd segments become crowd (no track).

    Raises:
        DatasetError: the map holds an id that ``segments`` does not list.
    """
    ids_map = check_segment_map(segment_map, source=source)
    values, inverse = np.unique(ids_map, return_inverse=True)
    by_id = {s.id: s for s in segments}
    unknown = [int(v) for v in values if v != VOID_ID and int(v) not in by_id]
    if unknown:
        raise DatasetError(
            f"{source}: segment ids {unknown[:10]} are in the PNG but not in segments_info; every non-zero "
            "id needs an entry"
        )
    things = set(thing_ids)
    semantic = np.full(values.size, SEMANTIC_VOID, dtype=np.int64)
    tracks = np.zeros(values.size, dtype=np.int64)
    crowd = np.zeros(values.size, dtype=bool)
    for k, value in enumerate(values.tolist()):
        if value == VOID_ID:
            continue
        info = by_id[value]
        semantic[k] = info.category_id
        crowd[k] = info.iscrowd
        if info.category_id in things and not info.iscrowd:
            tracks[k] = value
    shape = ids_map.shape
    return FrameLabels(
        semantic[inverse].reshape(shape), tracks[inverse].reshape(shape), crowd[inverse].reshape(shape)
    )


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
        gt_ids, gt_sizes: gt track ids and ``|g|``.
        pred_ids, pred_sizes: predicted track ids and ``|p|`` (on labeled, non-crowd gt).
        pair_ids: ``[K, 2]`` (gt id, predicted id) pairs that overlap; ``pair_tpa``: their TPA.
        confusion: the semantic confusion matrix of the sequence.
        id_switches, fragmentations, object_frames, num_frames: see the module docstring.
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

    @property
    def num_gt_tracks(self) -> int:
        return int(self.gt_ids.size)

    @property
    def num_pred_tracks(self) -> int:
        return int(self.pred_ids.size)

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


class SequenceAccumulator:
    """Accumulates the frames of one sequence, in order (identity counts depend on the order).

    Args:
        name: the sequence's name (reported per sequence).
        category_ids: every category id that may appear (rows of the confusion matrix).
    """

    def __init__(self, name: str, category_ids: Sequence[int]) -> None:
        self.name = name
        self.category_ids = tuple(int(c) for c in category_ids)
        self._gt: list[tuple[np.ndarray, np.ndarray]] = []
        self._pred: list[tuple[np.ndarray, np.ndarray]] = []
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._confusion = ConfusionMatrix.zeros(self.category_ids)
        self._last_id: dict[int, int] = {}  # gt id -> predicted id that last tracked it
        self._tracked_last: dict[int, bool] = {}  # gt id -> tracked in its previous frame with pixels
        self._id_switches = 0
        self._fragmentations = 0
        self._object_frames = 0
        self._frames = 0

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
        gt_semantic = np.asarray(gt.semantic)
        gt_tracks = np.asarray(gt.tracks, dtype=np.int64)
        pred_tracks = np.asarray(pred.tracks, dtype=np.int64)
        ignored = gt_semantic == SEMANTIC_VOID
        if gt.crowd is not None:
            ignored |= np.asarray(gt.crowd, dtype=bool)
        gt_on = (gt_tracks > 0) & ~ignored
        pred_on = (pred_tracks > 0) & ~ignored
        g_ids, g_inverse, g_sizes = np.unique(gt_tracks[gt_on], return_inverse=True, return_counts=True)
        p_ids, p_sizes = np.unique(pred_tracks[pred_on], return_counts=True)
        # joint histogram of (gt track, predicted track) over pixels where both are on
        both = pred_on[gt_on]
        g_index = g_inverse.reshape(-1)[both]
        p_index = np.searchsorted(p_ids, pred_tracks[gt_on][both])
        hist = np.bincount(g_index * max(p_ids.size, 1) + p_index, minlength=g_ids.size * p_ids.size)
        pair = np.flatnonzero(hist)
        pair_g, pair_p, inter = pair // max(p_ids.size, 1), pair % max(p_ids.size, 1), hist[pair]
        self._gt.append((g_ids, g_sizes))
        self._pred.append((p_ids, p_sizes))
        self._pairs.append((np.stack([g_ids[pair_g], p_ids[pair_p]], axis=1), inter))
        self._confusion = self._confusion + confusion_from_maps(
            gt_semantic, np.asarray(pred.semantic), self.category_ids, source=source
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
        """STQ, AQ, SQ and identity counts over all sequences, and per sequence."""
        per_sequence = []
        aq_total, gt_total = 0.0, 0
        confusion: ConfusionMatrix | None = None
        for s in self.sequences:
            aq_sum = s.aq_sum()
            aq = aq_sum / s.num_gt_tracks if s.num_gt_tracks else math.nan
            sq = s.confusion.result().miou
            aq_total += aq_sum
            gt_total += s.num_gt_tracks
            confusion = s.confusion if confusion is None else confusion + s.confusion
            per_sequence.append(
                SequenceResult(
                    s.name, _stq(aq, sq), aq, sq, s.num_gt_tracks, s.num_pred_tracks, s.id_switches,
                    s.fragmentations, s.object_frames, s.num_frames,
                )
            )  # fmt: skip
        semantic = confusion.result(label_set) if confusion is not None else None
        aq = aq_total / gt_total if gt_total else math.nan
        sq = semantic.miou if semantic is not None else math.nan
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
        )
