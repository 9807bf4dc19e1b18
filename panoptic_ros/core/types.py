"""Records of one frame's panoptic result, on the host (numpy).

Axis order is always ``H x W`` (row, column); ``x`` is the column and ``y`` the row, in pixels, as in
``sensor_msgs/Image``. Device-side (PyTorch) results of fusion and tracking are converted into these
records only for what is published or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, VOID_INSTANCE, encode_panoptic
from panoptic_ros.core.labels import LabelSet


class BBox(NamedTuple):
    """Axis-aligned box around a segment's pixels: top-left corner and size, in pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a frame: a thing instance (``instance_id > 0``) or a stuff region (``0``).

    ``(category_id, instance_id)`` is unique within a frame; stuff of one category is one segment.
    """

    category_id: int
    instance_id: int
    is_thing: bool
    area: int
    bbox: BBox
    centroid: tuple[float, float]
    score: float = 1.0


@dataclass(frozen=True)
class PanopticResult:
    """One frame's panoptic segmentation.

    Attributes:
        semantic: ``H x W`` integer category ids; ``void_semantic`` marks void pixels.
        instance: ``H x W`` integer instance ids (track ids for things), 0 for stuff and void.
        segments: one :class:`Segment` per (category, instance) present in the maps.
        void_semantic: the void value of ``semantic`` (255, or 65535 for large label sets).
        label_divisor: multiplier of the category id in combined panoptic ids.
    """

    semantic: np.ndarray
    instance: np.ndarray
    segments: tuple[Segment, ...]
    void_semantic: int = 255
    label_divisor: int = DEFAULT_LABEL_DIVISOR

    def __post_init__(self) -> None:
        if self.semantic.ndim != 2 or self.semantic.shape != self.instance.shape:
            raise ValueError(
                f"semantic {self.semantic.shape} and instance {self.instance.shape} must be equal H x W maps"
            )

    @property
    def height(self) -> int:
        return int(self.semantic.shape[0])

    @property
    def width(self) -> int:
        return int(self.semantic.shape[1])

    @property
    def things(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.is_thing)

    def panoptic(self) -> np.ndarray:
        """Combined ids ``category * label_divisor + instance`` (``int64``, -1 for void)."""
        return encode_panoptic(
            self.semantic, self.instance, void_semantic=self.void_semantic, label_divisor=self.label_divisor
        )

    @classmethod
    def from_maps(
        cls,
        semantic: np.ndarray,
        instance: np.ndarray,
        label_set: LabelSet,
        *,
        scores: dict[tuple[int, int], float] | None = None,
        label_divisor: int = DEFAULT_LABEL_DIVISOR,
    ) -> PanopticResult:
        """Build a result from label maps, measuring every segment (see :func:`measure_segments`).

        Instance ids on stuff and void pixels are set to 0 (a copy of ``instance`` when any were set).
        """
        segments = measure_segments(semantic, instance, label_set, scores=scores)
        thing_px = _thing_pixels(np.asarray(semantic), label_set)
        instance = np.where(thing_px, instance, VOID_INSTANCE).astype(np.asarray(instance).dtype, copy=False)
        return cls(
            semantic=semantic,
            instance=instance,
            segments=segments,
            void_semantic=label_set.void_semantic,
            label_divisor=label_divisor,
        )


def measure_segments(
    semantic: np.ndarray,
    instance: np.ndarray,
    label_set: LabelSet,
    *,
    scores: dict[tuple[int, int], float] | None = None,
) -> tuple[Segment, ...]:
    """Area, box and centroid of every (category, instance) segment of two ``H x W`` maps.

    Vectorized: one ``np.unique`` over segment keys, then ``bincount`` / ``minimum.at`` per statistic.
    Void pixels (``label_set.void_semantic``) are ignored; instance ids on stuff pixels are ignored
    (stuff of one category is one segment). Segments come sorted by ``(category_id, instance_id)``.
    """
    sem = np.asarray(semantic).astype(np.int64).ravel()
    inst = np.asarray(instance).astype(np.int64).ravel()
    width = int(semantic.shape[1])
    valid = sem != label_set.void_semantic
    thing_lut = label_set.is_thing_lut
    inst = np.where(_thing_pixels(sem, label_set), inst, VOID_INSTANCE)
    pixels = np.flatnonzero(valid)
    if pixels.size == 0:
        return ()
    keys = sem[pixels] * (int(inst.max()) + 1) + inst[pixels]
    unique, inverse, area = np.unique(keys, return_inverse=True, return_counts=True)
    n = unique.size
    ys, xs = np.divmod(pixels, width)
    cx = np.bincount(inverse, weights=xs, minlength=n) / area
    cy = np.bincount(inverse, weights=ys, minlength=n) / area
    x0 = np.full(n, np.iinfo(np.int64).max)
    y0 = np.full(n, np.iinfo(np.int64).max)
    x1 = np.full(n, -1)
    y1 = np.full(n, -1)
    np.minimum.at(x0, inverse, xs)
    np.minimum.at(y0, inverse, ys)
    np.maximum.at(x1, inverse, xs)
    np.maximum.at(y1, inverse, ys)
    divisor = int(inst.max()) + 1
    segments = []
    for k in range(n):
        category_id, instance_id = divmod(int(unique[k]), divisor)
        segments.append(
            Segment(
                category_id=category_id,
                instance_id=instance_id,
                is_thing=bool(category_id < thing_lut.size and thing_lut[category_id]),
                area=int(area[k]),
                bbox=BBox(int(x0[k]), int(y0[k]), int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)),
                centroid=(float(cx[k]), float(cy[k])),
                score=1.0 if scores is None else float(scores.get((category_id, instance_id), 1.0)),
            )
        )
    return tuple(segments)


def _thing_pixels(semantic: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """Boolean mask (shape of ``semantic``) of pixels whose category is a thing."""
    lut = label_set.is_thing_lut
    inside = (semantic >= 0) & (semantic < lut.size)
    return inside & lut[np.where(inside, semantic, 0)]
