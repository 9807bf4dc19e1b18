"""The compiled output rows of the tracker against the numpy composition they replace, bit for bit:
matched tracks take their instance's observation, the others their motion prediction at the stamp."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.tracking.association import xyxy_to_xywh
from panoptic_ros.tracking.motion import predict_boxes
from panoptic_ros.tracking.output_cpu import track_table
from panoptic_ros.tracking.records import TrackTable
from panoptic_ros.tracking.state import Instances, Tracks


def _numpy_table(
    t: Tracks,
    rows: np.ndarray,
    instance_rows: np.ndarray,
    det: Instances,
    *,
    det_areas: np.ndarray,
    stamp: int,
) -> TrackTable:
    """The rows as the tracker made them with numpy before the compiled loop."""
    rows = rows[np.argsort(t.ids[rows], kind="stable")]
    index = instance_rows[rows]
    seen = index >= 0
    dt = (stamp - t.stamps[rows]) * 1e-9
    shift = t.velocities[rows] * dt[:, None]
    predicted_boxes = predict_boxes(t.boxes[rows], t.velocities[rows], dt)
    boxes = np.where(seen[:, None], det.boxes[np.maximum(index, 0)] if det.count else 0.0, predicted_boxes)
    centroids = np.where(
        seen[:, None], det.centroids[np.maximum(index, 0)] if det.count else 0.0, t.centroids[rows] + shift
    )
    areas = np.where(seen, det_areas[np.maximum(index, 0)] if det.count else 0, 0)
    return TrackTable(
        track_ids=t.ids[rows].copy(), category_ids=t.categories[rows].copy(),
        states=t.states[rows].astype(np.uint8), scores=t.scores[rows].astype(np.float32),
        areas=areas.astype(np.int64), bboxes=xyxy_to_xywh(boxes).astype(np.float32),
        centroids=centroids.astype(np.float32), velocities=t.velocities[rows].astype(np.float32),
        ages=t.ages[rows].copy(), hits=t.hits[rows].copy(), time_since_update=t.misses[rows].copy(),
        instance_index=index.copy(),
    )  # fmt: skip


def _case(seed: int) -> tuple[Tracks, np.ndarray, np.ndarray, Instances, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    n, count = int(rng.integers(1, 12)), int(rng.integers(0, 9))
    stamp = 10**12 + int(rng.integers(0, 10**9))
    x0 = rng.random((n, 2)) * 300
    tracks = Tracks(
        ids=rng.choice(np.arange(1, 1000), size=n, replace=False), categories=rng.integers(1, 90, size=n),
        states=rng.integers(0, 3, size=n).astype(np.uint8), scores=rng.random(n),
        ages=rng.integers(1, 50, size=n), hits=rng.integers(1, 50, size=n), misses=rng.integers(0, 5, size=n),
        stamps=stamp - rng.integers(0, 4 * 10**8, size=n),
        boxes=np.hstack((x0, x0 + rng.random((n, 2)) * 90)),
        observed_boxes=np.zeros((n, 4)), centroids=x0 + 20 * rng.random((n, 2)), reference_areas=np.ones(n),
        velocities=rng.normal(0, 80, size=(n, 2)), has_velocity=np.ones((n, 2), bool),
        colors=np.zeros((n, 3)), has_color=np.zeros(n, bool),
    )  # fmt: skip
    table = np.zeros((count, 9))
    table[:, 0] = np.arange(1, count + 1)
    table[:, 2] = rng.random(count)
    table[:, 3:7] = rng.random((count, 4)) * 200
    table[:, 7:9] = rng.random((count, 2)) * 400
    det = Instances.of_table(table)
    instance_rows = (
        np.where(rng.random(n) < 0.6, rng.integers(0, max(count, 1), size=n), -1)
        if count
        else -np.ones(n, np.int64)
    )
    rows = np.flatnonzero(rng.random(n) < 0.8)
    areas = rng.integers(1, 5000, size=count)
    return tracks, rows, instance_rows, det, areas if seed % 2 else areas.astype(np.float64), stamp


@pytest.mark.parametrize("seed", range(40))
def test_compiled_rows_equal_the_numpy_rows(seed: int) -> None:
    tracks, rows, instance_rows, det, det_areas, stamp = _case(seed)
    mine = track_table(tracks, rows, instance_rows, det, det_areas=det_areas, stamp=stamp)
    expected = (
        _numpy_table(tracks, rows, instance_rows, det, det_areas=det_areas, stamp=stamp)
        if rows.size
        else TrackTable.empty()
    )
    for name in TrackTable._fields:
        a, b = getattr(mine, name), getattr(expected, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name
    assert list(mine.track_ids) == sorted(mine.track_ids)
