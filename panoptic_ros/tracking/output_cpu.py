"""The tracker's output rows as one compiled loop (numba): the tracks of a frame as a
:class:`~panoptic_ros.tracking.records.TrackTable`.

For each track asked for, in track-id order: the observation of its instance where it was matched in
this frame (box, centroid, area), else its motion prediction at the frame's stamp
(:func:`~panoptic_ros.tracking.motion.predict_boxes` for the box, the centroid moved likewise) and no
area; then its id, category, state, score, velocity, age and counters. In float64 as the numpy
composition it replaces, which the tests keep as the reference (bit for bit); with numpy this was
about twenty-five calls on arrays of a few rows, twice a frame. Compiled on first use and cached on disk
(``cache=True``); :func:`compile_kernels` compiles it ahead of the first frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from panoptic_ros.tracking.records import TrackTable
from panoptic_ros.tracking.state import Instances, Tracks

_NS = 1e-9


@njit(cache=True, nogil=True)
def _rows(  # noqa: PLR0917 (compiled loops take positional arguments)
    ids: np.ndarray,
    categories: np.ndarray,
    states: np.ndarray,
    scores: np.ndarray,
    ages: np.ndarray,
    hits: np.ndarray,
    misses: np.ndarray,
    stamps: np.ndarray,
    boxes: np.ndarray,
    centroids: np.ndarray,
    velocities: np.ndarray,
    rows: np.ndarray,
    instance_rows: np.ndarray,
    det_boxes: np.ndarray,
    det_centroids: np.ndarray,
    det_areas: np.ndarray,
    stamp: int,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray, np.ndarray, np.ndarray,
]:  # pragma: no cover - compiled  # fmt: skip
    """The :class:`TrackTable` columns of tracks ``rows`` (any order; written in track-id order);
    ``instance_rows`` ``[N]`` each track's instance in this frame, -1 for none."""
    order = rows[np.argsort(ids[rows])]  # ids are unique: any sort gives this order
    n = order.size
    out_ids = np.empty(n, dtype=np.int64)
    out_categories = np.empty(n, dtype=np.int64)
    out_states = np.empty(n, dtype=np.uint8)
    out_scores = np.empty(n, dtype=np.float32)
    out_areas = np.empty(n, dtype=np.int64)
    out_boxes = np.empty((n, 4), dtype=np.float32)
    out_centroids = np.empty((n, 2), dtype=np.float32)
    out_velocities = np.empty((n, 2), dtype=np.float32)
    out_ages = np.empty(n, dtype=np.int64)
    out_hits = np.empty(n, dtype=np.int64)
    out_misses = np.empty(n, dtype=np.int64)
    out_index = np.empty(n, dtype=np.int64)
    for k in range(n):
        r = order[k]
        index = instance_rows[r]
        if index >= 0:  # observed in this frame
            x0, y0, x1, y1 = (
                det_boxes[index, 0],
                det_boxes[index, 1],
                det_boxes[index, 2],
                det_boxes[index, 3],
            )
            cx, cy = det_centroids[index, 0], det_centroids[index, 1]
            out_areas[k] = np.int64(det_areas[index])
        else:  # predicted at the stamp
            dt = np.float64(stamp - stamps[r]) * _NS
            sx = velocities[r, 0] * dt
            sy = velocities[r, 1] * dt
            x0, y0, x1, y1 = boxes[r, 0] + sx, boxes[r, 1] + sy, boxes[r, 2] + sx, boxes[r, 3] + sy
            cx, cy = centroids[r, 0] + sx, centroids[r, 1] + sy
            out_areas[k] = 0
        out_boxes[k, 0] = np.float32(x0)
        out_boxes[k, 1] = np.float32(y0)
        out_boxes[k, 2] = np.float32(x1 - x0)
        out_boxes[k, 3] = np.float32(y1 - y0)
        out_centroids[k, 0] = np.float32(cx)
        out_centroids[k, 1] = np.float32(cy)
        out_ids[k] = ids[r]
        out_categories[k] = categories[r]
        out_states[k] = states[r]
        out_scores[k] = np.float32(scores[r])
        out_velocities[k, 0] = np.float32(velocities[r, 0])
        out_velocities[k, 1] = np.float32(velocities[r, 1])
        out_ages[k] = ages[r]
        out_hits[k] = hits[r]
        out_misses[k] = misses[r]
        out_index[k] = index
    return (
        out_ids, out_categories, out_states, out_scores, out_areas, out_boxes, out_centroids,
        out_velocities, out_ages, out_hits, out_misses, out_index,
    )  # fmt: skip


def track_table(
    tracks: Tracks,
    rows: np.ndarray,
    instance_rows: np.ndarray,
    det: Instances,
    *,
    det_areas: np.ndarray,
    stamp: int,
) -> TrackTable:
    """The output rows of ``tracks`` rows ``rows`` (sorted by track id): observations for tracks
    matched in this frame (``instance_rows`` ``[N]`` their instance, -1 for none; ``det_areas`` the
    instances' areas), motion predictions at ``stamp`` for the others; see the module docstring."""
    if rows.size == 0:
        return TrackTable.empty()
    t = tracks
    columns = _rows(
        t.ids, t.categories, t.states, t.scores, t.ages, t.hits, t.misses, t.stamps, t.boxes, t.centroids,
        t.velocities, np.ascontiguousarray(rows, dtype=np.int64),
        np.ascontiguousarray(instance_rows, dtype=np.int64), det.boxes, det.centroids,
        np.asarray(det_areas, dtype=np.float64), int(stamp),
    )  # fmt: skip
    return TrackTable(*columns)


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the loop for the tracks' arrays as :class:`Tracks` and
    :class:`Instances` hold them."""
    tracks = Tracks.placeholder()
    one = np.zeros(1, np.int64)
    for count in (1, 2):  # an instance's columns are contiguous views of its table only for one row
        det = Instances.of_table(np.ones((count, 9)))
        track_table(tracks, one, one, det, det_areas=np.ones(count), stamp=1)
