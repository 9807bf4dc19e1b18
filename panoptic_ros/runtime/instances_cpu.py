"""The instance table of a frame in one compiled pass (numba), for :mod:`panoptic_ros.runtime.instances`.

Put together with numpy, the table cost some seventy calls on a few dozen rows a frame (each column of
the tracks converted, the lost tracks', the stuff rows', then joined twice and the boxes clipped);
here every column is written once. Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import register_jitable

from panoptic_ros.tracking import TrackState

_CONFIRMED = np.uint8(TrackState.CONFIRMED)


@register_jitable
def _clipped(box: np.ndarray, out: np.ndarray, width: int, height: int) -> None:  # pragma: no cover
    """``out`` (``[4]`` int64): the ``(x, y, w, h)`` ``box`` cut to a ``width`` x ``height`` image."""
    x0 = min(max(box[0], 0), width)
    y0 = min(max(box[1], 0), height)
    x1 = min(max(box[0] + box[2], 0), width)
    y1 = min(max(box[1] + box[3], 0), height)
    out[0] = x0
    out[1] = y0
    out[2] = max(x1 - x0, 0)
    out[3] = max(y1 - y0, 0)


@njit(cache=True, nogil=True)
def table_columns(  # noqa: PLR0917 (compiled loops take positional arguments)
    track_ids: np.ndarray,
    track_categories: np.ndarray,
    track_scores: np.ndarray,
    track_states: np.ndarray,
    track_areas: np.ndarray,
    track_boxes: np.ndarray,
    track_centroids: np.ndarray,
    track_velocities: np.ndarray,
    track_ages: np.ndarray,
    seg_rows: np.ndarray,
    seg_categories: np.ndarray,
    seg_is_thing: np.ndarray,
    seg_areas: np.ndarray,
    seg_boxes: np.ndarray,
    seg_centroids: np.ndarray,
    seg_scores: np.ndarray,
    things_from_segments: bool,
    width: int,
    height: int,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray,
]:  # pragma: no cover - compiled  # fmt: skip
    """The columns of :class:`~panoptic_ros.runtime.records.InstanceTable` but the positions, N rows
    (things, then stuff): ``(ids uint32, category_ids int64, is_thing, scores float32, states uint8,
    areas int64, bboxes [N, 4] int64, centroids [N, 2] float32, velocities [N, 2] float32, ages
    int64)``.

    Things first: the K rows of the track columns (``track_*``: tracks then lost tracks, boxes
    ``(x, y, w, h)`` float32 rounded half to even), or with ``things_from_segments`` the thing rows
    of the segments (``seg_*``, the host segment table), numbered ``seg_rows + 1``, confirmed, age 1,
    no velocity. Then the stuff rows of the segments, numbered from one above the largest thing id
    (1 without things), likewise. Boxes cut to the ``width`` x ``height`` image."""
    tracked = track_ids.size
    segments = seg_categories.size
    things = 0
    for s in range(segments):
        things += 1 if seg_is_thing[s] else 0
    from_segments = things if things_from_segments else 0
    n = tracked + from_segments + (segments - things)
    ids = np.empty(n, dtype=np.uint32)
    categories = np.empty(n, dtype=np.int64)
    is_thing = np.empty(n, dtype=np.bool_)
    scores = np.empty(n, dtype=np.float32)
    states = np.empty(n, dtype=np.uint8)
    areas = np.empty(n, dtype=np.int64)
    boxes = np.empty((n, 4), dtype=np.int64)
    centroids = np.empty((n, 2), dtype=np.float32)
    velocities = np.zeros((n, 2), dtype=np.float32)
    ages = np.empty(n, dtype=np.int64)
    box = np.empty(4, dtype=np.int64)
    largest = np.int64(0)
    for k in range(tracked):
        ids[k] = np.uint32(track_ids[k])
        largest = max(largest, np.int64(track_ids[k]))
        categories[k] = track_categories[k]
        is_thing[k] = True
        scores[k] = track_scores[k]
        states[k] = track_states[k]
        areas[k] = track_areas[k]
        for j in range(4):
            box[j] = np.int64(np.rint(track_boxes[k, j]))
        _clipped(box, boxes[k], width, height)
        for j in range(2):
            centroids[k, j] = track_centroids[k, j]
            velocities[k, j] = track_velocities[k, j]
        ages[k] = track_ages[k]
    row = tracked
    for stuff in (False, True):
        if not stuff and not things_from_segments:
            continue
        next_id = largest + 1  # stuff: above every thing id of the frame
        for s in range(segments):
            if seg_is_thing[s] == stuff:
                continue
            if stuff:
                ids[row] = np.uint32(next_id)
                next_id += 1
            else:
                ids[row] = np.uint32(seg_rows[s] + 1)
                largest = max(largest, seg_rows[s] + 1)
            categories[row] = seg_categories[s]
            is_thing[row] = not stuff
            scores[row] = seg_scores[s]
            states[row] = _CONFIRMED
            areas[row] = seg_areas[s]
            _clipped(seg_boxes[s], boxes[row], width, height)
            centroids[row, 0] = seg_centroids[s, 0]
            centroids[row, 1] = seg_centroids[s, 1]
            ages[row] = 1
            row += 1
    return ids, categories, is_thing, scores, states, areas, boxes, centroids, velocities, ages


def compile_kernels() -> None:
    """Compile (or load from numba's cache) :func:`table_columns` for the engine's column types, so
    that the first frame does not pay for it."""
    none = np.zeros(0, dtype=np.int64)
    pairs = np.zeros((0, 2), dtype=np.float32)
    table_columns(
        none, none, np.zeros(0, np.float32), np.zeros(0, np.uint8), none, np.zeros((0, 4), np.float32), pairs,
        pairs, none, none, none, np.zeros(0, bool), none, np.zeros((0, 4), np.int64), pairs,
        np.zeros(0, np.float32), False, 1, 1,
    )  # fmt: skip
