"""Segment maps on the CPU as compiled passes (numba): what
:func:`~panoptic_ros.core.segments.segment_geometry` measures, with the same integer arithmetic (so
the same numbers), plus a per-segment sum of one value per pixel (the fusion's class probabilities);
and two lookup tables read at every pixel of a label map in one pass (:func:`take_pair_cpu`).
Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

from panoptic_ros.core.segments import PixelFrame, identity_axes


@njit(cache=True, nogil=True)
def _measure(  # noqa: PLR0917 (compiled loops take positional arguments)
    segment: np.ndarray,
    num_segments: int,
    weight: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    total: np.ndarray,
    prob: np.ndarray,
    seg_classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Geometry in the camera frame and the probability sums of ``num_segments`` segments of an
    ``[h, w]`` segment map (``num_segments`` for none), run by run of one segment along each row:
    ``(areas [S] int64, bboxes [S, 4] int64 (x, y, w, h), centroids [S, 2] float32 (x, y), probability
    sums [S] float64)``. ``weight``, ``first``, ``last``, ``total`` ``[2, L]`` the frame's axes (channel
    0 columns, 1 rows: :class:`Axes`); ``prob`` ``[C, h * w]`` float32 softmax (``[0, 0]`` for none:
    sums stay 0)."""
    height, width = segment.shape
    areas = np.zeros(num_segments, dtype=np.int64)
    low = np.full((num_segments, 2), 1 << 62, dtype=np.int64)
    high = np.full((num_segments, 2), -1, dtype=np.int64)
    sums = np.zeros((num_segments, 2), dtype=np.int64)
    prob_sum = np.zeros(num_segments, dtype=np.float64)
    with_prob = prob.shape[1] > 0
    # along the columns: prefix sums of the camera weights and positions, and the nearest column with
    # camera pixels at or after each column; a run's sums are differences of prefixes, its extent the
    # first (last) camera column of its first (last) column with camera pixels
    weight_before = np.zeros(width + 1, dtype=np.int64)
    total_before = np.zeros(width + 1, dtype=np.int64)
    for x in range(width):
        weight_before[x + 1] = weight_before[x] + weight[0, x]
        total_before[x + 1] = total_before[x] + total[0, x]
    next_seen = np.empty(width + 1, dtype=np.int64)
    next_seen[width] = width
    for x in range(width - 1, -1, -1):
        next_seen[x] = x if weight[0, x] > 0 else next_seen[x + 1]
    for y in range(height):
        row_weight = weight[1, y]
        row_total = total[1, y]
        x = 0
        while x < width:
            s = segment[y, x]
            end = x + 1  # the run of s, written out: numba's cache would miss edits to a helper elsewhere
            while end < width and segment[y, end] == s:
                end += 1
            if s < num_segments:
                if with_prob:
                    cls = seg_classes[s]
                    base = y * width
                    for k in range(x, end):
                        prob_sum[s] += np.float64(prob[cls, base + k])
                col_weight = weight_before[end] - weight_before[x]
                areas[s] += row_weight * col_weight
                sums[s, 0] += row_weight * (total_before[end] - total_before[x])
                sums[s, 1] += col_weight * row_total
                if row_weight > 0 and col_weight > 0:
                    seen = next_seen[x]
                    last_seen = end - 1
                    while weight[0, last_seen] == 0:
                        last_seen -= 1
                    low[s, 0] = min(low[s, 0], first[0, seen])
                    high[s, 0] = max(high[s, 0], last[0, last_seen])
                    low[s, 1] = min(low[s, 1], first[1, y])
                    high[s, 1] = max(high[s, 1], last[1, y])
            x = end
    bboxes = np.zeros((num_segments, 4), dtype=np.int64)
    centroids = np.zeros((num_segments, 2), dtype=np.float32)
    for s in range(num_segments):
        if areas[s] > 0:
            bboxes[s, 0] = low[s, 0]
            bboxes[s, 1] = low[s, 1]
            bboxes[s, 2] = high[s, 0] - low[s, 0] + 1
            bboxes[s, 3] = high[s, 1] - low[s, 1] + 1
        for axis in range(2):
            centroids[s, axis] = np.float32(np.float64(sums[s, axis]) / np.float64(max(areas[s], 1)))
    return areas, bboxes, centroids, prob_sum


_NO_PROB = np.zeros((1, 0), dtype=np.float32)


def measure_cpu(
    segment_of_pixel: np.ndarray,
    num_segments: int,
    frame: PixelFrame | None,
    prob: np.ndarray | None,
    classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Areas, boxes, centroids (in ``frame``, or the map's own pixels) of every segment of an
    ``[h, w]`` int64 segment map, and the sum over each segment's pixels of ``prob[classes[s]]``
    (``prob`` ``[C, h * w]`` float32, e.g. class probabilities; None: sums of 0); see :func:`_measure`."""
    height, width = segment_of_pixel.shape
    axes = frame.axes if frame is not None else identity_axes(height, width, torch.device("cpu"))
    return _measure(
        segment_of_pixel,
        int(num_segments),
        axes.weight.numpy(),
        axes.first.numpy(),
        axes.last.numpy(),
        axes.total.numpy(),
        _NO_PROB if prob is None else prob,
        classes,
    )


@njit(cache=True, nogil=True)
def _take_pair(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, shift: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(first[labels + shift], second[labels + shift])`` for a flat ``labels`` map, in one pass that
    looks the tables up once per run of equal labels. An index outside the tables raises IndexError
    (numba's bounds check is off: checked here)."""
    size = labels.size
    out_first = np.empty(size, dtype=first.dtype)
    out_second = np.empty(size, dtype=second.dtype)
    entries = min(first.size, second.size)
    previous = labels[0] + 1 if size else 0  # differs from the first label
    a = first[0]
    b = second[0]
    for p in range(size):
        label = labels[p]
        if label != previous:
            index = label + shift
            if index < 0 or index >= entries:
                raise IndexError("a label is outside the lookup tables")
            a = first[index]
            b = second[index]
            previous = label
        out_first[p] = a
        out_second[p] = b
    return out_first, out_second


def take_pair_cpu(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, *, shift: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D lookup tables read at ``labels + shift`` (an integer map of any shape): two maps shaped
    like ``labels`` in the tables' types, what two ``take`` calls give, made in one pass over the map
    (a run of equal labels, as segment maps have along their rows, is looked up once).

    Raises:
        IndexError: a label plus ``shift`` is outside ``[0, min(first.size, second.size))``.
    """
    flat = np.ascontiguousarray(labels).reshape(-1)
    if first.size == 0 or second.size == 0:
        if flat.size:
            raise IndexError("a label is outside the lookup tables")
        return np.empty(labels.shape, first.dtype), np.empty(labels.shape, second.dtype)
    out_first, out_second = _take_pair(first, second, flat, int(shift))
    return out_first.reshape(labels.shape), out_second.reshape(labels.shape)


def compile_lookups() -> None:
    """Compile (or load from numba's cache) :func:`take_pair_cpu` for the pipeline's int64 maps and
    tables, so that the first frame does not pay for it."""
    table = np.zeros(2, dtype=np.int64)
    take_pair_cpu(table, table, np.full((2, 2), -1, dtype=np.int64), shift=1)
