"""Segment geometry on the CPU as one compiled pass (numba): what
:func:`~panoptic_ros.core.segments.segment_geometry` measures, with the same integer arithmetic (so
the same numbers), plus a per-segment sum of one value per pixel (the fusion's class probabilities).
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
    ``[h, w]`` segment map (``num_segments`` for none): ``(areas [S] int64, bboxes [S, 4] int64 (x, y,
    w, h), centroids [S, 2] float32 (x, y), probability sums [S] float64)``. ``weight``, ``first``,
    ``last``, ``total`` ``[2, L]`` the frame's axes (channel 0 columns, 1 rows: :class:`Axes`);
    ``prob`` ``[C, h * w]`` float32 softmax (``[0, 0]`` for none: sums stay 0)."""
    height, width = segment.shape
    areas = np.zeros(num_segments, dtype=np.int64)
    low = np.full((num_segments, 2), 1 << 62, dtype=np.int64)
    high = np.full((num_segments, 2), -1, dtype=np.int64)
    sums = np.zeros((num_segments, 2), dtype=np.int64)
    prob_sum = np.zeros(num_segments, dtype=np.float64)
    with_prob = prob.shape[1] > 0
    for y in range(height):
        row_weight = weight[1, y]
        for x in range(width):
            s = segment[y, x]
            if s >= num_segments:
                continue
            if with_prob:
                prob_sum[s] += np.float64(prob[seg_classes[s], y * width + x])
            col_weight = weight[0, x]
            areas[s] += row_weight * col_weight
            sums[s, 0] += row_weight * total[0, x]
            sums[s, 1] += col_weight * total[1, y]
            if row_weight > 0 and col_weight > 0:
                low[s, 0] = min(low[s, 0], first[0, x])
                high[s, 0] = max(high[s, 0], last[0, x])
                low[s, 1] = min(low[s, 1], first[1, y])
                high[s, 1] = max(high[s, 1], last[1, y])
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
