""":func:`~panoptic_ros.tracking.assignment.match` as one compiled call (numba).

A tracker matches a few dozen tracks and instances twice per frame; the numpy form of
:mod:`panoptic_ros.tracking.assignment` spends its time in the overhead of many calls on tiny arrays.
:func:`match_pairs` runs the same steps (the same component labels by propagation, the same
one-to-one shortcut, the same shortest-augmenting-path search with the same tie rules and the same
float operations in the same order) as scalar loops, so it returns the same pairs. Compiled on first
use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _components(allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Component labels of rows and columns (``assignment._components``' propagation; the labels are
    the smallest node number of each component, not renumbered)."""
    rows, cols = allowed.shape
    row_label = np.arange(rows)
    col_label = np.arange(rows, rows + cols)
    changed = True
    while changed:
        changed = False
        for j in range(cols):
            best = col_label[j]
            for i in range(rows):
                if allowed[i, j] and row_label[i] < best:
                    best = row_label[i]
            if best != col_label[j]:
                col_label[j] = best
                changed = True
        for i in range(rows):
            best = row_label[i]
            for j in range(cols):
                if allowed[i, j] and col_label[j] < best:
                    best = col_label[j]
            if best != row_label[i]:
                row_label[i] = best
                changed = True
    return row_label, col_label


@njit(cache=True, nogil=True)
def _solve(cost: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``assignment.solve_assignment`` for a finite ``[n, m]`` float64 matrix, ``n <= m``."""
    rows, cols = cost.shape
    u = np.zeros(rows)
    v = np.zeros(cols)
    col_of_row = np.full(rows, -1, dtype=np.int64)
    row_of_col = np.full(cols, -1, dtype=np.int64)
    for start in range(rows):
        shortest = np.full(cols, np.inf)
        previous_row = np.full(cols, -1, dtype=np.int64)
        visited_rows = np.zeros(rows, dtype=np.bool_)
        visited_cols = np.zeros(cols, dtype=np.bool_)
        lowest = 0.0
        row = start
        sink = -1
        while sink < 0:
            visited_rows[row] = True
            for j in range(cols):
                reduced = lowest + cost[row, j] - u[row] - v[j]
                if not visited_cols[j] and reduced < shortest[j]:
                    previous_row[j] = row
                    shortest[j] = reduced
            lowest = np.inf
            for j in range(cols):
                if not visited_cols[j] and shortest[j] < lowest:
                    lowest = shortest[j]
            # among the closest columns, prefer a free one (the first), else the first closest
            col = -1
            for j in range(cols):
                if not visited_cols[j] and shortest[j] == lowest:
                    if row_of_col[j] < 0:
                        col = j
                        break
                    if col < 0:
                        col = j
            visited_cols[col] = True
            if row_of_col[col] < 0:
                sink = col
            else:
                row = row_of_col[col]
        u[start] += lowest
        for i in range(rows):
            if visited_rows[i] and i != start:
                u[i] += lowest - shortest[col_of_row[i]]
        for j in range(cols):
            if visited_cols[j]:
                v[j] -= lowest - shortest[j]
        col = sink
        while True:
            row = previous_row[col]
            row_of_col[col] = row
            following = col_of_row[row]
            col_of_row[row] = col
            col = following
            if row == start:
                break
    return col_of_row


@njit(cache=True, nogil=True)
def match_pairs(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The matched ``(rows, cols)`` of ``assignment.match`` for a NaN-free ``[R, C]`` float64 matrix
    and a finite ``max_cost``, sorted by row."""
    rows, cols = cost.shape
    allowed = cost < max_cost
    row_label, col_label = _components(allowed)
    labels = rows + cols
    row_count = np.zeros(labels, dtype=np.int64)
    col_count = np.zeros(labels, dtype=np.int64)
    for i in range(rows):
        row_count[row_label[i]] += 1
    for j in range(cols):
        col_count[col_label[j]] += 1
    col_of_row = np.full(rows, -1, dtype=np.int64)
    for label in range(labels):  # in label order, as the numpy form's components
        if row_count[label] == 0 or col_count[label] == 0:
            continue
        r = np.flatnonzero(row_label == label)
        c = np.flatnonzero(col_label == label)
        if r.size == 1 and c.size == 1:  # its one allowed pair
            col_of_row[r[0]] = c[0]
            continue
        block = np.empty((r.size, c.size))
        for a in range(r.size):
            for b in range(c.size):
                value = cost[r[a], c[b]]
                block[a, b] = value if value < max_cost else max_cost
        if r.size <= c.size:
            picked = _solve(block)
            for a in range(r.size):
                if block[a, picked[a]] < max_cost:
                    col_of_row[r[a]] = c[picked[a]]
        else:
            picked = _solve(block.T.copy())
            for b in range(c.size):
                if block[picked[b], b] < max_cost:
                    col_of_row[r[picked[b]]] = c[b]
    matched = np.flatnonzero(col_of_row >= 0)
    return matched, col_of_row[matched]


@njit(cache=True, nogil=True)
def match_two_stages(
    cost: np.ndarray, scores: np.ndarray, high_score: float, low_score: float, max_cost: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(rows, cols, unmatched_high)`` of ByteTrack's two stages on a NaN-free ``[N, T]`` float64
    cost matrix of tracks against instances scored ``scores`` (``[T]`` float64): the instances
    scored ``>= high_score`` matched with every track (:func:`match_pairs`), then those scored in
    ``[low_score, high_score)`` with the tracks left; ``rows`` the first stage's pairs sorted by row,
    then the second's; ``unmatched_high`` the high-score instances left (ascending)."""
    high = np.flatnonzero(scores >= high_score)
    low = np.flatnonzero((scores >= low_score) & (scores < high_score))
    first_rows, first_cols = match_pairs(np.ascontiguousarray(cost[:, high]), max_cost)
    free_row = np.ones(cost.shape[0], dtype=np.bool_)
    free_row[first_rows] = False
    remaining = np.flatnonzero(free_row)
    free_high = np.ones(high.size, dtype=np.bool_)
    free_high[first_cols] = False
    second_cost = np.empty((remaining.size, low.size))
    for a in range(remaining.size):
        for b in range(low.size):
            second_cost[a, b] = cost[remaining[a], low[b]]
    second_rows, second_cols = match_pairs(second_cost, max_cost)
    rows = np.concatenate((first_rows, remaining[second_rows]))
    cols = np.concatenate((high[first_cols], low[second_cols]))
    return rows, cols, high[np.flatnonzero(free_high)]


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the matcher and its parts (``solve_assignment`` and the
    component labels are public too), so that the first frame does not pay for it."""
    cost = np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.5]])
    match_pairs(cost, 1.0)
    match_two_stages(cost, np.array([0.9, 0.3]), 0.5, 0.1, 1.0)
    _solve(np.ascontiguousarray(cost.T))
    _components(np.ascontiguousarray(cost < 1.0))
