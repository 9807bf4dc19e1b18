"""Semantic segmentation quality: mean IoU and pixel accuracy from a confusion matrix.

The matrix has one row per category (ground truth) and one column per category plus a last column
for predicted void (no category). Ground-truth void pixels are ignored; a predicted-void pixel on a
labeled ground-truth pixel counts against that category (a miss). Per category ``c``::

    IoU_c = M[c, c] / (sum of row c + sum of column c - M[c, c])

mIoU averages IoU_c over the categories present in ground truth or prediction (the others are left
out); with ``void_class`` (the SQ term of STQ as its reference computes it), predicted void on labeled
pixels, when there is any, also counts as one more class whose IoU is 0. Pixel accuracy is
``trace / number of labeled ground-truth pixels``. Each image adds one ``np.bincount`` to the matrix,
so images can be accumulated and merged in any order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from panoptic_ros.core.ids import VOID_PANOPTIC
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import VOID_ID, DatasetError, SegmentInfo, check_segment_map

SEMANTIC_VOID = VOID_PANOPTIC  # void value of the category maps made by semantic_from_panoptic


_MAX_LUT = 1 << 20  # value ranges up to this size use a lookup table, larger ones a binary search


def _locate(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value, its index in ``keys`` (any order, unique) and whether it was found."""
    if keys.size == 0 or values.size == 0:
        return np.zeros(values.shape, dtype=np.int64), np.zeros(values.shape, dtype=bool)
    lo = min(int(values.min()), int(keys.min()))
    hi = max(int(values.max()), int(keys.max()))
    if hi - lo < _MAX_LUT:
        lut = np.full(hi - lo + 1, -1, dtype=np.int64)
        lut[keys - lo] = np.arange(keys.size)
        index = lut[values - lo]
        found = index >= 0
        return np.maximum(index, 0), found
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, values), keys.size - 1)
    found = sorted_keys[pos] == values
    return order[pos], found


def semantic_from_panoptic(
    segment_map: np.ndarray,
    segments: Sequence[SegmentInfo],
    *,
    void: int = SEMANTIC_VOID,
    source: str = "segment map",
) -> np.ndarray:
    """Per-pixel category ids (``H x W`` int64) of a COCO panoptic segment map; id 0 becomes ``void``.

    Every non-zero id of the map must be in ``segments``; otherwise :class:`DatasetError` naming
    ``source``.
    """
    ids = check_segment_map(segment_map, source=source)
    segment_ids = np.array([s.id for s in segments], dtype=np.int64)
    categories = np.array([s.category_id for s in segments], dtype=np.int64)
    index, found = _locate(ids, segment_ids)
    unknown = ~found & (ids != VOID_ID)
    if unknown.any():
        raise DatasetError(
            f"{source}: segment ids {np.unique(ids[unknown])[:10].tolist()} are in the PNG but not in "
            "segments_info"
        )
    if categories.size == 0:
        return np.full(ids.shape, void, dtype=np.int64)
    return np.where(found, categories[index], void)


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """Pixel counts: ``matrix[g, p]`` = pixels of category index ``g`` predicted as index ``p``;
    column ``len(category_ids)`` counts pixels predicted as void. Indices follow ``category_ids``."""

    category_ids: tuple[int, ...]
    matrix: np.ndarray

    def __post_init__(self) -> None:
        size = len(self.category_ids)
        matrix = np.array(self.matrix, dtype=np.int64)
        if matrix.shape != (size, size + 1):
            raise ValueError(f"confusion matrix must be {size} x {size + 1}, got {matrix.shape}")
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)

    @classmethod
    def zeros(cls, category_ids: Sequence[int]) -> ConfusionMatrix:
        ids = tuple(int(i) for i in category_ids)
        return cls(ids, np.zeros((len(ids), len(ids) + 1), dtype=np.int64))

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if other.category_ids != self.category_ids:
            raise ValueError("cannot add confusion matrices over different category lists")
        return ConfusionMatrix(self.category_ids, self.matrix + other.matrix)

    def result(self, label_set: LabelSet | None = None, *, void_class: bool = False) -> SemanticResult:
        """mIoU and pixel accuracy (see the module docstring); ``n`` counts the classes averaged, the
        void class included when ``void_class`` adds it (``per_class_iou`` holds categories only)."""
        size = len(self.category_ids)
        hits = np.diagonal(self.matrix[:, :size]).astype(np.float64)
        gt_pixels = self.matrix.sum(axis=1).astype(np.float64)
        pred_pixels = self.matrix[:, :size].sum(axis=0).astype(np.float64)
        union = gt_pixels + pred_pixels - hits
        present = union > 0
        iou = np.divide(hits, union, out=np.zeros(size), where=present)
        total = float(gt_pixels.sum())
        per_class = {cid: float(v) for cid, v, p in zip(self.category_ids, iou, present, strict=True) if p}
        names = {c.id: c.name for c in label_set} if label_set is not None else {}
        n = int(present.sum()) + int(void_class and bool(self.matrix[:, size].any()))
        return SemanticResult(
            miou=float(iou[present].sum()) / n if n else math.nan,
            pixel_accuracy=float(hits.sum()) / total if total else math.nan,
            n=n,
            num_pixels=int(total),
            per_class_iou=per_class,
            names={cid: names.get(cid, str(cid)) for cid in per_class},
        )


def confusion_from_maps(
    gt_semantic: np.ndarray,
    pred_semantic: np.ndarray,
    category_ids: Sequence[int],
    *,
    void: int = SEMANTIC_VOID,
    source: str = "semantic maps",
) -> ConfusionMatrix:
    """The confusion matrix of one image from two ``H x W`` category-id maps (one ``bincount``).

    ``void`` marks unlabeled pixels in both maps; other values must be in ``category_ids``.
    """
    gt = np.asarray(gt_semantic)
    pred = np.asarray(pred_semantic)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise DatasetError(
            f"{source}: ground truth {gt.shape} and prediction {pred.shape} must both be H x W, same size"
        )
    ids = np.array(category_ids, dtype=np.int64)
    size = ids.size
    gt_index, gt_found = _locate(gt.astype(np.int64, copy=False).ravel(), ids)
    pred_index, pred_found = _locate(pred.astype(np.int64, copy=False).ravel(), ids)
    gt_void = gt.ravel() == void
    pred_void = pred.ravel() == void
    for name, values, found, is_void in (
        ("ground truth", gt.ravel(), gt_found, gt_void),
        ("prediction", pred.ravel(), pred_found, pred_void),
    ):
        unknown = ~found & ~is_void
        if unknown.any():
            raise DatasetError(
                f"{source}: {name} holds category ids {np.unique(values[unknown])[:10].tolist()} that "
                f"are neither known categories nor void ({void})"
            )
    labeled = ~gt_void
    pred_column = np.where(pred_void, size, pred_index)
    flat = gt_index[labeled] * (size + 1) + pred_column[labeled]
    counts = np.bincount(flat, minlength=size * (size + 1))
    return ConfusionMatrix(tuple(int(i) for i in ids), counts.reshape(size, size + 1))


@dataclass(frozen=True)
class SemanticResult:
    """mIoU (fraction, 0..1), pixel accuracy, the number of classes averaged and per-class IoU."""

    miou: float
    pixel_accuracy: float
    n: int
    num_pixels: int
    per_class_iou: Mapping[int, float]
    names: Mapping[int, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "miou": _nan_to_none(self.miou),
            "pixel_accuracy": _nan_to_none(self.pixel_accuracy),
            "n": self.n,
            "num_pixels": self.num_pixels,
            "per_class": {
                str(cid): {"name": self.names.get(cid, str(cid)), "iou": iou}
                for cid, iou in self.per_class_iou.items()
            },
        }

    def table(self) -> str:
        return f"{'mIoU':10s}| {_pct(self.miou)}   pixel accuracy {_pct(self.pixel_accuracy)}   N {self.n:d}"


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _pct(value: float) -> str:
    return "    -" if math.isnan(value) else f"{100 * value:5.1f}"
