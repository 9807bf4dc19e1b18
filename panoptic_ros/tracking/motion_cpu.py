"""A matched track's update as one compiled loop (numba): the tracker's life-cycle step 4 for matches.

For each (track, instance) match, :func:`apply_matches` measures the velocity between the track's last
observation and the instance (:func:`~panoptic_ros.tracking.motion.measure_velocity`), smooths it
(:func:`~panoptic_ros.tracking.motion.smooth_velocity`), keeps the full box of a partial observation
(:func:`~panoptic_ros.tracking.motion.state_boxes`), and updates the track's reference area, observed
box, centroid, score, stamp, counters, state and mean color, in place on the tracks' arrays. The
numpy functions named are the readable form and the reference: the loop below follows them operation
for operation in float64 (divisions as numpy's: ``error_model="numpy"``), so the tracks come out the
same bit for bit (tested against them). With
numpy this step was about forty calls on arrays of a few rows. Compiled on first use and cached on
disk (``cache=True``); :func:`compile_kernels` compiles it ahead of the first frame.
"""

from __future__ import annotations

import itertools

import numpy as np
from numba import njit
from numba.extending import register_jitable

from panoptic_ros.tracking.params import TrackerParams
from panoptic_ros.tracking.records import TrackState
from panoptic_ros.tracking.state import Instances, Tracks

_NS = 1e-9
_TENTATIVE, _CONFIRMED = int(TrackState.TENTATIVE), int(TrackState.CONFIRMED)


@register_jitable(error_model="numpy")  # compiled into _apply (this file: an edit renews _apply's cache)
def _measure_axis(  # noqa: PLR0917 (compiled loops take positional arguments)
    lo_prev: float,
    hi_prev: float,
    lo: float,
    hi: float,
    d_center: float,
    expected: float,
    has_prior: bool,
    limit: float,
    dt: float,
    tolerance: float,
    margin: float,
) -> tuple[float, bool]:  # pragma: no cover - compiled
    """One axis of :func:`~panoptic_ros.tracking.motion.measure_velocity`: ``(velocity, valid)``."""
    size_prev = max(hi_prev - lo_prev, 1e-9)
    changed = abs((hi - lo) / size_prev - 1) > tolerance
    lo_ok = lo_prev >= margin and lo >= margin
    hi_ok = hi_prev <= limit - margin and hi <= limit - margin
    d_lo = lo - lo_prev
    d_hi = hi - hi_prev
    err_lo = abs(d_lo - expected) if lo_ok else np.inf
    err_hi = abs(d_hi - expected) if hi_ok else np.inf
    by_prior = d_lo if err_lo <= err_hi else d_hi
    agreement = max(tolerance * max(size_prev, hi - lo), 1.0)
    prior_usable = has_prior and min(err_lo, err_hi) <= agreement
    by_single = d_lo if lo_ok else d_hi
    edge = by_prior if prior_usable else by_single
    edge_valid = prior_usable or (not has_prior and lo_ok != hi_ok)
    displacement = edge if changed else d_center
    valid = (edge_valid if changed else True) and dt > 0
    return (displacement / dt if valid else 0.0), valid


@njit(cache=True, nogil=True, error_model="numpy")
def _apply(  # noqa: PLR0917 (compiled loops take positional arguments)
    rows: np.ndarray,
    cols: np.ndarray,
    boxes: np.ndarray,
    observed_boxes: np.ndarray,
    centroids: np.ndarray,
    reference_areas: np.ndarray,
    velocities: np.ndarray,
    has_velocity: np.ndarray,
    scores: np.ndarray,
    stamps: np.ndarray,
    hits: np.ndarray,
    misses: np.ndarray,
    states: np.ndarray,
    colors: np.ndarray,
    has_color: np.ndarray,
    det_boxes: np.ndarray,
    det_centroids: np.ndarray,
    det_scores: np.ndarray,
    det_areas: np.ndarray,
    det_colors: np.ndarray,
    predicted: np.ndarray,
    stamp: int,
    limits: np.ndarray,
    factors: np.ndarray,
    min_hits: int,
) -> None:  # pragma: no cover - compiled
    """Track ``rows[k]`` (of the tracks' arrays, first fifteen arguments, updated in place) takes
    instance ``cols[k]`` (``det_*``; ``det_colors`` ``[0, 3]`` for no colors); ``predicted`` ``[N,
    4]`` every track's box at ``stamp``; ``limits`` ``(width, height)``; ``factors`` ``(size_tolerance,
    border_margin, velocity_smoothing, partial_area_ratio, reference_area_decay, color_smoothing)``."""
    tolerance, margin, weight = factors[0], factors[1], factors[2]
    ratio, decay, smoothing = factors[3], factors[4], factors[5]
    use_colors = det_colors.shape[0] > 0
    for k in range(rows.size):
        r = rows[k]
        c = cols[k]
        dt = (stamp - stamps[r]) * _NS
        area = det_areas[c]
        partial = area < reference_areas[r] / ratio
        for a in range(2):
            lo, hi = det_boxes[c, a], det_boxes[c, a + 2]
            measured, valid = _measure_axis(
                observed_boxes[r, a], observed_boxes[r, a + 2], lo, hi, det_centroids[c, a] - centroids[r, a],
                velocities[r, a] * dt, has_velocity[r, a], limits[a], dt, tolerance, margin,
            )  # fmt: skip
            # smooth_velocity
            velocity = velocities[r, a]
            blended = (1 - weight) * velocity + weight * measured
            if valid and not has_velocity[r, a]:
                velocities[r, a] = measured
            elif valid:
                velocities[r, a] = blended
            has_velocity[r, a] = has_velocity[r, a] or valid
            # state_boxes
            if partial:
                p_lo, p_hi = predicted[r, a], predicted[r, a + 2]
                shift = (lo - p_lo if lo < p_lo else 0.0) + (hi - p_hi if hi > p_hi else 0.0)
                larger = (hi - lo) >= (p_hi - p_lo)
                boxes[r, a] = lo if larger else p_lo + shift
                boxes[r, a + 2] = hi if larger else p_hi + shift
            else:
                boxes[r, a] = lo
                boxes[r, a + 2] = hi
        reference_areas[r] = reference_areas[r] * decay if partial else area
        for j in range(4):
            observed_boxes[r, j] = det_boxes[c, j]
        centroids[r, 0] = det_centroids[c, 0]
        centroids[r, 1] = det_centroids[c, 1]
        scores[r] = det_scores[c]
        stamps[r] = stamp
        hits[r] += 1
        misses[r] = 0
        states[r] = _CONFIRMED if states[r] != _TENTATIVE or hits[r] >= min_hits else _TENTATIVE
        if use_colors:
            for j in range(3):
                if has_color[r]:
                    colors[r, j] = (1 - smoothing) * colors[r, j] + smoothing * det_colors[c, j]
                else:
                    colors[r, j] = det_colors[c, j]
            has_color[r] = True


_NO_COLORS = np.zeros((0, 3), dtype=np.float64)


def apply_matches(
    tracks: Tracks,
    rows: np.ndarray,
    cols: np.ndarray,
    det: Instances,
    *,
    det_areas: np.ndarray,
    predicted: np.ndarray,
    colors: np.ndarray | None,
    stamp: int,
    size: tuple[int, int],
    params: TrackerParams,
    reference_area_decay: float,
    color_smoothing: float,
) -> None:
    """Track ``rows[k]`` takes the observation of instance ``cols[k]`` (unique rows and columns), in
    place on ``tracks``: velocity measured and smoothed, motion box (the predicted full box for a
    partial observation, ``predicted`` ``[N, 4]`` every track's box at ``stamp``), reference area
    (decayed by ``reference_area_decay`` while partial), observed box, centroid, score, stamp, hits,
    misses, state (confirmed after ``params.min_hits`` hits) and, with ``colors`` (``[T, 3]``), the
    mean color (``color_smoothing`` the new one's weight). ``size``: the image's ``(height, width)``."""
    if rows.size == 0:
        return
    height, width = size
    factors = np.array(
        [
            params.size_tolerance,
            params.border_margin,
            params.velocity_smoothing,
            params.partial_area_ratio,
            reference_area_decay,
            color_smoothing,
        ],
        dtype=np.float64,
    )
    t = tracks
    _apply(
        np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(cols, dtype=np.int64),
        t.boxes, t.observed_boxes, t.centroids, t.reference_areas, t.velocities, t.has_velocity, t.scores,
        t.stamps, t.hits, t.misses, t.states, t.colors, t.has_color,
        det.boxes, det.centroids, det.scores, np.asarray(det_areas, dtype=np.float64),
        _NO_COLORS if colors is None else np.asarray(colors, dtype=np.float64),
        np.asarray(predicted, dtype=np.float64), int(stamp), np.array([width, height], dtype=np.float64),
        factors, int(params.min_hits),
    )  # fmt: skip


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the loop for the tracks' arrays as :class:`Tracks` holds
    them (with colors and without)."""
    # an instance's columns are contiguous views of its table only for one row: both kinds
    for count, with_colors in itertools.product((1, 2), (True, False)):
        colors = np.zeros((count, 3)) if with_colors else None
        tracks = Tracks.placeholder()
        det = Instances.of_table(np.ones((count, 9)))
        one = np.zeros(1, np.int64)
        apply_matches(
            tracks, one, one, det, det_areas=np.ones(count), predicted=np.zeros((1, 4)), colors=colors,
            stamp=1, size=(1, 1), params=TrackerParams(), reference_area_decay=1.0, color_smoothing=0.5,
        )  # fmt: skip
