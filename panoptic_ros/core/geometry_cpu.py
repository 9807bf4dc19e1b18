"""The depth of segments on the CPU as compiled loops (numba), for
:func:`~panoptic_ros.core.geometry.segment_positions`.

:func:`segment_depths` gives each segment the lower weighted median of the valid depths in its
pixels, as the tensor form does with one sort of packed keys over the whole map. Here each pixel's
segment is found by a binary search of the sorted labels and the medians of all segments are
selected together a byte of the depth's bits at a time (a radix select): five passes over the
pixels, no sort, the same medians (the selected value is a depth of the segment's pixels, the one at
the same weighted rank). :func:`depth_meters` converts a received depth image to meters in one pass.
Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ONE_EACH = np.zeros(0, dtype=np.int64)


@njit(cache=True, nogil=True)
def _depths(
    labels: np.ndarray, keys: np.ndarray, bits: np.ndarray, weights: np.ndarray, min_pixels: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``labels`` ``[N]`` int64 segment label per pixel, ``keys`` ``[S]`` int64 the (unique) labels of
    the segments to measure, ``bits`` ``[N]`` int32 the bits of the float32 depths, ``weights`` ``[N]``
    int64 pixels each pixel stands for (empty: 1 each). Returns ``[S]`` float32 the lower weighted
    median depth (0 where not valid) and ``[S]`` bool valid: at least ``min_pixels`` weight.

    A depth is valid where it is positive and finite: its bits then lie in ``(0, 0x7F800000)`` and
    order as the floats do, so each median is found a byte of its bits at a time, high byte first (a
    radix select: four passes over the pixels, each counting the weight of the next byte's values
    among the pixels that agree with the bytes found so far), with no sort."""
    count = keys.size
    size = labels.size
    weighted = weights.size > 0
    order = np.argsort(keys)
    sorted_keys = keys[order]
    segment = np.full(size, count, dtype=np.int64)
    total = np.zeros(count, dtype=np.int64)
    searched, last_label, last = False, 0, count  # labels come in runs: search once per run
    for i in range(size):
        b = bits[i]
        if b <= 0 or b >= 0x7F800000 or (weighted and weights[i] == 0):
            continue  # not a positive finite depth, or a pixel no camera pixel copies
        label = labels[i]
        if not searched or label != last_label:
            searched = True
            at = np.searchsorted(sorted_keys, label)
            last_label, last = label, (order[at] if at < count and sorted_keys[at] == label else count)
        if last < count:
            segment[i] = last
            total[last] += weights[i] if weighted else 1
    valid = total >= max(min_pixels, 1)
    rank = (total - 1) // 2  # the lower median's position among the pixels the segment stands for
    prefix = np.zeros(count, dtype=np.int64)  # the median's bits found so far
    histogram = np.zeros((count, 256), dtype=np.int64)
    for shift in (24, 16, 8, 0):
        histogram[:] = 0
        for i in range(size):
            s = segment[i]
            if s < count and (bits[i] >> (shift + 8)) == prefix[s]:
                histogram[s, (bits[i] >> shift) & 0xFF] += weights[i] if weighted else 1
        for s in range(count):
            if valid[s]:
                reach = 0
                for value in range(256):
                    if reach + histogram[s, value] > rank[s]:
                        break
                    reach += histogram[s, value]
                rank[s] -= reach
                prefix[s] = (prefix[s] << 8) | value
    medians = np.zeros(count, dtype=np.float32)
    found = prefix.astype(np.int32).view(np.float32)
    for s in range(count):
        if valid[s]:
            medians[s] = found[s]
    return medians, valid


def segment_depths(
    labels: np.ndarray,
    keys: np.ndarray,
    depth: np.ndarray,
    weights: np.ndarray | None,
    *,
    min_pixels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The lower weighted median valid depth of each segment and whether it has one.

    Args:
        labels: ``[H, W]`` integer segment label of each pixel.
        keys: ``[S]`` the unique labels of the segments to measure.
        depth: ``[H, W]`` float32 meters, valid where finite and positive.
        weights: ``[H, W]`` integer, how many pixels each pixel stands for; None: 1 each.
        min_pixels: segments whose valid pixels stand for fewer pixels get no depth.

    Returns:
        ``[S]`` float32 median depth (0 where not valid) and ``[S]`` bool validity.
    """
    return _depths(
        np.ascontiguousarray(labels, dtype=np.int64).reshape(-1),
        np.ascontiguousarray(keys, dtype=np.int64).reshape(-1),
        np.ascontiguousarray(depth, dtype=np.float32).reshape(-1).view(np.int32),
        _ONE_EACH if weights is None else np.ascontiguousarray(weights, dtype=np.int64).reshape(-1),
        int(min_pixels),
    )


@njit(cache=True, nogil=True)
def _labels(ids: np.ndarray, semantic: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``[h, w]`` int64: ``ids`` where positive, else ``-1 - semantic`` (both ``[h, w]``)."""
    height, width = ids.shape
    out = np.empty((height, width), dtype=np.int64)
    for r in range(height):
        row, categories, labels = ids[r], semantic[r], out[r]
        for c in range(width):
            labels[c] = row[c] if row[c] > 0 else -1 - np.int64(categories[c])
    return out


#: The id and category map types :func:`segment_labels` takes in one compiled pass.
LABEL_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def segment_labels(ids: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """The segment label of each pixel, as the depth medians take it: a thing's id (``ids`` ``[h, w]``,
    0 where none) where it has one, else ``-1 - category`` (``semantic`` ``[h, w]``); ``[h, w]`` int64
    in one pass (PyTorch's ``where`` over the two took 0.2 ms at the model's resolution on dev-cpu)."""
    ids = np.ascontiguousarray(ids if ids.dtype in LABEL_TYPES else ids.astype(np.int64))
    semantic = np.ascontiguousarray(semantic if semantic.dtype in LABEL_TYPES else semantic.astype(np.int64))
    return _labels(ids, semantic)


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


def compile_labels() -> None:
    """Compile (or load from numba's cache) the segment labels for every pair of map types (3D
    positions on the CPU take them whatever the fusion)."""
    for id_type in LABEL_TYPES:
        for semantic_type in LABEL_TYPES:
            segment_labels(np.zeros((2, 2), dtype=id_type), np.zeros((2, 2), dtype=semantic_type))


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the medians' loop for both kinds of weights."""
    labels = np.zeros(2, dtype=np.int64)
    bits = np.ones(2, dtype=np.float32).view(np.int32)
    _depths(labels, labels[:1], bits, _ONE_EACH, 1)
    _depths(labels, labels[:1], bits, labels, 1)
