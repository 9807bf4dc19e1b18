"""Segment maps on the CPU as compiled passes (numba): what
:func:`~panoptic_ros.core.segments.segment_geometry` measures, with the same integer arithmetic (so
the same numbers), plus a per-segment sum of the softmax probability of the segment's class over its
pixels (:class:`ClassProbabilities`); and two lookup tables read at every pixel of a label map in one
pass (:func:`take_pair_cpu`). Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numba import njit

from panoptic_ros.core.segments import Axes, PixelFrame, identity_axes


class ClassProbabilities(NamedTuple):
    """Every class's softmax probability at every pixel of an ``[h, w]`` map, without the ``[C, h * w]``
    table of them: ``logits`` ``[C, h * w]`` float32, ``argmax`` ``[h, w]`` int64 each pixel's most
    likely class, ``top`` ``[h * w]`` float32 its probability (NaN where the softmax gives NaN: a NaN
    logit, a +inf one, or every one -inf). Class ``c`` at pixel ``p`` has ``top[p]`` if ``c ==
    argmax[p]``, else ``exp(logits[c, p] - logits[argmax[p], p]) * top[p]``. Made by
    :func:`~panoptic_ros.fusion.center_offset_cpu.class_probabilities_cpu`."""

    logits: np.ndarray
    argmax: np.ndarray
    top: np.ndarray


_LOG2E = np.float32(1.4426950408889634)
_LN2 = np.float32(0.6931471805599453)
#: Pixels per block of :func:`argmax_and_top`: the block's logits (8 classes: 64 KiB) stay in the core's
#: cache between the argmax and the sum of exponentials.
BLOCK_PIXELS = 2048


# contraction (FMA) and reciprocals allowed, not the assumption of no NaN or infinity
@njit(cache=True, nogil=True, fastmath={"contract", "arcp"})
def argmax_and_top(
    logits: np.ndarray, block: int, with_top: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The argmax of ``[C, P]`` float32 logits (``torch.argmax``: the first maximum; the first NaN where
    a pixel has one, and a NaN maximum there) and, ``with_top``, the softmax probability of each
    pixel's most likely class, ``1 / sum_c exp(logits[c] - best)``: ``(argmax [P] int64, maxima [P],
    top [P] float32, empty without)``. Block by block of ``block`` pixels, each block's logits read
    twice while in the cache (the values do not depend on ``block``); within a block class after class
    over contiguous rows, vectorized (the block's values in arrays of its own, which the compiler
    knows alias nothing else).

    ``top`` is the softmax to float32 rounding without its ``[C, P]`` table; NaN where the maximum is
    NaN or infinite (as a softmax makes every probability of such a pixel). ``exp(x) = 2^k * exp(r)``,
    ``k`` the integer nearest ``x / ln 2`` (at least -126: a term far below the maximum adds about
    1e-38 where the exact one adds less) and ``exp(r)``, ``|r| <= ln 2 / 2``, by its Taylor polynomial
    of degree 6 (relative error below 2e-7, float32 rounding); ``2^k`` made from its exponent bits."""
    classes, pixels = logits.shape
    index = np.empty(pixels, dtype=np.int64)
    maxima = np.empty(pixels, dtype=logits.dtype)
    top = np.empty(pixels if with_top else 0, dtype=np.float32)
    size = max(block, 1)
    shift = np.empty(size, dtype=np.float32)
    total = np.empty(size, dtype=np.float32)
    reduced = np.empty(size, dtype=np.float32)
    bits = np.empty(size, dtype=np.int32)
    power = bits.view(np.float32)
    for start in range(0, pixels, size):
        count = min(size, pixels - start)
        stop = start + count
        position = index[start:stop]
        best = maxima[start:stop]
        first = logits[0, start:stop]  # indexed from 0: no negative-index check stops vectorizing
        for i in range(count):
            best[i] = first[i]
            position[i] = 0
        has_nan = False
        for c in range(1, classes):
            row = logits[c, start:stop]
            for i in range(count):
                value = row[i]
                if value > best[i]:
                    best[i] = value
                    position[i] = c
                has_nan |= np.isnan(value)
        for i in range(count):
            has_nan |= np.isnan(best[i])
        if has_nan:  # the first NaN of each pixel that has one
            for i in range(count):
                for c in range(classes):
                    if np.isnan(logits[c, start + i]):
                        position[i] = c
                        best[i] = logits[c, start + i]
                        break
        if not with_top:
            continue
        for i in range(count):
            value = best[i]
            shift[i] = value if np.isfinite(value) else np.float32(0.0)
            total[i] = np.float32(0.0)
        for c in range(classes):
            row = logits[c, start:stop]
            for i in range(count):  # apart from the polynomial: with the exponent bits, both vectorize
                t = max((row[i] - shift[i]) * _LOG2E, np.float32(-126.0))
                k = np.floor(t + np.float32(0.5))
                reduced[i] = (t - k) * _LN2
                bits[i] = (np.int32(k) + np.int32(127)) << 23
            for i in range(count):
                r = reduced[i]
                e = np.float32(1 / 720)
                e = np.float32(1 / 120) + r * e
                e = np.float32(1 / 24) + r * e
                e = np.float32(1 / 6) + r * e
                e = np.float32(0.5) + r * e
                e = np.float32(1.0) + r * e
                e = np.float32(1.0) + r * e
                total[i] += e * power[i]
        out = top[start:stop]
        for i in range(count):
            out[i] = np.float32(1.0) / total[i] if np.isfinite(best[i]) else np.float32(np.nan)
    return index, maxima, top


@njit(cache=True, nogil=True)
def _measure(  # noqa: PLR0917 (compiled loops take positional arguments)
    segment: np.ndarray,
    num_segments: int,
    weight: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    total: np.ndarray,
    logits: np.ndarray,
    argmax: np.ndarray,
    top: np.ndarray,
    seg_classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Geometry in the camera frame and the probability sums of ``num_segments`` segments of an
    ``[h, w]`` segment map (``num_segments`` for none), run by run of one segment along each row:
    ``(areas [S] int64, bboxes [S, 4] int64 (x, y, w, h), centroids [S, 2] float32 (x, y), probability
    sums [S] float64)``. ``weight``, ``first``, ``last``, ``total`` ``[2, L]`` the frame's axes (channel
    0 columns, 1 rows: :class:`Axes`); ``logits``, ``argmax`` (flat), ``top`` a
    :class:`ClassProbabilities` (``top`` empty for none: sums stay 0)."""
    height, width = segment.shape
    areas = np.zeros(num_segments, dtype=np.int64)
    low = np.full((num_segments, 2), 1 << 62, dtype=np.int64)
    high = np.full((num_segments, 2), -1, dtype=np.int64)
    sums = np.zeros((num_segments, 2), dtype=np.int64)
    prob_sum = np.zeros(num_segments, dtype=np.float64)
    with_prob = top.size > 0
    # along the columns: prefix sums of the camera weights and positions, and the nearest column with
    # camera pixels at or after each column; a run's sums are differences of prefixes, its extent the
    # first (last) camera column of its first (last) column with camera pixels
    weight_before = np.zeros(width + 1, dtype=np.int64)
    total_before = np.zeros(width + 1, dtype=np.int64)
    for x in range(width):
        weight_before[x + 1] = weight_before[x] + weight[0, x]
        total_before[x + 1] = total_before[x] + total[0, x]
    next_seen = np.empty(width + 1, dtype=np.int64)
    next_seen[width] = width
    for x in range(width - 1, -1, -1):
        next_seen[x] = x if weight[0, x] > 0 else next_seen[x + 1]
    for y in range(height):
        row_weight = weight[1, y]
        row_total = total[1, y]
        x = 0
        while x < width:
            s = segment[y, x]
            end = x + 1  # the run of s, written out: numba's cache would miss edits to a helper elsewhere
            while end < width and segment[y, end] == s:
                end += 1
            if s < num_segments:
                if with_prob:
                    cls = seg_classes[s]
                    for p in range(y * width + x, y * width + end):
                        likeliest = argmax[p]
                        if likeliest == cls:
                            prob_sum[s] += np.float64(top[p])
                        else:  # a thing pixel of a class outvoted in its instance: rare
                            ratio = np.float32(np.exp(logits[cls, p] - logits[likeliest, p]))
                            prob_sum[s] += np.float64(ratio * top[p])
                col_weight = weight_before[end] - weight_before[x]
                areas[s] += row_weight * col_weight
                sums[s, 0] += row_weight * (total_before[end] - total_before[x])
                sums[s, 1] += col_weight * row_total
                if row_weight > 0 and col_weight > 0:
                    seen = next_seen[x]
                    last_seen = end - 1
                    while weight[0, last_seen] == 0:
                        last_seen -= 1
                    low[s, 0] = min(low[s, 0], first[0, seen])
                    high[s, 0] = max(high[s, 0], last[0, last_seen])
                    low[s, 1] = min(low[s, 1], first[1, y])
                    high[s, 1] = max(high[s, 1], last[1, y])
            x = end
    bboxes = np.zeros((num_segments, 4), dtype=np.int64)
    centroids = np.zeros((num_segments, 2), dtype=np.float32)
    for s in range(num_segments):
        if areas[s] > 0:
            bboxes[s, 0] = low[s, 0]
            bboxes[s, 1] = low[s, 1]
            bboxes[s, 2] = high[s, 0] - low[s, 0] + 1
            bboxes[s, 3] = high[s, 1] - low[s, 1] + 1
        for axis in range(2):
            centroids[s, axis] = np.float32(np.float64(sums[s, axis]) / np.float64(max(areas[s], 1)))
    return areas, bboxes, centroids, prob_sum


_NO_PROBABILITIES = ClassProbabilities(
    np.zeros((1, 0), dtype=np.float32), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
)


#: Host views of the axes of the frames measured (a frame is made once per camera geometry), by id.
_HOST_AXES: dict[int, tuple[Axes, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}


def _host_axes(axes: Axes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(weight, first, last, total)`` of CPU ``axes`` as numpy views, made once per axes object."""
    hit = _HOST_AXES.get(id(axes))
    if hit is None or hit[0] is not axes:
        if len(_HOST_AXES) >= 64:  # frames of many geometries: start over
            _HOST_AXES.clear()
        views = (axes.weight.numpy(), axes.first.numpy(), axes.last.numpy(), axes.total.numpy())
        hit = _HOST_AXES[id(axes)] = (axes, views)
    return hit[1]


def measure_cpu(
    segment_of_pixel: np.ndarray,
    num_segments: int,
    frame: PixelFrame | None,
    probabilities: ClassProbabilities | None,
    classes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Areas, boxes, centroids (in ``frame``, or the map's own pixels) of every segment of an
    ``[h, w]`` int32 or int64 segment map, and the sum over each segment's pixels of the probability of its
    class ``classes[s]`` (float64; None: sums of 0); see :func:`_measure`."""
    height, width = segment_of_pixel.shape
    axes = frame.axes if frame is not None else identity_axes(height, width, torch.device("cpu"))
    given = _NO_PROBABILITIES if probabilities is None else probabilities
    weight, first, last, total = _host_axes(axes)
    return _measure(
        segment_of_pixel,
        int(num_segments),
        weight,
        first,
        last,
        total,
        given.logits,
        given.argmax.reshape(-1),
        given.top,
        classes,
    )


@njit(cache=True, nogil=True)
def _take_pair(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, shift: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(first[labels + shift], second[labels + shift])`` for a flat ``labels`` map, in one pass that
    looks the tables up once per run of equal labels. An index outside the tables raises IndexError
    (numba's bounds check is off: checked here)."""
    size = labels.size
    out_first = np.empty(size, dtype=first.dtype)
    out_second = np.empty(size, dtype=second.dtype)
    entries = min(first.size, second.size)
    previous = labels[0] + 1 if size else 0  # differs from the first label
    a = first[0]
    b = second[0]
    for p in range(size):
        label = labels[p]
        if label != previous:
            index = label + shift
            if index < 0 or index >= entries:
                raise IndexError("a label is outside the lookup tables")
            a = first[index]
            b = second[index]
            previous = label
        out_first[p] = a
        out_second[p] = b
    return out_first, out_second


def take_pair_cpu(
    first: np.ndarray, second: np.ndarray, labels: np.ndarray, *, shift: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D lookup tables read at ``labels + shift`` (an integer map of any shape): two maps shaped
    like ``labels`` in the tables' types, what two ``take`` calls give, made in one pass over the map
    (a run of equal labels, as segment maps have along their rows, is looked up once).

    Raises:
        IndexError: a label plus ``shift`` is outside ``[0, min(first.size, second.size))``.
    """
    flat = np.ascontiguousarray(labels).reshape(-1)
    if first.size == 0 or second.size == 0:
        if flat.size:
            raise IndexError("a label is outside the lookup tables")
        return np.empty(labels.shape, first.dtype), np.empty(labels.shape, second.dtype)
    out_first, out_second = _take_pair(first, second, flat, int(shift))
    return out_first.reshape(labels.shape), out_second.reshape(labels.shape)


def compile_lookups() -> None:
    """Compile (or load from numba's cache) :func:`take_pair_cpu` for the pipeline's int64 maps and
    tables, so that the first frame does not pay for it."""
    table = np.zeros(2, dtype=np.int64)
    take_pair_cpu(table, table, np.full((2, 2), -1, dtype=np.int64), shift=1)
