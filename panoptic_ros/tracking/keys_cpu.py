"""Where a frame's track ids sit in another id array, as one compiled call (numba).

The tracker looks ids up twice a frame (the tracks among the previous frame's instances, and among
this frame's): with numpy that was seven calls on arrays of a few rows (a stable sort, a binary search,
gathers), each paying numpy's dispatch in a frame whose caches the maps' passes have just emptied. Here
it is one call with the same rule and results. Compiled on first use and cached on disk
(``cache=True``); :func:`compile_kernels` compiles it ahead of the first frame.
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


def compile_kernels() -> None:
    """Compile (or load from numba's cache) :func:`positions` for int64 ids."""
    ids = np.arange(3, dtype=np.int64)
    positions(ids, ids[::-1].copy())
