"""The depth of segments on the CPU as compiled loops (numba), for
:func:`~panoptic_ros.core.geometry.segment_positions`.

:func:`segment_depths` gives each segment the lower weighted median of the valid depths in its
pixels, as the tensor form does with one sort of packed keys over the whole map. Here the map is
read as runs of equal labels (a segment's pixels come in runs along its rows), each run's segment
looked up once (a binary search of the sorted keys, remembered per label in a small table), and each
median selected from the depth's bits (which order positive floats as the floats do) with no sort:
a first pass over the runs gives each segment's weight and its smallest and largest depth, so the
bits above the highest one where those two differ are known; a second counts the weight of the
next 8 bits' values, which settles the median's 8 bits; a third gathers the pixels that agree with
them, and the remaining bits are settled among those few, 8 at a time. The result is a depth of
the segment's pixels, the one at the same weighted rank: the tensor form's median, bit for bit.
:func:`depth_meters` converts a received depth image to meters in one pass. Compiled on first use
and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import register_jitable

_ONE_EACH = np.zeros(0, dtype=np.int64)
#: Slots of the labels' segments remembered by :func:`_depths` (a power of two).
_SLOTS = 256
#: The bits of +inf: a depth is valid where its bits lie in ``(0, _INF)``.
_INF = 0x7F800000


@njit(cache=True, nogil=True)
def _runs(
    ids: np.ndarray, semantic: np.ndarray, paired: bool
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The runs of equal labels of a flat map (``[N]``): ``ids`` itself, or with ``paired`` a thing's
    id where positive and else ``-1 - semantic``. Returns ``[R + 1]`` int64 run starts (the last one
    ``N``) and ``[R]`` int64 run labels."""
    size = ids.size
    starts = np.empty(size + 1, dtype=np.int64)
    labels = np.empty(size, dtype=np.int64)
    runs = 0
    previous = np.int64(0)
    for k in range(size):
        label = np.int64(ids[k])
        if paired and label <= 0:
            label = -1 - np.int64(semantic[k])
        if k == 0 or label != previous:
            starts[runs] = k
            labels[runs] = label
            runs += 1
            previous = label
    starts[runs] = size
    return starts[: runs + 1], labels[:runs]


@register_jitable
def _select(histogram: np.ndarray, bins: int, rank: int) -> tuple[int, int]:  # pragma: no cover
    """The value in ``[0, bins)`` whose weight in ``histogram`` covers weighted position ``rank`` (the
    weights of the smaller values reach at most ``rank``), and ``rank`` within that value's weight."""
    reach = 0
    for value in range(bins):
        if reach + histogram[value] > rank:
            return value, rank - reach
        reach += histogram[value]
    return bins - 1, rank - reach  # not reached while rank < the total weight


@njit(cache=True, nogil=True)
def _depths(  # noqa: PLR0917 (compiled loops take positional arguments)
    starts: np.ndarray,
    labels: np.ndarray,
    keys: np.ndarray,
    bits: np.ndarray,
    weights: np.ndarray,
    min_pixels: int,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``starts`` ``[R + 1]`` and ``labels`` ``[R]`` the runs of :func:`_runs`, ``keys`` ``[S]`` int64
    the (unique) labels of the segments to measure, ``bits`` ``[N]`` int32 the bits of the float32
    depths, ``weights`` ``[N]`` int64 pixels each pixel stands for (empty: 1 each). Returns ``[S]``
    float32 the lower weighted median depth (0 where not valid) and ``[S]`` bool valid: at least
    ``min_pixels`` weight of valid depth (positive and finite: bits in ``(0, _INF)``)."""
    count = keys.size
    runs = labels.size
    weighted = weights.size > 0
    order = np.argsort(keys)
    sorted_keys = keys[order]
    # pass 1: each run's segment (count: none), each segment's weight and smallest and largest bits.
    # Runs are read through slices: an index counted from 0 is never negative, so numba's loop checks
    # for negative indices fall away and the loops vectorize (indexing from a run's start cost 4x).
    segment = np.full(runs, count, dtype=np.int64)
    total = np.zeros(count, dtype=np.int64)
    pixels = np.zeros(count, dtype=np.int64)
    low = np.full(count, _INF, dtype=np.int32)
    high = np.zeros(count, dtype=np.int32)
    # each label's segment remembered in a small table by its low bits (slot k starts with k + 1, a label
    # no other slot's can be): a map's few labels recur run after run, and a binary search per run
    # mispredicted its way through the keys (28 ns a run where every pixel starts one)
    cached_label = np.arange(1, _SLOTS + 1, dtype=np.int64)
    cached_segment = np.empty(_SLOTS, dtype=np.int64)
    for r in range(runs):
        label = labels[r]
        slot = label & (_SLOTS - 1)
        if cached_label[slot] == label:
            s = cached_segment[slot]
        else:
            at = np.searchsorted(sorted_keys, label)
            s = order[at] if at < count and sorted_keys[at] == label else count
            cached_label[slot], cached_segment[slot] = label, s
        if s == count:
            continue
        segment[r] = s
        weight, taken_pixels, smallest, largest = 0, 0, np.int32(_INF), np.int32(0)
        run_bits, run_weights = bits[starts[r] : starts[r + 1]], weights[starts[r] : starts[r + 1]]
        for i in range(run_bits.size):  # vectorized: selects, no branches
            b = run_bits[i]
            w = run_weights[i] if weighted else 1
            taken = (b > 0) & (b < _INF) & (w > 0)
            weight += w if taken else 0
            taken_pixels += 1 if taken else 0
            smallest = min(smallest, b if taken else np.int32(_INF))
            largest = max(largest, b if taken else np.int32(0))
        total[s] += weight
        pixels[s] += taken_pixels
        low[s] = min(low[s], smallest)
        high[s] = max(high[s], largest)
    valid = total >= max(min_pixels, 1)
    rank = (total - 1) // 2  # the lower median's position among the pixels the segment stands for
    found = np.zeros(count, dtype=np.int32)  # each median's bits
    # the lowest of the 8 bits each segment settles next (from its highest bit where low and high
    # differ: the bits above are those of every pixel), -1 once settled or without a median
    shift = np.full(count, -1, dtype=np.int64)
    pending = False
    for s in range(count):
        if valid[s] and low[s] == high[s]:
            found[s] = low[s]
        elif valid[s]:
            top = 30  # valid bits are below 2^31; low != high, so they differ in some bit
            while ((low[s] ^ high[s]) >> top) == 0:
                top -= 1
            shift[s] = max(top - 7, 0)
            pending = True
    if pending:
        # pass 2: the weight of each value of those 8 bits, per segment
        histogram = np.zeros((count, 256), dtype=np.int64)
        for r in range(runs):
            s = segment[r]
            if s == count or shift[s] < 0:
                continue
            counts, at_shift = histogram[s], shift[s]
            run_bits, run_weights = bits[starts[r] : starts[r + 1]], weights[starts[r] : starts[r + 1]]
            for i in range(run_bits.size):
                b = run_bits[i]
                w = run_weights[i] if weighted else 1
                if b > 0 and b < _INF and w > 0:
                    counts[(b >> at_shift) & 0xFF] += w
        # each median's 8 bits; the pixels that agree with the bits known so far are its candidates
        known = np.zeros(count, dtype=np.int32)  # a median's bits from shift up
        room = np.zeros(count + 1, dtype=np.int64)  # where each segment's candidates go
        for s in range(count):
            size = 0
            if shift[s] >= 0:
                value, rank[s] = _select(histogram[s], 256, rank[s])
                known[s] = ((low[s] >> (shift[s] + 8)) << 8) | value
                size = min(histogram[s, value], pixels[s])  # at least the candidates' number
                if shift[s] == 0:
                    found[s], shift[s], size = known[s], -1, 0
            room[s + 1] = room[s] + size
        # pass 3: the candidates, gathered segment by segment
        candidate_bits = np.empty(room[count], dtype=np.int32)
        candidate_weights = np.empty(room[count], dtype=np.int64)
        end = room[:count].copy()
        for r in range(runs):
            s = segment[r]
            if s == count or shift[s] < 0:
                continue
            at_shift, wanted, k = shift[s], known[s], end[s]
            run_bits, run_weights = bits[starts[r] : starts[r + 1]], weights[starts[r] : starts[r + 1]]
            for i in range(run_bits.size):
                b = run_bits[i]
                w = run_weights[i] if weighted else 1
                if b > 0 and w > 0 and (b >> at_shift) == wanted:  # (infinities and NaN differ above)
                    candidate_bits[k] = b
                    candidate_weights[k] = w
                    k += 1
            end[s] = k
        # the rest of each median among its candidates, up to 8 bits at a time, keeping those that agree
        counts = np.zeros(256, dtype=np.int64)
        for s in range(count):
            if shift[s] < 0:
                continue
            value_bits, left, at_shift = known[s], rank[s], shift[s]
            these_bits, these_weights = candidate_bits[room[s] : end[s]], candidate_weights[room[s] : end[s]]
            while at_shift > 0:
                lower = max(at_shift - 8, 0)
                bins = 1 << (at_shift - lower)
                counts[:bins] = 0
                for k in range(these_bits.size):
                    counts[(these_bits[k] >> lower) & (bins - 1)] += these_weights[k]
                value, left = _select(counts, bins, left)
                value_bits = (value_bits << (at_shift - lower)) | value
                kept = 0
                for k in range(these_bits.size):
                    if (these_bits[k] >> lower) == value_bits:
                        these_bits[kept] = these_bits[k]
                        these_weights[kept] = these_weights[k]
                        kept += 1
                these_bits, these_weights, at_shift = these_bits[:kept], these_weights[:kept], lower
            found[s] = value_bits
    medians = np.zeros(count, dtype=np.float32)
    as_floats = found.view(np.float32)
    for s in range(count):
        if valid[s]:
            medians[s] = as_floats[s]
    return medians, valid


@njit(cache=True, nogil=True)
def back_project(  # noqa: PLR0917 (compiled loops take positional arguments)
    centroids: np.ndarray, depth: np.ndarray, valid: np.ndarray, fx: float, fy: float, cx: float, cy: float
) -> np.ndarray:  # pragma: no cover - compiled
    """``[S, 3]`` float32 optical-frame points of pixel ``centroids`` (``[S, 2]`` float32 ``(x, y)``) at
    ``depth`` (``[S]`` float32), 0 where not ``valid``: ``((x - cx) * z / fx, (y - cy) * z / fy, z)``
    in float32 steps, as PyTorch computes the tensor form on the CPU (one call instead of numpy's dozen
    on a few rows). The sizes are not checked here (the caller's)."""
    count = depth.size
    points = np.zeros((count, 3), dtype=np.float32)
    fx32, fy32, cx32, cy32 = np.float32(fx), np.float32(fy), np.float32(cx), np.float32(cy)
    for s in range(count):
        if valid[s]:
            z = depth[s]
            points[s, 0] = (centroids[s, 0] - cx32) * z / fx32
            points[s, 1] = (centroids[s, 1] - cy32) * z / fy32
            points[s, 2] = z
    return points


#: The label and category map types :func:`segment_depths` reads in place (others converted first).
LABEL_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _flat_labels(labels: np.ndarray) -> np.ndarray:
    labels = labels if labels.dtype in LABEL_TYPES else labels.astype(np.int64)
    return np.ascontiguousarray(labels).reshape(-1)


def segment_depths(
    labels: np.ndarray,
    keys: np.ndarray,
    depth: np.ndarray,
    weights: np.ndarray | None,
    *,
    min_pixels: int,
    semantic: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The lower weighted median valid depth of each segment and whether it has one.

    Args:
        labels: ``[H, W]`` integer segment label of each pixel; with ``semantic``, the thing ids (0
            where none): the label is then the id where positive, else ``-1 - semantic`` (the map of
            labels is not made).
        keys: ``[S]`` the unique labels of the segments to measure.
        depth: ``[H, W]`` float32 meters, valid where finite and positive.
        weights: ``[H, W]`` integer, how many pixels each pixel stands for; None: 1 each.
        min_pixels: segments whose valid pixels stand for fewer pixels get no depth.
        semantic: ``[H, W]`` integer category of each pixel, or None.

    Returns:
        ``[S]`` float32 median depth (0 where not valid) and ``[S]`` bool validity.

    Raises:
        ValueError: ``depth``, ``weights`` or ``semantic`` not of ``labels``' shape (the compiled
            loops do not check their indices).
    """
    for name, other in (("depth", depth), ("weights", weights), ("semantic", semantic)):
        if other is not None and other.shape != labels.shape:
            raise ValueError(f"the {name} map is {other.shape}, the label map {labels.shape}")
    ids = _flat_labels(labels)
    starts, run_labels = _runs(ids, ids if semantic is None else _flat_labels(semantic), semantic is not None)
    return _depths(
        starts,
        run_labels,
        np.ascontiguousarray(keys, dtype=np.int64).reshape(-1),
        np.ascontiguousarray(depth, dtype=np.float32).reshape(-1).view(np.int32),
        _ONE_EACH if weights is None else np.ascontiguousarray(weights, dtype=np.int64).reshape(-1),
        int(min_pixels),
    )


@njit(cache=True, nogil=True)
def _meters(depth: np.ndarray, scale: np.float32) -> np.ndarray:  # pragma: no cover - compiled
    """``[H, W]`` depth samples (any layout) times ``scale`` as ``[H, W]`` float32, NaN where the
    product is not positive and finite: one read and one write of the image."""
    height, width = depth.shape
    out = np.empty((height, width), dtype=np.float32)
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    for r in range(height):
        row, meters = depth[r], out[r]
        for c in range(width):
            value = np.float32(row[c]) * scale
            meters[c] = value if value > 0 and value < inf else nan
    return out


#: The depth sample types :func:`depth_meters` converts in one compiled pass.
METER_TYPES = (np.dtype(np.uint16), np.dtype(np.float32))


def depth_meters(depth: np.ndarray, scale: float) -> np.ndarray | None:
    """``[H, W]`` native uint16 or float32 depth (row padding allowed) times ``scale`` as float32
    meters, NaN where invalid, in one pass (the numpy expression took five passes: 1.3-1.9 ms for a
    1920x1080 image on dev-cpu, this 0.3 ms). None for other shapes and types: the caller converts."""
    if depth.ndim != 2 or depth.dtype not in METER_TYPES or not depth.dtype.isnative:
        return None
    return _meters(depth, np.float32(scale))


def compile_meters() -> None:
    """Compile (or load from numba's cache) the depth conversion for both sample types, contiguous
    and with padded rows, writable and read-only (a message's buffer, e.g. a bag's)."""
    for dtype in METER_TYPES:
        image = np.ones((2, 3), dtype=dtype)
        for view in (image, image[:, :2]):
            depth_meters(view, 1.0)
            read_only = view.view()
            read_only.flags.writeable = False
            depth_meters(read_only, 1.0)


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the runs for every pair of map types the engine hands
    over and the medians' passes for both kinds of weights."""
    for id_type in LABEL_TYPES:
        for semantic_type in LABEL_TYPES:
            _runs(np.zeros(2, dtype=id_type), np.zeros(2, dtype=semantic_type), True)
    starts, labels = _runs(np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), False)
    bits = np.ones(2, dtype=np.float32).view(np.int32)
    _depths(starts, labels, labels[:1], bits, _ONE_EACH, 1)
    _depths(starts, labels, labels[:1], bits, starts[:2], 1)
    one = np.ones(1, dtype=np.float32)
    back_project(np.zeros((1, 2), dtype=np.float32), one, one > 0, 1.0, 1.0, 0.0, 0.0)
