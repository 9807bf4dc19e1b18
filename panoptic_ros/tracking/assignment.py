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
    (isolated rows and columns get their own labels) and the number of labels."""
    rows, cols = allowed.shape
    parent = np.arange(rows + cols)

    def find(node: int) -> int:
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    for i, j in zip(*np.nonzero(allowed), strict=True):
        a, b = find(int(i)), find(rows + int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = np.array([find(k) for k in range(rows + cols)], dtype=np.int64)
    _, labels = np.unique(roots, return_inverse=True)
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
    matched_rows: list[int] = []
    matched_cols: list[int] = []
    for label in range(count):
        r = np.flatnonzero(row_label == label)
        c = np.flatnonzero(col_label == label)
        if r.size == 0 or c.size == 0:
            continue
        if r.size == 1 and c.size == 1:
            matched_rows.append(int(r[0]))
            matched_cols.append(int(c[0]))
            continue
        block = clipped[np.ix_(r, c)]
        if r.size <= c.size:
            picked_rows, picked_cols = np.arange(r.size), solve_assignment(block)
        else:
            picked_rows, picked_cols = solve_assignment(block.T), np.arange(c.size)
        keep = block[picked_rows, picked_cols] < max_cost
        matched_rows.extend(r[picked_rows[keep]].tolist())
        matched_cols.extend(c[picked_cols[keep]].tolist())
    order = np.argsort(matched_rows, kind="stable")
    out_rows = np.asarray(matched_rows, dtype=np.int64)[order]
    out_cols = np.asarray(matched_cols, dtype=np.int64)[order]
    free_rows = np.setdiff1d(np.arange(rows), out_rows)
    free_cols = np.setdiff1d(np.arange(cols), out_cols)
    return Matches(out_rows, out_cols, free_rows.astype(np.int64), free_cols.astype(np.int64))
