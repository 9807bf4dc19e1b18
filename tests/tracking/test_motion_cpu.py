"""The compiled update of matched tracks against the numpy functions it follows, bit for bit."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest

from panoptic_ros.tracking import TrackerParams
from panoptic_ros.tracking.motion import measure_velocity, smooth_velocity, state_boxes
from panoptic_ros.tracking.motion_cpu import apply_matches
from panoptic_ros.tracking.records import TrackState
from panoptic_ros.tracking.state import Instances, Tracks

DECAY, SMOOTHING = 0.98, 0.5
SIZE = (480, 640)


class _Case(NamedTuple):
    tracks: Tracks
    rows: np.ndarray
    cols: np.ndarray
    det: Instances
    det_areas: np.ndarray
    predicted: np.ndarray
    colors: np.ndarray | None
    stamp: int
    params: TrackerParams


def _numpy_apply(case: _Case) -> None:
    """The update as whole-array numpy steps, in place on ``case.tracks`` (the tracker's before the
    compiled loop)."""
    t, rows, cols, det, det_areas, predicted, colors, stamp, params = case
    dt = (stamp - t.stamps[rows]) * 1e-9
    measured = measure_velocity(
        t.observed_boxes[rows],
        det.boxes[cols],
        previous_centroids=t.centroids[rows],
        centroids=det.centroids[cols],
        dt=dt,
        prior=t.velocities[rows],
        has_prior=t.has_velocity[rows],
        image_size=SIZE,
        size_tolerance=params.size_tolerance,
        border_margin=params.border_margin,
    )
    velocity, has_velocity = smooth_velocity(
        t.velocities[rows], t.has_velocity[rows], measured, weight=params.velocity_smoothing
    )
    areas = det_areas[cols].astype(np.float64)
    partial = areas < t.reference_areas[rows] / params.partial_area_ratio
    t.boxes[rows] = state_boxes(predicted[rows], det.boxes[cols], partial)
    t.reference_areas[rows] = np.where(partial, t.reference_areas[rows] * DECAY, areas)
    t.velocities[rows] = velocity
    t.has_velocity[rows] = has_velocity
    t.observed_boxes[rows] = det.boxes[cols]
    t.centroids[rows] = det.centroids[cols]
    t.scores[rows] = det.scores[cols]
    t.stamps[rows] = stamp
    t.hits[rows] += 1
    t.misses[rows] = 0
    confirmed = (t.states[rows] != TrackState.TENTATIVE) | (t.hits[rows] >= params.min_hits)
    t.states[rows] = np.where(confirmed, TrackState.CONFIRMED, TrackState.TENTATIVE)
    if colors is not None:
        had = t.has_color[rows][:, None]
        t.colors[rows] = np.where(
            had, (1 - SMOOTHING) * t.colors[rows] + SMOOTHING * colors[cols], colors[cols]
        )
        t.has_color[rows] = True


def _boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[count, 4]`` boxes in a 640x480 image, many touching or near its borders (cut edges)."""
    height, width = SIZE
    lo = rng.uniform((-5, -5), (width - 10, height - 10), size=(count, 2))
    hi = lo + rng.uniform(2, 150, size=(count, 2))
    near = rng.random((count, 2)) < 0.25
    lo[near] = rng.uniform(0, 3, near.sum())
    return np.concatenate([lo, np.minimum(hi, (width, height))], axis=1)


def _case(seed: int, appearance: bool) -> _Case:
    rng = np.random.default_rng(seed)
    n, t = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    previous = _boxes(rng, n)
    tracks = Tracks(
        ids=np.arange(1, n + 1),
        categories=np.ones(n, np.int64),
        states=rng.integers(0, 3, n).astype(np.uint8),
        scores=rng.random(n),
        ages=rng.integers(1, 9, n),
        hits=rng.integers(1, 5, n),
        misses=rng.integers(0, 3, n),
        stamps=rng.integers(0, 3, n) * 50_000_000,  # some at the frame's stamp: no velocity measured
        boxes=previous + rng.normal(0, 4, (n, 4)),
        observed_boxes=previous,
        centroids=(previous[:, :2] + previous[:, 2:]) / 2,
        reference_areas=rng.uniform(100, 9000, n),
        velocities=rng.normal(0, 40, (n, 2)),
        has_velocity=rng.random((n, 2)) < 0.6,
        colors=rng.uniform(0, 255, (n, 3)),
        has_color=rng.random(n) < 0.6,
    )
    table = np.zeros((t, 9))
    boxes = _boxes(rng, t)
    table[:, 3:5], table[:, 5:7] = boxes[:, :2], boxes[:, 2:] - boxes[:, :2]
    table[:, 7:9] = (boxes[:, :2] + boxes[:, 2:]) / 2 + rng.normal(0, 2, (t, 2))
    table[:, 2] = rng.random(t)
    det = Instances.of_table(table)
    matches = min(n, t)
    rows = rng.permutation(n)[: int(rng.integers(0, matches + 1))]
    cols = rng.permutation(t)[: rows.size]
    params = TrackerParams(
        size_tolerance=float(rng.uniform(0.05, 0.3)),
        border_margin=int(rng.integers(0, 6)),
        velocity_smoothing=float(rng.uniform(0.1, 0.9)),
        partial_area_ratio=float(rng.uniform(1.2, 3)),
        min_hits=int(rng.integers(1, 4)),
    )
    return _Case(
        tracks=tracks,
        rows=rows,
        cols=cols,
        det=det,
        det_areas=rng.integers(50, 9000, t),
        predicted=previous + rng.normal(0, 6, (n, 4)),
        colors=rng.uniform(0, 255, (t, 3)) if appearance else None,
        stamp=100_000_000,
        params=params,
    )


SEEDS = range(24)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("appearance", [False, True])
def test_compiled_update_equals_the_numpy_steps(seed: int, appearance: bool) -> None:
    case = _case(seed, appearance)
    expected = copy.deepcopy(case.tracks)
    _numpy_apply(case._replace(tracks=expected))
    apply_matches(
        case.tracks, case.rows, case.cols, case.det, det_areas=case.det_areas, predicted=case.predicted,
        colors=case.colors, stamp=case.stamp, size=SIZE, params=case.params, reference_area_decay=DECAY,
        color_smoothing=SMOOTHING,
    )  # fmt: skip
    for name, value in vars(expected).items():
        got = getattr(case.tracks, name)
        assert got.dtype == value.dtype, name
        np.testing.assert_array_equal(got, value, err_msg=name)


def test_the_cases_reach_every_branch() -> None:
    """Across the cases compared above: velocities measured by the centroid, by one uncut edge, by the
    edge the prior agrees with, refused (a repeated stamp, no usable edge); partial and full
    observations; tracks confirmed by this hit and tracks left tentative."""
    seen: set[str] = set()
    for seed in SEEDS:
        case = _case(seed, appearance=False)
        t, rows, cols, det, det_areas, _, _, stamp, params = case
        if not rows.size:
            continue
        dt = (stamp - t.stamps[rows]) * 1e-9
        prev, cur = t.observed_boxes[rows], det.boxes[cols]
        size_prev = np.maximum(prev[:, 2:] - prev[:, :2], 1e-9)
        changed = np.abs((cur[:, 2:] - cur[:, :2]) / size_prev - 1) > params.size_tolerance
        measured = measure_velocity(
            prev, cur, previous_centroids=t.centroids[rows], centroids=det.centroids[cols], dt=dt,
            prior=t.velocities[rows], has_prior=t.has_velocity[rows], image_size=SIZE,
            size_tolerance=params.size_tolerance, border_margin=params.border_margin,
        )  # fmt: skip
        has_prior = t.has_velocity[rows]
        moving = (dt > 0)[:, None]
        checks = {
            "centroid": (~changed & moving).any(),
            "edge with prior": (changed & has_prior & measured.valid).any(),
            "single edge": (changed & ~has_prior & measured.valid).any(),
            "refused edge": (changed & moving & ~measured.valid).any(),
            "repeated stamp": (~moving).any(),
            "partial": (det_areas[cols] < t.reference_areas[rows] / params.partial_area_ratio).any(),
            "full": (det_areas[cols] >= t.reference_areas[rows] / params.partial_area_ratio).any(),
            "stays tentative": (
                (t.states[rows] == TrackState.TENTATIVE) & (t.hits[rows] + 1 < params.min_hits)
            ).any(),
            "confirmed now": (
                (t.states[rows] == TrackState.TENTATIVE) & (t.hits[rows] + 1 >= params.min_hits)
            ).any(),
        }
        seen |= {name for name, hit in checks.items() if hit}
    assert seen == {
        "centroid", "edge with prior", "single edge", "refused edge", "repeated stamp", "partial", "full",
        "stays tentative", "confirmed now",
    }  # fmt: skip
