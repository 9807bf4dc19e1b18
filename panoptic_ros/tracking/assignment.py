"""Minimum-cost bipartite assignment (the Hungarian problem) on the host, written here because SciPy
is not a dependency.

:func:`solve_assignment` is the shortest-augmenting-path form of the Hungarian algorithm (Jonker and
Volgenant 1987, in the rectangular variant described by Crouse 2016, "On implementing 2D rectangular
assignment algorithms"): rows are added one at a time, each by a Dijkstra search over reduced costs
``cost[i, j] - u[i] - v[j]`` with dual potentials ``u``, ``v``; the inner step is vectorized over
columns. It is exact, ``O(n^2 m)`` at worst for ``n <= m``, and runs in microseconds on the small
matrices of a tracker. :func:`match` adds what a tracker needs on top: a cost limit above which pairs
are never matched, and a split of the problem into connected components of the allowed pairs so that
the many trivial one-to-one cases skip the search.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from panoptic_ros.errors import PanopticRosError


class AssignmentError(PanopticRosError, ValueError):
    """A cost matrix cannot be assigned (wrong shape, NaN, or no finite complete assignment)."""


class Matches(NamedTuple):
    """Result of :func:`match`: matched ``(rows[k], cols[k])`` pairs, sorted by row, and the
    unmatched rows and columns (sorted)."""

    rows: np.ndarray
    cols: np.ndarray
    unmatched_rows: np.ndarray
    unmatched_cols: np.ndarray


def solve_assignment(cost: np.ndarray) -> np.ndarray:
    """The column of each row in a minimum-cost assignment of an ``[n, m]`` matrix with ``n <= m``.

    Args:
        cost: ``[n, m]`` float costs, ``n <= m``, all finite.

    Returns:
        ``[n]`` int64: ``cols[i]`` is the column assigned to row ``i``; every row gets a distinct column
        and ``cost[arange(n), cols].sum()`` is minimal.

    Raises:
        AssignmentError: ``n > m`` or a cost is not finite.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] > cost.shape[1]:
        raise AssignmentError(f"expected an [n, m] cost matrix with n <= m, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise AssignmentError("costs must be finite; give disallowed pairs a large finite cost instead")
    rows, cols = cost.shape
    u = np.zeros(rows)
    v = np.zeros(cols)
    col_of_row = np.full(rows, -1, dtype=np.int64)
    row_of_col = np.full(cols, -1, dtype=np.int64)
    for start in range(rows):
        shortest = np.full(cols, np.inf)
        previous_row = np.full(cols, -1, dtype=np.int64)
        visited_rows = np.zeros(rows, dtype=bool)
        visited_cols = np.zeros(cols, dtype=bool)
        lowest = 0.0
        row = start
        sink = -1
        while sink < 0:
            visited_rows[row] = True
            reduced = lowest + cost[row] - u[row] - v
            better = ~visited_cols & (reduced < shortest)
            previous_row[better] = row
            shortest[better] = reduced[better]
            candidates = np.where(visited_cols, np.inf, shortest)
            lowest = float(candidates.min())
            # among the closest columns, prefer a free one: it ends the search now
            closest = np.flatnonzero(candidates == lowest)
            free = closest[row_of_col[closest] < 0]
            col = int(free[0]) if free.size else int(closest[0])
            visited_cols[col] = True
            if row_of_col[col] < 0:
                sink = col
            else:
                row = int(row_of_col[col])
        # dual update keeps reduced costs >= 0 and 0 along the assignment
        u[start] += lowest
        others = visited_rows.copy()
        others[start] = False
        u[others] += lowest - shortest[col_of_row[others]]
        v[visited_cols] -= lowest - shortest[visited_cols]
        # augment along the path back to the start row
        col = sink
        while True:
            row = int(previous_row[col])
            row_of_col[col] = row
            col_of_row[row], col = col, int(col_of_row[row])
            if row == start:
                break
    return col_of_row


def _components(allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Connected components of the bipartite graph of allowed pairs: a label per row and per column
    (isolated rows and columns get their own labels) and the number of labels.

    By label propagation: every node starts with a label of its own, and each round every column
    takes the smallest label among itself and its allowed rows, then every row likewise among its
    columns, until nothing changes (a few rounds for a tracker's small graphs; no Python loop per edge).
    """
    rows, cols = allowed.shape
    none = rows + cols  # above every label
    row_label = np.arange(rows)
    col_label = np.arange(rows, rows + cols)
    while True:
        col_new = np.minimum(col_label, np.where(allowed, row_label[:, None], none).min(axis=0, initial=none))
        row_new = np.minimum(row_label, np.where(allowed, col_new[None, :], none).min(axis=1, initial=none))
        if np.array_equal(row_new, row_label) and np.array_equal(col_new, col_label):
            break
        row_label, col_label = row_new, col_new
    _, labels = np.unique(np.concatenate((row_label, col_label)), return_inverse=True)
    return labels[:rows], labels[rows:], int(labels.max()) + 1 if labels.size else 0


def match(cost: np.ndarray, *, max_cost: float) -> Matches:
    """Pairs of rows and columns with the least total cost, leaving a row or column unmatched where
    every pair it could join costs ``max_cost`` or more.

    This solves ``min sum over matched pairs of (cost - max_cost)``: a match is made only when it pays
    for itself against leaving both sides unmatched, so one cheap match is preferred to two costly
    ones. Clipping the costs at ``max_cost`` and dropping clipped pairs after a complete assignment
    gives exactly that optimum.

    Args:
        cost: ``[R, C]`` float; ``inf`` (or anything ``>= max_cost``) marks a pair that must not match.
        max_cost: the limit, finite.

    Returns:
        :class:`Matches`.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise AssignmentError(f"expected an [R, C] cost matrix, got shape {cost.shape}")
    if np.isnan(cost).any():
        raise AssignmentError("cost matrix holds NaN; mark disallowed pairs with inf")
    if not np.isfinite(max_cost):
        raise AssignmentError(f"max_cost must be finite, got {max_cost}")
    rows, cols = cost.shape
    allowed = cost < max_cost
    clipped = np.where(allowed, cost, max_cost)
    row_label, col_label, count = _components(allowed)
    row_count = np.bincount(row_label, minlength=count)
    col_count = np.bincount(col_label, minlength=count)
    # a component of one row and one column is its one allowed pair, matched (most of a tracker's)
    pair = (row_count == 1) & (col_count == 1)
    col_of_label = np.full(count, -1, dtype=np.int64)
    single_cols = np.flatnonzero(pair[col_label])
    col_of_label[col_label[single_cols]] = single_cols
    single_rows = np.flatnonzero(pair[row_label])
    matched_rows = [single_rows]
    matched_cols = [col_of_label[row_label[single_rows]]]
    for label in np.flatnonzero(~pair & (row_count > 0) & (col_count > 0)).tolist():
        r = np.flatnonzero(row_label == label)
        c = np.flatnonzero(col_label == label)
        block = clipped[np.ix_(r, c)]
        if r.size <= c.size:
            picked_rows, picked_cols = np.arange(r.size), solve_assignment(block)
        else:
            picked_rows, picked_cols = solve_assignment(block.T), np.arange(c.size)
        keep = block[picked_rows, picked_cols] < max_cost
        matched_rows.append(r[picked_rows[keep]])
        matched_cols.append(c[picked_cols[keep]])
    all_rows = np.concatenate(matched_rows).astype(np.int64)
    order = np.argsort(all_rows, kind="stable")
    out_rows = all_rows[order]
    out_cols = np.concatenate(matched_cols).astype(np.int64)[order]
    free_rows = np.ones(rows, dtype=bool)
    free_rows[out_rows] = False
    free_cols = np.ones(cols, dtype=bool)
    free_cols[out_cols] = False
    return Matches(out_rows, out_cols, np.flatnonzero(free_rows), np.flatnonzero(free_cols))
