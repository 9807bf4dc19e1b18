"""The compiled instance table against the rule written with numpy (tracks, lost tracks, stuff rows,
joined, boxes rounded and cut to the image): random tracks and segments, boxes reaching outside the
image, with and without lost tracks, with tracking off, and frames with no things or no stuff."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.runtime.instances import HostSegments, table_rows
from panoptic_ros.runtime.records import InstanceTable, clip_boxes
from panoptic_ros.tracking import TrackerOutput, TrackState, TrackTable

SIZE = (48, 64)  # (height, width)


def _tracks(rng: np.random.Generator, count: int, first_id: int) -> TrackTable:
    return TrackTable(
        track_ids=np.sort(rng.choice(np.arange(first_id, first_id + 200), size=count, replace=False)),
        category_ids=rng.integers(1, 90, size=count),
        states=rng.integers(0, 3, size=count).astype(np.uint8),
        scores=rng.random(count).astype(np.float32),
        areas=rng.integers(0, 500, size=count),
        bboxes=(rng.random((count, 4)) * 90 - 20).astype(np.float32),  # half-pixel values, outside too
        centroids=(rng.random((count, 2)) * 60).astype(np.float32),
        velocities=rng.normal(size=(count, 2)).astype(np.float32),
        ages=rng.integers(1, 30, size=count),
        hits=rng.integers(1, 30, size=count),
        time_since_update=rng.integers(0, 5, size=count),
        instance_index=rng.integers(-1, 9, size=count),
    )


def _segments(rng: np.random.Generator, things: int, stuff: int) -> HostSegments:
    """Host segments from packed columns (id, category, is_thing, area, box, centroid, score), some
    of area 0 (left out), thing rows first."""
    rows = things + stuff
    columns = np.zeros((rows, 11))
    columns[:, 1] = rng.integers(1, 200, size=rows)
    columns[:things, 2] = 1
    columns[:, 3] = np.where(rng.random(rows) < 0.2, 0, rng.integers(1, 900, size=rows))
    columns[:, 4:8] = rng.integers(-10, 80, size=(rows, 4))
    columns[:, 8:10] = rng.random((rows, 2)) * 50
    columns[:, 10] = rng.random(rows)
    return HostSegments(columns)


def _track_rows(tracks: TrackTable) -> InstanceTable:
    n = len(tracks)
    return InstanceTable(
        ids=tracks.track_ids.astype(np.uint32), category_ids=tracks.category_ids.astype(np.int64),
        is_thing=np.ones(n, dtype=bool), scores=tracks.scores.astype(np.float32),
        states=tracks.states.astype(np.uint8), areas=tracks.areas.astype(np.int64),
        bboxes=np.rint(tracks.bboxes).astype(np.int64), centroids=tracks.centroids.astype(np.float32),
        velocities=tracks.velocities.astype(np.float32), ages=tracks.ages.astype(np.int64),
        positions=np.zeros((n, 3), dtype=np.float32), position_valid=np.zeros(n, dtype=bool),
    )  # fmt: skip


def _segment_rows(segments: HostSegments, select: np.ndarray, ids: np.ndarray) -> InstanceTable:
    n = int(select.sum())
    return InstanceTable(
        ids=ids.astype(np.uint32), category_ids=segments.category_ids[select],
        is_thing=segments.is_thing[select], scores=segments.scores[select],
        states=np.full(n, TrackState.CONFIRMED, dtype=np.uint8), areas=segments.areas[select],
        bboxes=segments.bboxes[select], centroids=segments.centroids[select],
        velocities=np.zeros((n, 2), dtype=np.float32), ages=np.ones(n, dtype=np.int64),
        positions=np.zeros((n, 3), dtype=np.float32), position_valid=np.zeros(n, dtype=bool),
    )  # fmt: skip


def _expected(tracked: TrackerOutput | None, segments: HostSegments, publish_lost: bool) -> InstanceTable:
    """The rule with numpy, as the engine composed it before the table was compiled."""
    if tracked is not None:
        parts = [_track_rows(tracked.tracks)]
        if publish_lost and len(tracked.lost):
            parts.append(_track_rows(tracked.lost))
        things = InstanceTable.concatenate(parts)
    else:
        things = _segment_rows(segments, segments.is_thing, segments.row[segments.is_thing] + 1)
    stuff_rows = ~segments.is_thing
    first_stuff = int(things.ids.max()) + 1 if things.size else 1
    stuff = _segment_rows(segments, stuff_rows, np.arange(first_stuff, first_stuff + int(stuff_rows.sum())))
    table = InstanceTable.concatenate([things, stuff])
    height, width = SIZE
    return table._replace(bboxes=clip_boxes(table.bboxes, width, height))


def _output(tracks: TrackTable, lost: TrackTable) -> TrackerOutput:
    return TrackerOutput(
        track_map=torch.zeros(SIZE, dtype=torch.int32), tracks=tracks, lost=lost,
        instance_track_ids=np.zeros(0, dtype=np.int64), stamp_ns=0,
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("publish_lost", [False, True])
@pytest.mark.parametrize("tracking", [False, True])
def test_the_compiled_table_follows_the_rule(seed: int, publish_lost: bool, tracking: bool) -> None:
    rng = np.random.default_rng(seed)
    counts = [(0, 0, 0, 0), (3, 0, 0, 4), (0, 2, 5, 0), (6, 3, 7, 5)][seed % 4]
    tracked = _output(_tracks(rng, counts[0], 1), _tracks(rng, counts[1], 300)) if tracking else None
    segments = _segments(rng, counts[2], counts[3])
    table = table_rows(tracked, segments, SIZE, publish_lost=publish_lost)
    expected = _expected(tracked, segments, publish_lost)
    for name in InstanceTable._fields:
        mine, theirs = getattr(table, name), getattr(expected, name)
        assert mine.dtype == theirs.dtype, name
        assert np.array_equal(mine, theirs), name
    if table.size:
        assert (table.bboxes >= 0).all() and (table.bboxes[:, 0] + table.bboxes[:, 2] <= SIZE[1]).all()
        assert len(set(table.ids.tolist())) == table.size  # ids unique within the frame
