"""The tracker's compiled bookkeeping (:mod:`panoptic_ros.tracking.lifecycle_cpu`) gives the arrays its
numpy form gives, on random frames of tracks and matches."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.tracking.lifecycle_cpu import publish, settle
from panoptic_ros.tracking.records import TrackState
from panoptic_ros.tracking.state import lookup

TENTATIVE, CONFIRMED, LOST = (int(s) for s in (TrackState.TENTATIVE, TrackState.CONFIRMED, TrackState.LOST))


def _numpy_settle(  # noqa: PLR0917 (the compiled loop's arguments)
    states: np.ndarray, misses: np.ndarray, ids: np.ndarray, rows: np.ndarray, cols: np.ndarray,
    instances: int, in_image: np.ndarray, max_age: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    matched = np.zeros(states.size, dtype=bool)
    matched[rows] = True
    misses[~matched] += 1
    states[~matched & (states != TENTATIVE)] = LOST
    track_of_instance = np.zeros(instances, dtype=np.int64)
    track_of_instance[cols] = ids[rows]
    keep = matched | ((states == LOST) & (misses <= max_age) & in_image)
    return np.flatnonzero(keep), np.flatnonzero(~keep & (states == LOST)), track_of_instance


def _numpy_publish(
    ids: np.ndarray, states: np.ndarray, track_of_instance: np.ndarray, hide_tentative: bool
) -> tuple[np.ndarray, ...]:
    published = track_of_instance.copy()
    if hide_tentative:
        published[np.isin(published, ids[states == TENTATIVE])] = 0
    lut = np.concatenate((np.zeros(1, np.int32), published), dtype=np.int32)
    position, matched_now = lookup(ids, track_of_instance)
    instance_rows = np.where(matched_now, position, -1)
    in_map = matched_now.copy()
    in_map[matched_now] = published[position[matched_now]] != 0
    return published, lut, instance_rows, np.flatnonzero(in_map), np.flatnonzero(states == LOST)


def _frame(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    tracks = int(rng.integers(0, 12))
    instances = int(rng.integers(0, 12))
    ids = rng.choice(np.arange(1, 60), size=tracks, replace=False).astype(np.int64)
    states = rng.choice([TENTATIVE, CONFIRMED, LOST], size=tracks).astype(np.uint8)
    misses = rng.integers(0, 5, size=tracks).astype(np.int64)
    pairs = int(rng.integers(0, min(tracks, instances) + 1))
    rows = rng.choice(tracks, size=pairs, replace=False).astype(np.int64)
    cols = rng.choice(instances, size=pairs, replace=False).astype(np.int64)
    in_image = rng.random(tracks) < 0.8
    return ids, states, misses, rows, cols, np.int64(instances), in_image


@pytest.mark.parametrize("seed", range(4))
def test_settle_and_publish_equal_their_numpy_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(300):
        ids, states, misses, rows, cols, instances, in_image = _frame(rng)
        max_age = int(rng.integers(0, 4))
        ours_states, ours_misses = states.copy(), misses.copy()
        ours = settle(ours_states, ours_misses, ids, rows, cols, int(instances), in_image, max_age)
        theirs = _numpy_settle(states, misses, ids, rows, cols, int(instances), in_image, max_age)
        assert np.array_equal(ours_states, states) and np.array_equal(ours_misses, misses)
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        track_of_instance = ours[2]
        unclaimed = ids[~np.isin(ids, track_of_instance)]
        free = np.flatnonzero(track_of_instance == 0)
        if unclaimed.size and free.size:  # an instance given another track afterwards (new or re-identified)
            track_of_instance[free[0]] = unclaimed[0]
        for hide in (False, True):
            got = publish(ids, states, track_of_instance, hide)
            expected = _numpy_publish(ids, states, track_of_instance, hide)
            for a, b in zip(got, expected, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b), (a, b)
