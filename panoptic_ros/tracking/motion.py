"""Constant-velocity motion of tracks in the image plane, from header stamps (host numpy, all tracks
at once).

A track's motion state is a full-extent box ``(x0, y0, x1, y1)`` (exclusive ends) at the stamp of its
last match and a velocity ``(vx, vy)`` in pixels per second. Prediction moves the box by velocity x
elapsed time. Two things make the velocity robust where a plain centroid difference is not:

- **Cut boxes.** When a box's size along an axis changes by more than ``size_tolerance`` between two
  observations, the object is being occluded, revealed or cut by the image border, and its centroid
  moves at the wrong speed. The displacement is then measured on the box edge that is not on the
  image border and agrees best with the previous velocity, and only if it agrees with it to within
  that tolerance of the box size (an edge next to an occluder jumps); without a previous velocity,
  on the only uncut edge (an object entering the image). Otherwise the velocity is kept.
- **Partial observations.** An observation whose area falls below the track's reference area divided
  by ``partial_area_ratio`` is partial: the state keeps the predicted full-size box, moved just
  enough to contain the visible part, so a track that disappears behind another object is predicted
  with its whole extent and is found again when any part of it reappears.

The tracker applies a frame's matches by one compiled loop that follows :func:`measure_velocity`,
:func:`smooth_velocity` and :func:`state_boxes` operation for operation
(:mod:`~panoptic_ros.tracking.motion_cpu`, tested equal to them); these functions are the readable form
and the reference, and re-identification uses :func:`predict_boxes`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class VelocityMeasurement(NamedTuple):
    """``velocity`` ``[N, 2]`` pixels per second and ``valid`` ``[N, 2]`` per axis."""

    velocity: np.ndarray
    valid: np.ndarray


def predict_boxes(boxes: np.ndarray, velocities: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """``[N, 4]`` boxes ``(x0, y0, x1, y1)`` moved by ``velocities`` (``[N, 2]`` px/s) times ``dt``
    (``[N]`` seconds)."""
    shift = np.asarray(velocities, dtype=np.float64) * np.asarray(dt, dtype=np.float64)[:, None]
    return np.asarray(boxes, dtype=np.float64) + np.concatenate([shift, shift], axis=1)


def measure_velocity(
    previous_boxes: np.ndarray,
    boxes: np.ndarray,
    *,
    previous_centroids: np.ndarray,
    centroids: np.ndarray,
    dt: np.ndarray,
    prior: np.ndarray,
    has_prior: np.ndarray,
    image_size: tuple[int, int],
    size_tolerance: float,
    border_margin: int,
) -> VelocityMeasurement:
    """Velocity between two observations of each of N tracks.

    Args:
        previous_boxes, boxes: ``[N, 4]`` observed ``(x0, y0, x1, y1)`` boxes, earlier and now.
        previous_centroids, centroids: ``[N, 2]`` observed ``(x, y)`` centroids.
        dt: ``[N]`` seconds between the observations; no measurement where ``dt <= 0``.
        prior: ``[N, 2]`` current velocity estimates (px/s); ``has_prior`` ``[N, 2]`` bool.
        image_size: ``(height, width)``.
        size_tolerance: relative size change per axis above which edges are used (see module doc).
        border_margin: edges closer than this to the image border count as cut.

    Returns:
        :class:`VelocityMeasurement`.
    """
    prev = np.asarray(previous_boxes, dtype=np.float64).reshape(-1, 4)
    cur = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    dt = np.asarray(dt, dtype=np.float64).reshape(-1)
    height, width = image_size
    limits = np.array([width, height], dtype=np.float64)
    lo_prev, hi_prev, lo, hi = prev[:, :2], prev[:, 2:], cur[:, :2], cur[:, 2:]
    size_prev = np.maximum(hi_prev - lo_prev, 1e-9)
    changed = np.abs((hi - lo) / size_prev - 1) > size_tolerance
    lo_ok = (lo_prev >= border_margin) & (lo >= border_margin)
    hi_ok = (hi_prev <= limits - border_margin) & (hi <= limits - border_margin)
    d_center = np.asarray(centroids, dtype=np.float64) - np.asarray(previous_centroids, dtype=np.float64)
    d_lo, d_hi = lo - lo_prev, hi - hi_prev
    expected = np.asarray(prior, dtype=np.float64) * dt[:, None]
    has_prior = np.asarray(has_prior, dtype=bool)
    # the edge closest to the expected displacement among the uncut ones, if it agrees with it to
    # within the size tolerance (an edge next to an occluder jumps; that is no motion)
    err_lo = np.where(lo_ok, np.abs(d_lo - expected), np.inf)
    err_hi = np.where(hi_ok, np.abs(d_hi - expected), np.inf)
    by_prior = np.where(err_lo <= err_hi, d_lo, d_hi)
    agreement = np.maximum(size_tolerance * np.maximum(size_prev, hi - lo), 1.0)
    prior_usable = has_prior & (np.minimum(err_lo, err_hi) <= agreement)
    single = lo_ok ^ hi_ok
    by_single = np.where(lo_ok, d_lo, d_hi)
    edge = np.where(prior_usable, by_prior, by_single)
    edge_valid = prior_usable | (~has_prior & single)
    displacement = np.where(changed, edge, d_center)
    valid = np.where(changed, edge_valid, True) & (dt > 0)[:, None]
    velocity = np.divide(displacement, dt[:, None], out=np.zeros_like(displacement), where=valid)
    return VelocityMeasurement(velocity, valid)


def smooth_velocity(
    velocity: np.ndarray, has_velocity: np.ndarray, measured: VelocityMeasurement, *, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exponential smoothing per axis: ``v = (1 - weight) v + weight v_measured`` where a measurement
    is valid, ``v = v_measured`` for the first one; returns ``(velocity, has_velocity)``."""
    blended = (1 - weight) * velocity + weight * measured.velocity
    first = measured.valid & ~has_velocity
    new = np.where(first, measured.velocity, np.where(measured.valid, blended, velocity))
    return new, has_velocity | measured.valid


def state_boxes(predicted: np.ndarray, observed: np.ndarray, partial: np.ndarray) -> np.ndarray:
    """The motion state after a match: the observed box, or for partial observations the predicted
    full box shifted per axis as little as needed to contain the observed one (an axis where the
    observation is the larger takes the observed extent).

    Args:
        predicted: ``[N, 4]`` predicted full boxes at the observation's stamp.
        observed: ``[N, 4]`` observed boxes.
        partial: ``[N]`` bool.
    """
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, 4)
    observed = np.asarray(observed, dtype=np.float64).reshape(-1, 4)
    lo, hi = predicted[:, :2], predicted[:, 2:]
    obs_lo, obs_hi = observed[:, :2], observed[:, 2:]
    shift = np.where(obs_lo < lo, obs_lo - lo, 0.0) + np.where(obs_hi > hi, obs_hi - hi, 0.0)
    larger = (obs_hi - obs_lo) >= (hi - lo)
    new_lo = np.where(larger, obs_lo, lo + shift)
    new_hi = np.where(larger, obs_hi, hi + shift)
    contained = np.concatenate([new_lo, new_hi], axis=1)
    return np.where(np.asarray(partial, dtype=bool)[:, None], contained, observed)
