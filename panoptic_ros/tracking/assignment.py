"""Minimum-cost bipartite assignment (the Hungarian problem) on the host, written here because SciPy
is not a dependency.

:func:`solve_assignment` is the shortest-augmenting-path form of the Hungarian algorithm (Jonker and
Volgenant 1987, in the rectangular variant described by Crouse 2016, "On implementing 2D rectangular
assignment algorithms"): rows are added one at a time, each by a Dijkstra search over reduced costs
``cost[i, j] - u[i] - v[j]`` with dual potentials ``u``, ``v``. It is exact, ``O(n^2 m)`` at worst
for ``n <= m``. :func:`match` adds what a tracker needs on top: a cost limit above which pairs are
never matched, and a split of the problem into connected components of the allowed pairs so that the
many trivial one-to-one cases skip the search. Both run as compiled loops
(:mod:`panoptic_ros.tracking.assignment_cpu`): microseconds on a tracker's small matrices, where
numpy calls on tiny arrays cost a few hundred.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from panoptic_ros.errors import PanopticRosError
from panoptic_ros.tracking.assignment_cpu import _components as _label_components
from panoptic_ros.tracking.assignment_cpu import _solve, match_pairs, match_two_stages


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
    return _solve(np.ascontiguousarray(cost))


def _components(allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Connected components of the bipartite graph of allowed pairs: a label per row and per column
    (isolated rows and columns get their own labels) and the number of labels.

    By label propagation: every node starts with a label of its own, and each round every column
    takes the smallest label among itself and its allowed rows, then every row likewise among its
    columns, until nothing changes (a few rounds for a tracker's small graphs; no Python loop per edge).
    """
    rows = allowed.shape[0]
    row_label, col_label = _label_components(np.ascontiguousarray(allowed))
    _, labels = np.unique(np.concatenate((row_label, col_label)), return_inverse=True)
    return labels[:rows], labels[rows:], int(labels.max()) + 1 if labels.size else 0


def _checked(cost: np.ndarray, max_cost: float) -> np.ndarray:
    """``cost`` as a C-contiguous float64 matrix, refused when it is not 2-D or holds NaN, or when
    ``max_cost`` is not finite."""
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise AssignmentError(f"expected an [R, C] cost matrix, got shape {cost.shape}")
    if np.isnan(cost).any():
        raise AssignmentError("cost matrix holds NaN; mark disallowed pairs with inf")
    if not np.isfinite(max_cost):
        raise AssignmentError(f"max_cost must be finite, got {max_cost}")
    return cost


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
    cost = _checked(cost, max_cost)
    rows, cols = cost.shape
    out_rows, out_cols = match_pairs(cost, float(max_cost))
    free_rows = np.ones(rows, dtype=bool)
    free_rows[out_rows] = False
    free_cols = np.ones(cols, dtype=bool)
    free_cols[out_cols] = False
    return Matches(out_rows, out_cols, np.flatnonzero(free_rows), np.flatnonzero(free_cols))


def match_by_score(
    cost: np.ndarray, scores: np.ndarray, *, high_score: float, low_score: float, max_cost: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ByteTrack's two stages of :func:`match` (one compiled call): the instances (columns of the
    ``[N, T]`` ``cost``) scored ``>= high_score`` against every track (row), then those scored in
    ``[low_score, high_score)`` against the tracks left.

    Returns:
        ``(rows, cols, unmatched_high)``: the matched pairs, the first stage's sorted by row, then the
        second's; and the high-score instances left unmatched (ascending).

    Raises:
        AssignmentError: a cost is NaN or ``max_cost`` is not finite.
    """
    cost = _checked(cost, max_cost)
    return match_two_stages(
        cost,
        np.ascontiguousarray(scores, dtype=np.float64),
        float(high_score),
        float(low_score),
        float(max_cost),
    )
