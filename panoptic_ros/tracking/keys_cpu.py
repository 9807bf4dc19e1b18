"""The tracker's id lookups as compiled calls (numba).

- :func:`positions`: where a frame's track ids sit in another id array. The tracker looks ids up twice
  a frame (the tracks among the previous frame's instances, and among this frame's): with numpy that
  was seven calls on arrays of a few rows (a stable sort, a binary search, gathers), each paying
  numpy's dispatch in a frame whose caches the maps' passes have just emptied. Here it is one call with
  the same rule and results.
- :func:`track_map`: the frame's track id at each pixel of its compact instance index map, one pass
  without a bounds check per pixel (the indices come from the tracker's own index map).

Compiled on first use and cached on disk (``cache=True``); :func:`compile_kernels` compiles them
ahead of the first frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def positions(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """For each of ``values`` (``[N]`` int64), its position in ``keys`` (``[M]`` int64, any order) and
    whether it is there: ``(position [N] int64, found [N] bool)``. Keys are sorted stably and searched
    (the first of equal keys); a value not found gets the position of the key it would precede (the
    last key past the end), 0 for no keys."""
    count = values.size
    position = np.zeros(count, dtype=np.int64)
    found = np.zeros(count, dtype=np.bool_)
    if keys.size == 0:
        return position, found
    order = np.argsort(keys, kind="mergesort")
    ordered = keys[order]
    last = keys.size - 1
    for i in range(count):
        at = min(np.searchsorted(ordered, values[i]), last)
        position[i] = order[at]
        found[i] = ordered[at] == values[i]
    return position, found


@njit(cache=True, nogil=True)
def track_map(track_ids: np.ndarray, index: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``track_ids[index]`` (``[H, W]`` in ``track_ids``' type) for an ``[H, W]`` int64 index map whose
    values all lie in ``[0, len(track_ids))`` (not checked: the caller's own indices)."""
    out = np.empty(index.shape, dtype=track_ids.dtype)
    flat_out = out.reshape(-1)
    flat_index = index.reshape(-1)
    for p in range(flat_index.size):
        flat_out[p] = track_ids[np.uint64(flat_index[p])]  # unsigned: no negative-index check
    return out


def compile_kernels() -> None:
    """Compile (or load from numba's cache) :func:`positions` for int64 ids and :func:`track_map` for
    int32 ids over an int64 index map."""
    ids = np.arange(3, dtype=np.int64)
    positions(ids, ids[::-1].copy())
    track_map(ids.astype(np.int32), np.zeros((2, 2), dtype=np.int64))
