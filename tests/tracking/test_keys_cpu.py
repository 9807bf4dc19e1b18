"""The compiled id lookup (:mod:`panoptic_ros.tracking.keys_cpu`) gives numpy's sort-and-search answer."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.tracking.keys_cpu import positions, track_map
from panoptic_ros.tracking.state import lookup


def _numpy_positions(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule written with numpy: a stable sort of the keys, a left binary search, the last key past
    the end."""
    if keys.size == 0:
        return np.zeros(values.shape, np.int64), np.zeros(values.shape, bool)
    order = np.argsort(keys, kind="stable")
    at = np.minimum(np.searchsorted(keys[order], values), keys.size - 1)
    return order[at], keys[order][at] == values


@pytest.mark.parametrize("seed", range(5))
def test_positions_equal_numpy_s_sort_and_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(400):
        keys = rng.choice(40, size=int(rng.integers(0, 12)), replace=bool(rng.random() < 0.5)).astype(
            np.int64
        )
        values = rng.integers(-2, 42, size=int(rng.integers(0, 12))).astype(np.int64)
        got, expected = positions(values, keys), _numpy_positions(values, keys)
        assert got[0].dtype == np.int64 and got[1].dtype == bool
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]), (values, keys)


def test_lookup_finds_each_track_id_among_unique_keys() -> None:
    keys = np.array([7, 3, 11, 0, 5], dtype=np.int64)  # a frame's track ids (0: an instance without one)
    position, found = lookup(np.array([11, 4, 7, 5]), keys)
    assert found.tolist() == [True, False, True, True]
    assert position[found].tolist() == [2, 0, 4]
    assert lookup(np.array([1, 2]), np.zeros(0, np.int64))[1].tolist() == [False, False]


def test_the_track_map_gathers_each_pixel_s_track_id() -> None:
    rng = np.random.default_rng(3)
    track_ids = np.concatenate(([0], rng.integers(1, 1000, size=9))).astype(np.int32)
    index = rng.integers(0, track_ids.size, size=(17, 23)).astype(np.int64)
    got = track_map(track_ids, index)
    assert got.dtype == np.int32 and got.shape == index.shape
    assert np.array_equal(got, track_ids[index])
