"""Center-offset fusion on the CPU as a few compiled loops (numba), equal to the PyTorch steps.

:func:`panoptic_ros.fusion.center_offset.fuse_center_offset` on the CPU spends most of its time
dispatching a few hundred small PyTorch and numpy operations per frame, not computing. Here each step
of the fusion is one compiled pass over the map, with the same rules as the tensor functions of
:mod:`panoptic_ros.fusion.center_offset` (whose docstrings define them) and the same results, bit for
bit, except the scores' softmax probabilities, equal to float32 rounding (an ``exp`` of our own):

1. :func:`~panoptic_ros.core.segments_cpu.argmax_and_top` the semantic argmax (first maximum; the
   first NaN where a pixel has one) and the softmax probability of each pixel's most likely class,
   block by block of pixels (each block's logits read twice while in the cache), vectorized over the
   pixels of each class, where ``torch.softmax`` took 0.3-0.6 ms a 192 x 384 frame and wrote every
   class's probability.
2. :func:`_centers` the centers: candidates above the threshold, kept where they equal the maximum of
   their (border-clamped) window of the raw heatmap, NaN counted as below; the top-k floor.
3. :func:`~panoptic_ros.fusion.nearest_cpu.nearest_centers_cpu` each thing pixel's nearest center
   by squared float32 distance; the rare pixels whose two nearest lie within float32 rounding of each
   other are settled there as on the tensor path, by ``vector_norm``'s own float32 arithmetic (ties to
   the lower index), with no PyTorch op.
4. :func:`_merge` votes, instance classes and numbers, kept stuff, segment rows and the three maps.
5. :func:`~panoptic_ros.core.segments_cpu.measure_cpu` areas, boxes and centroids in the camera
   frame and the summed softmax probability of each segment's class, in one pass (a class other than
   the pixel's likeliest, rare, by one more ``exp``); :func:`_scores` the segments' scores from them.

The loops are compiled on first use and cached on disk (``cache=True``, numba's cache folder);
:func:`compile_kernels` compiles them ahead of the first frame. They release the GIL, run on the
calling thread only, and allocate their outputs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numba import njit

from panoptic_ros.core.segments_cpu import (
    BLOCK_PIXELS,
    ClassProbabilities,
    argmax_and_top,
    measure_cpu,
)
from panoptic_ros.fusion.nearest_cpu import nearest_centers_cpu

#: No top-k (keep every center above 0).
NO_TOP_K = -1
#: Returned by :func:`_merge` when an instance number reaches the label divisor.
OVERFLOW = -1


class CpuCenters(NamedTuple):
    """Centers as host arrays: ``points`` ``[K, 2]`` int64 ``(y, x)`` row-major, ``scores`` ``[K]``
    float32."""

    points: np.ndarray
    scores: np.ndarray


@njit(cache=True, nogil=True)
def _centers(
    heat: np.ndarray, threshold: np.float32, kernel: int, top_k: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Centers of an ``[H, W]`` float32 heatmap (``find_centers``' rule): ``(points [K, 2] int64,
    scores [K] float32)`` in row-major order."""
    height, width = heat.shape
    half = kernel // 2
    kept = np.empty(heat.size, dtype=np.int64)
    count = 0
    words = (width + 7) // 8
    above = np.zeros(words * 8, dtype=np.uint8)
    packed = above.view(np.uint64)
    for y in range(height):
        line = heat[y]
        for x in range(width):  # vectorized: a row's candidates as bytes, words without one skipped
            above[x] = line[x] > threshold
        for w in range(words):
            if packed[w] == 0:
                continue
            for x in range(8 * w, 8 * w + 8):
                if not above[x]:
                    continue
                value = line[x]
                # a peak when no pixel of its window is larger (a NaN neighbour counts as below);
                # most candidates sit on a blob's slope and meet a larger neighbour within a few reads
                peak = True
                for yy in range(y - half, y + half + 1):
                    row = min(max(yy, 0), height - 1)
                    for xx in range(x - half, x + half + 1):
                        if heat[row, min(max(xx, 0), width - 1)] > value:
                            peak = False
                            break
                    if not peak:
                        break
                if peak:
                    kept[count] = y * width + x
                    count += 1
    floor = np.float32(0.0)
    if top_k != NO_TOP_K:
        peaks = np.empty(count, dtype=np.float32)
        positive = 0
        for i in range(count):
            value = heat.flat[kept[i]]
            if value > 0:
                peaks[positive] = value
                positive += 1
        k = min(top_k, heat.size)
        if positive >= k > 0:
            floor = np.sort(peaks[:positive])[positive - k]  # the k-th largest
    points = np.empty((count, 2), dtype=np.int64)
    scores = np.empty(count, dtype=np.float32)
    chosen = 0
    for i in range(count):
        value = heat.flat[kept[i]]
        if value > floor:
            points[chosen, 0] = kept[i] // width
            points[chosen, 1] = kept[i] % width
            scores[chosen] = value
            chosen += 1
    return points[:chosen], scores[:chosen]


@njit(cache=True, nogil=True)
def _merge(  # noqa: PLR0917 (compiled loops take positional arguments)
    semantic: np.ndarray,
    instance: np.ndarray,
    num_centers: int,
    is_thing: np.ndarray,
    stuff_area: int,
    label_divisor: int,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:  # pragma: no cover - compiled
    """``merge_segments``' rule over ``[P]`` int64 ``semantic`` and ``instance`` (center + 1, 0 none):
    ``(panoptic [P] int64, instance rows [P] int32, segment of pixel [P] int32 (S for none),
    segment ids [S], classes [S], centers [S] (-1 stuff), pixels [S])``; ``ids`` holds
    :data:`OVERFLOW` alone when an instance number reaches ``label_divisor``."""
    classes = is_thing.size
    pixels = semantic.size
    votes = np.zeros((num_centers + 1, classes), dtype=np.int64)
    flat_votes = votes.reshape(-1)
    # counted run by run of one (instance, class) key: one count per pixel would make each pixel wait
    # for its neighbour's store to the same count
    key = instance[0] * classes + semantic[0] if pixels else 0
    run = 0
    for p in range(pixels):
        pixel_key = instance[p] * classes + semantic[p]
        if pixel_key != key:
            flat_votes[key] += run
            key = pixel_key
            run = 0
        run += 1
    if pixels:
        flat_votes[key] += run
    # things: class by majority (ties to the smallest class), numbered per class in center order
    row_of_key = np.full(num_centers + classes, -1, dtype=np.int64)
    ids = np.empty(num_centers + classes, dtype=np.int64)
    seg_classes = np.empty(num_centers + classes, dtype=np.int64)
    seg_centers = np.empty(num_centers + classes, dtype=np.int64)
    seg_pixels = np.zeros(num_centers + classes, dtype=np.int64)
    numbers = np.zeros(classes, dtype=np.int64)
    rows = 0
    for k in range(num_centers):
        total = 0
        best = 0
        for c in range(classes):
            count = votes[k + 1, c]
            total += count
            if count > votes[k + 1, best]:
                best = c
        if total == 0:
            continue
        numbers[best] += 1
        if numbers[best] >= label_divisor:
            none = np.empty(0, dtype=np.int64)
            return (
                none,
                np.empty(0, dtype=np.int32),
                np.empty(0, dtype=np.int32),
                np.full(1, OVERFLOW, dtype=np.int64),
                none,
                none,
                none,
            )
        row_of_key[k] = rows
        ids[rows] = best * label_divisor + numbers[best]
        seg_classes[rows] = best
        seg_centers[rows] = k
        seg_pixels[rows] = total
        rows += 1
    things = rows
    for c in range(classes):
        if not is_thing[c] and votes[0, c] >= max(stuff_area, 1):
            row_of_key[num_centers + c] = rows
            ids[rows] = c * label_divisor
            seg_classes[rows] = c
            seg_centers[rows] = -1
            seg_pixels[rows] = votes[0, c]
            rows += 1
    panoptic = np.empty(pixels, dtype=np.int64)
    instance_rows = np.zeros(pixels, dtype=np.int32)
    segment = np.empty(pixels, dtype=np.int32)  # read by the measure only: half the bytes of int64
    for p in range(pixels):
        k = instance[p]
        row = row_of_key[k - 1] if k > 0 else row_of_key[num_centers + semantic[p]]
        if row < 0:
            segment[p] = rows
            panoptic[p] = -1
        else:
            segment[p] = row
            panoptic[p] = ids[row]
            if row < things:
                instance_rows[p] = row + 1
    return (
        panoptic, instance_rows, segment, ids[:rows].copy(), seg_classes[:rows].copy(),
        seg_centers[:rows].copy(), seg_pixels[:rows].copy(),
    )  # fmt: skip


@njit(cache=True, nogil=True)
def _scores(
    prob_sum: np.ndarray, areas: np.ndarray, centers: np.ndarray, center_scores: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """``segment_stats``' scores: ``[S]`` float32 mean probability of each segment's class over its
    ``areas`` (float64 division, at least one pixel), times its center's score for things
    (``centers`` ``[S]`` the center of each row, -1 for stuff) in float32."""
    scores = np.empty(prob_sum.size, dtype=np.float32)
    for s in range(prob_sum.size):
        score = np.float32(prob_sum[s] / np.float64(max(areas[s], 1)))
        if centers[s] >= 0:
            score = score * center_scores[centers[s]]
        scores[s] = score
    return scores


def segment_scores_cpu(
    prob_sum: np.ndarray, areas: np.ndarray, centers: np.ndarray, center_scores: np.ndarray
) -> np.ndarray:
    """:func:`_scores` of the merge's rows (``centers`` int64, ``center_scores`` float32)."""
    return _scores(prob_sum, np.ascontiguousarray(areas, dtype=np.int64), centers, center_scores)


def semantic_argmax_cpu(logits: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` float32 CPU logits -> ``[H, W]`` int64 argmax (``torch.argmax``'s rule)."""
    return torch.from_numpy(class_probabilities_cpu(logits, probabilities=False).argmax)


def class_probabilities_cpu(logits: torch.Tensor, *, probabilities: bool = True) -> ClassProbabilities:
    """The semantic argmax of ``[C, H, W]`` float32 CPU logits (``[H, W]`` int64, ``torch.argmax``'s
    rule) and, with ``probabilities``, what the segment measure needs to read any class's softmax
    probability at any pixel (:class:`~panoptic_ros.core.segments_cpu.ClassProbabilities`); without,
    ``top`` is empty."""
    classes, height, width = logits.shape
    values = np.ascontiguousarray(logits.numpy()).reshape(classes, height * width)
    index, _, top = argmax_and_top(values, BLOCK_PIXELS, probabilities)
    return ClassProbabilities(values, index.reshape(height, width), top)


def find_centers_cpu(
    heat: torch.Tensor, center_threshold: float, nms_kernel: int, top_k: int | None
) -> CpuCenters:
    """``find_centers`` of an ``[H, W]`` float32 CPU heatmap, as host arrays."""
    points, scores = _centers(
        np.ascontiguousarray(heat.numpy()),
        np.float32(center_threshold),  # compared in float32, as a tensor compares with a Python float
        int(nms_kernel),
        NO_TOP_K if top_k is None else int(top_k),
    )
    return CpuCenters(points, scores)


class CpuMerge(NamedTuple):
    """:func:`merge_cpu`'s maps (``[H, W]``) and segment rows, as host arrays."""

    panoptic: np.ndarray
    instance: np.ndarray
    segment_of_pixel: np.ndarray
    ids: np.ndarray
    classes: np.ndarray
    centers: np.ndarray
    pixels: np.ndarray


def merge_cpu(
    semantic: np.ndarray,
    instance: np.ndarray,
    *,
    num_centers: int,
    is_thing: np.ndarray,
    stuff_area: int,
    label_divisor: int,
) -> CpuMerge | None:
    """``merge_segments`` on host arrays; None when an instance number reaches ``label_divisor``."""
    shape = semantic.shape
    out = _merge(
        semantic.reshape(-1), instance, int(num_centers), is_thing, int(stuff_area), int(label_divisor)
    )
    panoptic, instance_rows, segment, ids, classes, centers, pixels = out
    if ids.size == 1 and ids[0] == OVERFLOW:
        return None
    return CpuMerge(
        panoptic.reshape(shape),
        instance_rows.reshape(shape),
        segment.reshape(shape),
        ids,
        classes,
        centers,
        pixels,
    )


def compile_kernels() -> None:
    """Compile (or load from numba's cache) every loop for the fusion's types on a tiny frame, so
    that the first real frame does not pay for it."""
    logits = torch.zeros((3, 4, 4))
    logits[2] = 1.0  # class 2, a thing, everywhere
    heat = torch.zeros((4, 4))
    heat[1, 1] = 0.9
    is_thing = np.array([False, False, True])
    probabilities = class_probabilities_cpu(logits)
    semantic = probabilities.argmax
    centers = find_centers_cpu(heat, 0.1, 3, 1)
    offsets = np.zeros((2, 4, 4), dtype=np.float32)
    instance = nearest_centers_cpu(semantic, is_thing, offsets, centers.points)
    merged = merge_cpu(semantic, instance, num_centers=1, is_thing=is_thing, stuff_area=1, label_divisor=1000)
    if merged is not None:  # (one instance cannot overflow a divisor of 1000)
        areas, _, _, prob_sum = measure_cpu(
            merged.segment_of_pixel, merged.ids.size, None, probabilities, merged.classes
        )
        segment_scores_cpu(prob_sum, areas, merged.centers, centers.scores)
