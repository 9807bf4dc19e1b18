"""The tracker's association cost of every (track, instance) pair as one compiled loop (numba).

:meth:`~panoptic_ros.tracking.tracker.Tracker.update` needs, for each pair, the IoU of the track's
predicted box (cut to the image) with the instance's box, the distance from that box's center to the
instance's centroid, the distance of their mean colors, the gates and the cost. With numpy that was a
chain of about thirty calls on arrays of a few dozen elements, each paying numpy's dispatch (and,
inside a frame, code and data cold after the large per-pixel loops); here it is one pass over the
pairs. The arithmetic is that of :func:`~panoptic_ros.tracking.association.box_iou`,
:func:`~panoptic_ros.tracking.association.center_distance` and the tracker's cost formula, operation
for operation in float64 (a division by zero gives inf or NaN, as numpy's: ``error_model="numpy"``), so
the costs are the same bit for bit (tested against them). Compiled on first use and cached on disk
(``cache=True``); :func:`compile_kernels` compiles it ahead of the first frame. Host arrays only: the
tracker's tables live on the host on every device.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from panoptic_ros.tracking.association import COLOR_SCALE
from panoptic_ros.tracking.params import TrackerParams
from panoptic_ros.tracking.state import Instances, Tracks


@njit(cache=True, nogil=True, error_model="numpy")
def _pair_costs(  # noqa: PLR0917 (compiled loops take positional arguments)
    predicted: np.ndarray,
    track_categories: np.ndarray,
    track_colors: np.ndarray,
    has_color: np.ndarray,
    mask_rows: np.ndarray,
    previous_iou: np.ndarray,
    boxes: np.ndarray,
    centroids: np.ndarray,
    categories: np.ndarray,
    colors: np.ndarray,
    height: float,
    width: float,
    gates: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(cost [N, T] float64, in_image [N] bool)`` of N tracks against T instances.

    Tracks: ``predicted`` ``[N, 4]`` float64 boxes ``(x0, y0, x1, y1)`` at this frame's stamp (cut here
    to the ``height x width`` image; ``in_image``: whether anything of the box is left),
    ``track_categories`` ``[N]`` int64, ``track_colors`` ``[N, 3]`` float64 mean colors where
    ``has_color`` ``[N]``, ``mask_rows`` ``[N]`` int64: the row of ``previous_iou`` (``[P, T]`` mask
    IoU of the previous frame's instances with these) holding the track, -1 for none. Instances:
    ``boxes`` ``[T, 4]`` float64, ``centroids`` ``[T, 2]`` float64, ``categories`` ``[T]`` int64,
    ``colors`` ``[T, 3]`` float64 mean colors, or ``[0, 3]`` for no appearance term.

    ``gates`` ``[7]`` float64: ``min_mask_iou, min_box_iou, max_center_distance, distance_weight,
    min_box_size, max_color_distance, appearance_weight``. A pair is allowed when the categories match
    and mask IoU ``>= min_mask_iou``, or the box is in the image and box IoU ``>= min_box_iou`` or
    center distance ``<= max_center_distance``, and (with colors) the color distance (0 for a track
    without a color) is ``<= max_color_distance``. Its cost is ``1 - max(mask IoU, box IoU) +
    distance_weight * min(distance, max_center_distance)`` plus ``appearance_weight * min(color
    distance, 1)``; ``inf`` where not allowed."""
    min_mask_iou, min_box_iou, max_distance = gates[0], gates[1], gates[2]
    distance_weight, min_size, max_color, color_weight = gates[3], gates[4], gates[5], gates[6]
    n = predicted.shape[0]
    t = boxes.shape[0]
    use_colors = colors.shape[0] > 0
    cost = np.empty((n, t), dtype=np.float64)
    in_image = np.empty(n, dtype=np.bool_)
    for i in range(n):
        # the predicted box cut to the image (clip_boxes), its center and size (center_distance)
        x0 = min(max(predicted[i, 0], 0.0), width)
        y0 = min(max(predicted[i, 1], 0.0), height)
        x1 = min(max(predicted[i, 2], 0.0), width)
        y1 = min(max(predicted[i, 3], 0.0), height)
        inside = x1 > x0 and y1 > y0
        in_image[i] = inside
        area = (x1 - x0) * (y1 - y0)
        center_x = (x0 + x1) / 2
        center_y = (y0 + y1) / 2
        size_x = max(x1 - x0, min_size)
        size_y = max(y1 - y0, min_size)
        row = mask_rows[i]
        for j in range(t):
            if track_categories[i] != categories[j]:
                cost[i, j] = np.inf
                continue
            mask = previous_iou[row, j] if row >= 0 else 0.0
            # box_iou
            bx0, by0, bx1, by1 = boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3]
            inter = max(min(x1, bx1) - max(x0, bx0), 0.0) * max(min(y1, by1) - max(y0, by0), 0.0)
            union = area + (bx1 - bx0) * (by1 - by0) - inter
            box = inter / union if union > 0 else 0.0
            # center_distance with the instance's box as the other size
            dx = (centroids[j, 0] - center_x) / max(size_x, bx1 - bx0)
            dy = (centroids[j, 1] - center_y) / max(size_y, by1 - by0)
            distance = np.sqrt(dx * dx + dy * dy)
            allowed = mask >= min_mask_iou or (inside and (box >= min_box_iou or distance <= max_distance))
            value = 1.0 - max(mask, box) + distance_weight * min(distance, max_distance)
            if use_colors:
                shade = 0.0
                if has_color[i]:
                    r = track_colors[i, 0] - colors[j, 0]
                    g = track_colors[i, 1] - colors[j, 1]
                    b = track_colors[i, 2] - colors[j, 2]
                    shade = np.sqrt(r * r + g * g + b * b) / COLOR_SCALE
                allowed = allowed and shade <= max_color
                value = value + color_weight * min(shade, 1.0)
            cost[i, j] = value if allowed else np.inf
    return cost, in_image


#: The ``colors`` of :func:`_pair_costs` without an appearance term.
_NO_COLORS = np.zeros((0, 3), dtype=np.float64)


def pair_costs(
    tracks: Tracks,
    det: Instances,
    *,
    predicted: np.ndarray,
    mask_rows: np.ndarray,
    previous_iou: np.ndarray,
    colors: np.ndarray | None,
    size: tuple[int, int],
    params: TrackerParams,
) -> tuple[np.ndarray, np.ndarray]:
    """``(cost [N, T] float64, in_image [N] bool)`` of the tracks against the frame's instances: the
    association cost of every pair, ``inf`` where the gates of ``params`` do not allow it, and whether
    anything of each track's ``predicted`` box (``[N, 4]``, at this frame's stamp) is left in the
    ``(height, width)`` image ``size``. ``mask_rows``, ``previous_iou``: as :func:`_pair_costs` takes
    them; ``colors`` ``[T, 3]`` the instances' mean colors, None for no appearance term."""
    height, width = size
    gates = np.array(
        [
            params.min_mask_iou,
            params.min_box_iou,
            params.max_center_distance,
            params.distance_weight,
            params.min_box_size,
            params.max_color_distance,
            params.appearance_weight,
        ],
        dtype=np.float64,
    )
    contiguous = np.ascontiguousarray
    return _pair_costs(
        contiguous(predicted, dtype=np.float64),
        contiguous(tracks.categories, dtype=np.int64),
        contiguous(tracks.colors, dtype=np.float64),
        contiguous(tracks.has_color, dtype=np.bool_),
        contiguous(mask_rows, dtype=np.int64),
        contiguous(previous_iou, dtype=np.float64),
        contiguous(det.boxes, dtype=np.float64),
        contiguous(det.centroids, dtype=np.float64),
        contiguous(det.categories, dtype=np.int64),
        _NO_COLORS if colors is None else contiguous(colors, dtype=np.float64),
        float(height),
        float(width),
        gates,
    )


def compile_kernels() -> None:
    """Compile (or load from numba's cache) :func:`_pair_costs` for the tracker's arrays (with colors
    and without)."""
    one = np.ones(1, dtype=np.int64)
    boxes, iou, gates = np.zeros((1, 4)), np.zeros((0, 1)), np.zeros(7)
    for colors in (np.zeros((1, 3)), _NO_COLORS):
        _pair_costs(
            boxes, one, np.zeros((1, 3)), np.zeros(1, dtype=np.bool_), -one, iou,
            boxes, np.zeros((1, 2)), one, colors, 1.0, 1.0, gates,
        )  # fmt: skip
