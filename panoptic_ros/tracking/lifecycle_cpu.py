"""The tracker's per-frame bookkeeping around the assignment as two compiled calls (numba).

After the assignment (:func:`settle`): unmatched tracks count a miss, unmatched confirmed tracks become
lost, tentative tracks missed once and lost tracks past ``max_age`` (or predicted out of the image)
leave the association, and each instance takes its track's id. Before the outputs (:func:`publish`):
the ids the track map shows (tentative tracks hidden where asked), the lookup table from the frame's
instance indices to them, and which tracks are drawn or lost. With numpy these were some twenty calls
on arrays of a few rows a frame, each paying numpy's dispatch in a frame whose caches the maps' passes
have just emptied; the numpy forms stay in the tests as the reference (the same arrays). Compiled on
first use and cached on disk (``cache=True``); :func:`compile_kernels` compiles them ahead of the first
frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from panoptic_ros.tracking.records import TrackState

_TENTATIVE, _LOST = int(TrackState.TENTATIVE), int(TrackState.LOST)


@njit(cache=True, nogil=True)
def settle(  # noqa: PLR0917 (compiled loops take positional arguments)
    states: np.ndarray,
    misses: np.ndarray,
    ids: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    instances: int,
    in_image: np.ndarray,
    max_age: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """In place on the ``[N]`` tracks' ``states`` (uint8) and ``misses`` (int64) after the matches
    ``rows`` (tracks) to ``cols`` (instances): every unmatched track misses once more and, unless
    tentative, is lost. Returns ``(kept [K] int64, leaving [L] int64, track_of_instance [T] int64)``:
    the tracks that stay (matched, or lost with ``misses <= max_age`` and ``in_image``), the lost
    tracks that leave, and each of the ``instances`` instances' track id (0 unmatched)."""
    count = states.size
    matched = np.zeros(count, dtype=np.bool_)
    track_of_instance = np.zeros(instances, dtype=np.int64)
    for k in range(rows.size):
        matched[rows[k]] = True
        track_of_instance[cols[k]] = ids[rows[k]]
    kept = np.empty(count, dtype=np.int64)
    leaving = np.empty(count, dtype=np.int64)
    num_kept = 0
    num_leaving = 0
    for i in range(count):
        if not matched[i]:
            misses[i] += 1
            if states[i] != _TENTATIVE:
                states[i] = _LOST
        lost = states[i] == _LOST
        if matched[i] or (lost and misses[i] <= max_age and in_image[i]):
            kept[num_kept] = i
            num_kept += 1
        elif lost:
            leaving[num_leaving] = i
            num_leaving += 1
    return kept[:num_kept], leaving[:num_leaving], track_of_instance


@njit(cache=True, nogil=True)
def publish(
    ids: np.ndarray, states: np.ndarray, track_of_instance: np.ndarray, hide_tentative: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """What a frame shows of the live tracks (``ids`` ``[N]`` int64 unique, ``states`` ``[N]`` uint8)
    given each instance's track id (``[T]``, 0 none): ``(published [T] int64, lut [T + 1] int32,
    instance_rows [N] int64, drawn [D] int64, lost [L] int64)``. ``published``: the instance's track id
    where the map shows it (0 for tentative tracks with ``hide_tentative``); ``lut``: 0, then
    ``published`` (the track map of index ``k`` is ``lut[k]``); ``instance_rows``: each track's
    instance (-1 none, the first where two share an id); ``drawn``: the tracks with an instance shown,
    ``lost``: the lost tracks, both in row order."""
    count = ids.size
    instances = track_of_instance.size
    instance_rows = np.full(count, -1, dtype=np.int64)
    for j in range(instances):  # the first instance of each track id, by a scan of the tracks
        track = track_of_instance[j]
        if track == 0:
            continue
        for i in range(count):
            if ids[i] == track:
                if instance_rows[i] < 0:
                    instance_rows[i] = j
                break
    published = track_of_instance.copy()
    if hide_tentative:
        for i in range(count):
            if states[i] == _TENTATIVE and instance_rows[i] >= 0:
                for j in range(instances):
                    if published[j] == ids[i]:
                        published[j] = 0
    lut = np.zeros(instances + 1, dtype=np.int32)
    for j in range(instances):
        lut[j + 1] = published[j]
    drawn = np.empty(count, dtype=np.int64)
    lost = np.empty(count, dtype=np.int64)
    num_drawn = 0
    num_lost = 0
    for i in range(count):
        if instance_rows[i] >= 0 and published[instance_rows[i]] != 0:
            drawn[num_drawn] = i
            num_drawn += 1
        if states[i] == _LOST:
            lost[num_lost] = i
            num_lost += 1
    return published, lut, instance_rows, drawn[:num_drawn], lost[:num_lost]


def compile_kernels() -> None:
    """Compile (or load from numba's cache) both loops for the tracks' arrays as the tracker holds
    them."""
    ids = np.arange(1, 3, dtype=np.int64)
    states = np.zeros(2, dtype=np.uint8)
    one = np.zeros(1, dtype=np.int64)
    settle(states, np.zeros(2, dtype=np.int64), ids, one, one, 1, np.ones(2, dtype=np.bool_), 1)
    publish(ids, states, ids.copy(), True)
