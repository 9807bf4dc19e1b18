"""Center-offset (Panoptic-DeepLab) panoptic fusion, vectorized for any PyTorch device.

The network gives, per image, semantic logits ``[C, H, W]``, a center heatmap ``[1, H, W]`` and
center offsets ``[2, H, W]`` (channel 0 = dy along rows, channel 1 = dx along columns: the vector from
a pixel to the center of its instance). The fusion reproduces Panoptic-DeepLab's published
post-processing exactly (same segments, same panoptic ids):

1. ``semantic = argmax_c logits`` (ties to the lower class index, as :func:`torch.argmax`).
2. Centers (:func:`find_centers`): heatmap values ``<= center_threshold`` become -1; max-pool NMS
   (``nms_kernel``, stride 1, padding ``nms_kernel // 2``) keeps a pixel only where it equals the
   pooled maximum (plateau maxima all survive); with ``top_k`` the pixels strictly above
   ``max(k-th largest value, 0)`` are kept (the smallest value when there are fewer than ``k``
   pixels), without it those ``> 0``. Centers are listed in row-major order as ``(y, x)``.
3. Grouping (:func:`group_pixels`): each thing pixel goes to the center nearest to
   ``(y + dy, x + dx)``, the distance computed exactly as ``torch.linalg.vector_norm(center -
   location, dim=-1)`` in float32 so float ties resolve identically; ties go to the lower center
   index. Only thing pixels are visited, in chunks bounded by a memory budget.
4. Merge (:func:`merge_segments`): an instance's class is the majority vote of the semantic map
   over its pixels. Ties go to the **smallest class index**, which is what ``torch.mode`` returns on
   the CPU for tied values (the published code calls ``torch.mode``). The n-th instance of class
   ``c`` in increasing center order becomes ``c * label_divisor + n``. A stuff class becomes
   ``c * label_divisor`` where its area is ``>= stuff_area``, void (-1) otherwise; thing pixels
   without an instance (no center at all) are void.
5. Statistics (:func:`segment_stats`): area, bbox, centroid and score of every segment at once.

Device syncs: a fixed number per frame (the center list, the thing-pixel list, the segment list),
never one per instance.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, VOID_PANOPTIC
from panoptic_ros.core.params import check_int, check_number, from_mapping
from panoptic_ros.core.segments import PixelFrame, as_dtype, histogram, segment_geometry
from panoptic_ros.errors import ConfigError, PanopticRosError
from panoptic_ros.fusion import center_offset_cpu as cpu

DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20
"""Default bound on the temporary memory of one grouping chunk (256 MiB)."""

# Bytes per (thing pixel, center) pair in one grouping chunk: the float32 difference vector (2 x 4)
# and its float32 norm.
_BYTES_PER_PAIR = 12
# Bytes per thing pixel in one chunk beside the pairs: its location, index and argmin result.
_BYTES_PER_PIXEL = 32


GroupingStrategy = Literal["auto", "chunked", "per_center", "kdtree"]
#: From this many centers on, ``auto`` may group on the CPU with the k-d tree (its cost hardly grows with
#: the centers; ``benchmarks/bench_grouping.py``)
KDTREE_FROM_CENTERS = 8
#: ... and from this many (thing pixel, center) pairs; smaller problems (a map at a model's resolution)
#: are done fastest by ``chunked`` on the CPU too (a k-d tree's set-up and threads cost more there).
KDTREE_FROM_PAIRS = 4_000_000
#: Thing pixels from which the k-d tree query runs on every core.
KDTREE_THREADS_FROM_PIXELS = 200_000


class FusionInputError(PanopticRosError, ValueError):
    """Network outputs handed to a fusion function have the wrong shape, dtype or content."""


@dataclass(frozen=True)
class CenterOffsetParams:
    """Thresholds of center-offset fusion; the defaults are Panoptic-DeepLab's.

    Attributes:
        center_threshold: heatmap values must be strictly above it to become a center.
        nms_kernel: odd side of the max-pool window of the center NMS.
        top_k: keep at most the centers strictly above the k-th largest score; None keeps all > 0.
        stuff_area: a stuff class needs at least this many pixels, else it becomes void.
        label_divisor: panoptic id = class * label_divisor + instance number.
    """

    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int | None = 200
    stuff_area: int = 2048
    label_divisor: int = DEFAULT_LABEL_DIVISOR

    def __post_init__(self) -> None:
        check_number("center_threshold", self.center_threshold)
        check_int("nms_kernel", self.nms_kernel, minimum=1)
        if self.nms_kernel % 2 == 0:
            raise ConfigError(f"nms_kernel must be odd, got {self.nms_kernel}")
        if self.top_k is not None:
            check_int("top_k", self.top_k, minimum=1)
        check_int("stuff_area", self.stuff_area, minimum=0)
        check_int("label_divisor", self.label_divisor, minimum=1)
        if self.top_k is not None and self.top_k > self.label_divisor:
            raise ConfigError(
                f"top_k={self.top_k} must not exceed label_divisor={self.label_divisor}: "
                "instance numbers would overflow into the next class"
            )

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> CenterOffsetParams:
        """Defaults overridden by the fusion thresholds of a model spec.

        Args:
            spec: field name -> value, e.g. ``{"center_threshold": 0.2, "top_k": None}``.

        Raises:
            ConfigError: a key is not a field (the message lists the valid ones) or a value is bad.
        """
        return from_mapping(cls, spec, "center-offset fusion")


class CenterPoints(NamedTuple):
    """Instance centers found in a heatmap.

    Attributes:
        points: ``[K, 2]`` int64 ``(y, x)`` in row-major order.
        scores: ``[K]`` float32 heatmap value at each center.
    """

    points: torch.Tensor
    scores: torch.Tensor


class MergeResult(NamedTuple):
    """Panoptic maps and the segment list of :func:`merge_segments` (S segments).

    Segments are ordered things first (by center index), then stuff (by class index).

    Attributes:
        panoptic: ``[H, W]`` int64 panoptic ids, -1 for void.
        instance: ``[H, W]`` int32, ``1..T`` for the T thing segments, 0 elsewhere.
        segment_of_pixel: ``[H, W]`` int64 segment index of each pixel, ``S`` where void.
        segment_ids: ``[S]`` int64 panoptic id of each segment.
        segment_classes: ``[S]`` int64 class of each segment.
        segment_centers: ``[S]`` int64 index of a thing segment's center, -1 for stuff.
        segment_pixels: ``[S]`` int64 pixels of each segment in the map (None: not counted).
    """

    panoptic: torch.Tensor
    instance: torch.Tensor
    segment_of_pixel: torch.Tensor
    segment_ids: torch.Tensor
    segment_classes: torch.Tensor
    segment_centers: torch.Tensor
    segment_pixels: torch.Tensor | None = None


class SegmentStats(NamedTuple):
    """Per-segment statistics, one row per segment (S segments, same order as MergeResult).

    Attributes:
        ids: ``[S]`` int64 panoptic id.
        classes: ``[S]`` int64 class index.
        is_thing: ``[S]`` bool.
        areas: ``[S]`` int64 pixel count.
        bboxes: ``[S, 4]`` int64 ``(x, y, width, height)`` of the inclusive pixel extent.
        centroids: ``[S, 2]`` float32 ``(x, y)`` mean pixel coordinate.
        scores: ``[S]`` float32 confidence (see :func:`segment_stats`).
    """

    ids: torch.Tensor
    classes: torch.Tensor
    is_thing: torch.Tensor
    areas: torch.Tensor
    bboxes: torch.Tensor
    centroids: torch.Tensor
    scores: torch.Tensor


class CenterOffsetOutput(NamedTuple):
    """Result of :func:`fuse_center_offset`; every tensor is on the input's device.

    Attributes:
        semantic: ``[H, W]`` int64 semantic argmax.
        panoptic: ``[H, W]`` int64 ``class * label_divisor + n`` for things, ``class *
            label_divisor`` for stuff, -1 for void.
        instance: ``[H, W]`` int32 thing segment number ``1..T``, 0 for stuff and void.
        centers: ``[K, 2]`` int64 ``(y, x)`` of all centers found (row-major order).
        center_scores: ``[K]`` float32 heatmap value at each center.
        segments: per-segment statistics; thing segment ``i`` (0-based) is ``instance == i + 1``.
    """

    semantic: torch.Tensor
    panoptic: torch.Tensor
    instance: torch.Tensor
    centers: torch.Tensor
    center_scores: torch.Tensor
    segments: SegmentStats


def semantic_argmax(semantic: torch.Tensor, *, fewest_ops: bool = False) -> torch.Tensor:
    """The semantic map: ``[C, H, W]`` float logits -> ``[H, W]`` int64 argmax over C (ties to the
    lower class, NaN counts as the maximum, as :func:`torch.argmax`); an ``[H, W]`` integer map is
    returned as int64 unchanged.

    On CUDA, and with ``fewest_ops`` (a fixed count of ops, no host read), computed as
    ``max(dim=0).indices``, one op. On the CPU otherwise by equality with the maximum
    (:func:`_argmax_by_equality`), faster there.
    """
    if semantic.is_floating_point():
        if semantic.dim() != 3:
            raise FusionInputError(f"semantic logits must be [C, H, W], got shape {tuple(semantic.shape)}")
        if fewest_ops or semantic.device.type != "cpu":
            return semantic.max(dim=0).indices
        return _argmax_by_equality(semantic)
    if semantic.dim() != 2:
        raise FusionInputError(f"an integer semantic map must be [H, W], got shape {tuple(semantic.shape)}")
    return semantic.long()


def _argmax_by_equality(logits: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` -> ``[H, W]`` int64 first index of the maximum over C, on the CPU, in numpy: the
    maximum alone (a vectorized reduction), then the first class equal to it, found as the largest of
    the descending weights ``C..1`` over the classes that equal it (a small-integer reduction).
    ``max(dim=0)`` with indices costs about twice as much. Where a pixel has a NaN logit, and for types
    numpy lacks, the frame is left to ``max(dim=0)``, whose rule for NaN (its first NaN) this does not
    reproduce."""
    if logits.dtype not in (torch.float32, torch.float64):
        return logits.max(dim=0).indices
    values = logits.numpy()
    best = values.max(axis=0)
    if np.isnan(best).any():
        return logits.max(dim=0).indices
    classes = values.shape[0]
    first = ((values == best) * _descending_weights(classes)).max(axis=0)
    return torch.from_numpy(classes - first.astype(np.int64))


@functools.lru_cache(maxsize=16)
def _descending_weights(classes: int) -> np.ndarray:
    """``[C, 1, 1]`` the weights ``C, C - 1, ..., 1``, in the smallest integer type that holds C."""
    dtype = np.uint8 if classes < 256 else np.int16 if classes < 2**15 else np.int32
    return np.arange(classes, 0, -1, dtype=dtype)[:, None, None]


def find_centers(
    center_heatmap: torch.Tensor,
    *,
    center_threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
) -> CenterPoints:
    """Instance centers: threshold, max-pool NMS and top-k on a center heatmap.

    Args:
        center_heatmap: ``[1, H, W]`` or ``[H, W]`` float heatmap.
        center_threshold: values must be strictly above it.
        nms_kernel: odd max-pool window; a pixel survives where it equals the pooled maximum.
        top_k: keep the pixels strictly above ``max(k-th largest value, 0)``; None: those > 0.

    Returns:
        ``[K, 2]`` int64 ``(y, x)`` centers in row-major order and their ``[K]`` float32 scores.
        One device sync (the number of centers).
    """
    heat = _heatmap_2d(center_heatmap)
    if heat.device.type != "cuda":
        return _centers_at_candidates(heat, center_threshold, nms_kernel, top_k)
    # CUDA: dense max-pool (few launches)
    kept = torch.where(heat > center_threshold, heat, torch.full_like(heat, -1.0))
    kept = _nms_dense(kept, nms_kernel)
    if top_k is None or kept.numel() == 0:
        floor = torch.zeros((), dtype=kept.dtype, device=kept.device)
    else:
        flat = kept.reshape(-1)
        floor = torch.topk(flat, min(top_k, flat.numel()), sorted=True).values[-1].clamp(min=0)
    points = torch.nonzero(kept > floor)
    scores = kept[points[:, 0], points[:, 1]].float()
    return CenterPoints(points, scores)


def _centers_at_candidates(
    heat: torch.Tensor, center_threshold: float, kernel: int, top_k: int | None
) -> CenterPoints:
    """:func:`find_centers` on the CPU, computed only at the pixels above the threshold (a few
    thousand of a frame's pixels; one pass over the map to find them). Two host reads (``nonzero``).

    A candidate survives the NMS where it equals the maximum of the *raw* heatmap over its window:
    a neighbour above it is above the threshold too, so the thresholded map has the same maximum
    there (NaN neighbours count as below). Window pixels outside the image are clamped to the border,
    which lies in the window. The top-k floor is the k-th largest positive survivor (0 with fewer
    than k), as on the dense map.
    """
    height, width = heat.shape
    flat = heat.reshape(-1)
    candidates = torch.nonzero(flat > center_threshold).squeeze(1)  # row-major, as nonzero of the map
    count = candidates.numel()
    values = flat[candidates]
    half = kernel // 2
    steps = torch.arange(-half, half + 1)
    rows = torch.div(candidates, width, rounding_mode="floor")
    near_rows = (rows[:, None] + steps[None, :]).clamp_(0, height - 1) * width
    near_cols = ((candidates - rows * width)[:, None] + steps[None, :]).clamp_(0, width - 1)
    near = (near_rows[:, :, None] + near_cols[:, None, :]).reshape(-1)
    window = flat.index_select(0, near).view(count, kernel * kernel)
    survives = values >= window.nan_to_num(nan=-math.inf).amax(dim=1)
    floor = torch.zeros((), dtype=heat.dtype)
    k = min(top_k, heat.numel()) if top_k is not None else 0
    if top_k is not None and 0 < k <= count:
        peaks = torch.where(survives & (values > 0), values, -math.inf)
        floor = torch.topk(peaks, k, sorted=True).values[-1].clamp(min=0)  # -inf: fewer than k
    chosen = torch.nonzero(survives & (values > floor)).squeeze(1)
    kept, scores = candidates[chosen], values[chosen]
    kept_rows = torch.div(kept, width, rounding_mode="floor")
    return CenterPoints(torch.stack((kept_rows, kept - kept_rows * width), dim=1), scores.float())


def _nms_dense(kept: torch.Tensor, kernel: int) -> torch.Tensor:
    """Keep values equal to their ``kernel x kernel`` window maximum, else -1 (max-pool; few launches)."""
    # a k x k max is a 1 x k max of a k x 1 max: the same values, at 2k instead of k^2 comparisons
    half = kernel // 2
    pooled = F.max_pool2d(kept[None, None], kernel_size=(kernel, 1), stride=1, padding=(half, 0))
    pooled = F.max_pool2d(pooled, kernel_size=(1, kernel), stride=1, padding=(0, half))[0, 0]
    return torch.where(kept == pooled, kept, -1.0)


def _heatmap_2d(center_heatmap: torch.Tensor) -> torch.Tensor:
    if center_heatmap.dim() == 3 and center_heatmap.shape[0] == 1:
        center_heatmap = center_heatmap[0]
    if center_heatmap.dim() != 2 or not center_heatmap.is_floating_point():
        raise FusionInputError(
            f"center heatmap must be a float [1, H, W] or [H, W] tensor, got {center_heatmap.dtype} "
            f"of shape {tuple(center_heatmap.shape)}"
        )
    return center_heatmap


def grouping_chunk_size(num_centers: int, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES) -> int:
    """How many thing pixels one grouping chunk holds so that its temporaries (a float32 difference
    vector and distance per pixel and center) stay within ``memory_budget_bytes`` (at least 1)."""
    per_pixel = num_centers * _BYTES_PER_PAIR + _BYTES_PER_PIXEL
    return max(1, memory_budget_bytes // per_pixel)


def group_pixels(
    thing_mask: torch.Tensor,
    offsets: torch.Tensor,
    centers: torch.Tensor,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    strategy: GroupingStrategy = "auto",
) -> torch.Tensor:
    """Assign each thing pixel to the nearest center after shifting it by its offset.

    Args:
        thing_mask: ``[H, W]`` bool, the pixels whose semantic class is a thing.
        offsets: ``[2, H, W]`` float, channel 0 = dy (rows), channel 1 = dx (columns).
        centers: ``[K, 2]`` int ``(y, x)``.
        memory_budget_bytes: bound on one chunk's temporaries (see :func:`grouping_chunk_size`).
        strategy: ``chunked`` computes all pixel-to-center distances of a chunk of pixels at once
            (few kernel launches: best on CUDA; on the CPU as squared distances, near-ties settled by
            ``vector_norm``); ``per_center`` loops over the centers keeping a
            running minimum (no ``[pixels, centers]`` temporaries); ``kdtree`` (CPU) finds each
            pixel's few nearest centers in a k-d tree over the centers, so its cost hardly grows
            with their number (best on the CPU); ``auto``: ``chunked`` on CUDA, on the CPU
            ``kdtree`` from :data:`KDTREE_FROM_CENTERS` centers and :data:`KDTREE_FROM_PAIRS`
            (pixel, center) pairs, else ``chunked``. All give the same assignment.

    Returns:
        ``[H, W]`` int64: ``center index + 1`` on thing pixels, 0 elsewhere (all 0 without centers).
        The distance is ``vector_norm(center - (y + dy, x + dx))`` in float32, ties to the lower
        center index. One device sync (the number of thing pixels); none inside the chunk loop.
    """
    height, width = thing_mask.shape
    if offsets.shape != (2, height, width):
        raise FusionInputError(f"offsets must be [2, {height}, {width}], got shape {tuple(offsets.shape)}")
    instance = torch.zeros(height * width, dtype=torch.int64, device=thing_mask.device)
    num_centers = centers.shape[0]
    if num_centers == 0:
        return instance.view(height, width)
    pixels = torch.nonzero(thing_mask.reshape(-1)).squeeze(1)
    num_pixels = pixels.numel()
    if num_pixels == 0:
        return instance.view(height, width)
    rows = torch.div(pixels, width, rounding_mode="floor")
    cols = pixels - rows * width
    flat_offsets = offsets.reshape(2, height * width).float()
    locations = torch.stack(
        (
            rows.float() + flat_offsets[0].index_select(0, pixels),
            cols.float() + flat_offsets[1].index_select(0, pixels),
        ),
        dim=1,
    )  # [P, 2]
    # nonzero() may return column-major points; a contiguous last axis keeps the norm on its fast path
    center_points = centers.float().contiguous()[None]  # [1, K, 2]
    if strategy == "auto":
        if thing_mask.device.type == "cuda":
            strategy = "chunked"
        else:
            large = num_centers >= KDTREE_FROM_CENTERS and num_pixels * num_centers >= KDTREE_FROM_PAIRS
            # below that the chunked search by squared distances, on one thread too (the per-center
            # loop costs 1.5x as much there, docs/BENCHMARKS.md: the node fuses on one thread)
            strategy = "kdtree" if large else "chunked"
    if strategy == "per_center":
        instance.index_copy_(0, pixels, _nearest_per_center(center_points[0], locations) + 1)
        return instance.view(height, width)
    if strategy == "kdtree":
        instance.index_copy_(0, pixels, _nearest_kdtree(center_points[0], locations) + 1)
        return instance.view(height, width)
    if strategy != "chunked":
        raise FusionInputError(
            f"grouping strategy {strategy!r} must be 'auto', 'chunked', 'per_center' or 'kdtree'"
        )
    chunk = grouping_chunk_size(num_centers, memory_budget_bytes)
    if thing_mask.device.type == "cpu":
        nearest = torch.empty(num_pixels, dtype=torch.int64)
        tied = torch.empty(num_pixels, dtype=torch.bool)
        for start in range(0, num_pixels, chunk):
            stop = min(start + chunk, num_pixels)
            _nearest_squared(center_points[0], locations[start:stop], nearest[start:stop], tied[start:stop])
        ties = torch.nonzero(tied).squeeze(1)  # settled as the exhaustive search settles them
        if ties.numel():
            nearest[ties] = torch.from_numpy(
                _nearest_exhaustive(center_points[0].numpy(), locations[ties].numpy(), memory_budget_bytes)
            )
        instance.index_copy_(0, pixels, nearest + 1)
        return instance.view(height, width)
    for start in range(0, num_pixels, chunk):
        stop = min(start + chunk, num_pixels)
        distance = torch.linalg.vector_norm(center_points - locations[start:stop, None, :], dim=-1)  # [B, K]
        instance[pixels[start:stop]] = distance.argmin(dim=1) + 1
    return instance.view(height, width)


def _nearest_squared(
    centers: torch.Tensor, locations: torch.Tensor, nearest: torch.Tensor, tied: torch.Tensor
) -> None:
    """Into ``nearest`` [P]: the index of the nearest of ``centers`` [K, 2] for each of ``locations``
    [P, 2] by squared float32 distances (a few elementwise passes over ``[P, K]``, cheaper on the CPU
    than ``vector_norm`` over a last axis of two); into ``tied`` [P]: whether another center lies within
    float32 rounding of the nearest, where ``vector_norm`` must settle the pixel (ties to the lower index)."""
    dy = centers[None, :, 0] - locations[:, 0:1]  # [P, K]
    dx = centers[None, :, 1] - locations[:, 1:2]
    squared = dy.mul_(dy).addcmul_(dx, dx)
    best, index = squared.min(dim=1)
    nearest.copy_(index)
    if squared.shape[1] < 2:
        tied.zero_()
        return
    runner_up = squared.scatter_(1, index[:, None], math.inf).amin(dim=1)  # the second nearest
    root = best.sqrt()
    torch.le(runner_up, (root + 1e-5 * root.clamp(min=1.0)).square(), out=tied)


def _nearest_kdtree(centers: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of ``centers`` [K, 2] for each of ``locations`` [P, 2] (CPU), by a k-d tree
    over the centers (float64). Where the two nearest are within float32 rounding of each other (ties,
    e.g. half-integer locations between integer centers), the pixel is settled as the other strategies
    settle it: float32 ``vector_norm`` to every center, ties to the lower index."""
    from scipy.spatial import cKDTree

    if centers.device.type != "cpu":
        raise FusionInputError("grouping strategy 'kdtree' runs on the CPU; use 'chunked' on CUDA")
    if centers.shape[0] == 1:
        return torch.zeros(locations.shape[0], dtype=torch.int64)
    workers = -1 if locations.shape[0] >= KDTREE_THREADS_FROM_PIXELS else 1
    distance, found = cKDTree(centers.double().numpy()).query(locations.numpy(), k=2, workers=workers)
    nearest = torch.from_numpy(found[:, 0].astype(np.int64))
    close = np.flatnonzero(distance[:, 1] - distance[:, 0] <= 1e-5 * np.maximum(distance[:, 0], 1.0))
    nearest[torch.from_numpy(close)] = torch.from_numpy(
        _nearest_exhaustive(centers.numpy(), locations.numpy()[close])
    )
    return nearest


def _nearest_exhaustive(
    centers: np.ndarray, locations: np.ndarray, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES
) -> np.ndarray:
    """Index of the nearest of ``centers`` [K, 2] for each of ``locations`` [P, 2] (float32 host arrays,
    K >= 1): ``torch.linalg.vector_norm`` of ``center - location`` to every center, ties to the lower
    index, as the chunked search computes it. For the few near-tied pixels of the faster CPU searches:
    one PyTorch op per chunk of pixels whatever the number of centers, and one also when there are no
    pixels, so a frame's op count does not depend on whether it has ties."""
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    locations = np.ascontiguousarray(locations, dtype=np.float32)
    nearest = np.empty(locations.shape[0], dtype=np.int64)
    chunk = grouping_chunk_size(centers.shape[0], memory_budget_bytes)
    for start in range(0, max(locations.shape[0], 1), chunk):
        stop = min(start + chunk, locations.shape[0])
        # float32 subtraction is correctly rounded in numpy as in PyTorch: the same differences
        difference = torch.from_numpy(centers[None] - locations[start:stop, None, :])  # [B, K, 2]
        distance = torch.linalg.vector_norm(difference, dim=-1).numpy()
        nearest[start:stop] = distance.argmin(axis=1)  # the first minimum, as torch.argmin
    return nearest


def _nearest_per_center(centers: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of ``centers`` [K, 2] for each of ``locations`` [P, 2]: the same
    ``vector_norm`` per pair as the chunked path, a running minimum over the centers in index order,
    replaced only when strictly smaller (ties stay with the lower index, as ``argmin``). No sync."""
    best = torch.full((locations.shape[0],), float("inf"), device=locations.device)
    nearest = torch.zeros(locations.shape[0], dtype=torch.int64, device=locations.device)
    difference = torch.empty_like(locations)
    distance = torch.empty_like(best)
    closer = torch.empty(locations.shape[0], dtype=torch.bool, device=locations.device)
    for k in range(centers.shape[0]):
        torch.sub(centers[k], locations, out=difference)
        torch.linalg.vector_norm(difference, dim=-1, out=distance)
        torch.lt(distance, best, out=closer)
        torch.minimum(best, distance, out=best)
        nearest.masked_fill_(closer, k)
    return nearest


def merge_segments(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    num_centers: int,
    is_thing_class: torch.Tensor,
    *,
    stuff_area: int = 2048,
    label_divisor: int = DEFAULT_LABEL_DIVISOR,
    fixed_rows: bool = False,
) -> MergeResult:
    """Majority-vote the class of every instance and build the panoptic map and segment list.

    Args:
        semantic: ``[H, W]`` int64 semantic map, values in ``[0, C)``.
        instance: ``[H, W]`` int64 from :func:`group_pixels` (``center index + 1``, 0 = none).
        num_centers: K, the number of centers.
        is_thing_class: ``[C]`` bool, True for thing classes.
        stuff_area: minimum pixel count of a stuff segment.
        label_divisor: multiplier of the class in panoptic ids.
        fixed_rows: give ``K + C`` segment rows whatever the frame holds (the S segments first, as
            without it; then padding rows: id -1, class 0, center -1, no pixels) and make no device
            sync, so the shapes do not depend on the data (CUDA graphs). Void pixels then map to
            segment ``K + C``.

    Returns:
        :class:`MergeResult`. An instance's class is the most frequent semantic class over its
        pixels, ties to the smallest class index (CPU ``torch.mode``'s rule). One device sync (the
        segment count; none with ``fixed_rows``), plus one more only when ``num_centers >=
        label_divisor``.
    """
    height, width = semantic.shape
    num_classes = is_thing_class.numel()
    keys = _merge_keys(num_centers, num_classes, label_divisor, semantic.device)
    code = (instance * num_classes + semantic).reshape(-1)  # each pixel's (instance, class) pair
    votes = histogram(code, (num_centers + 1) * num_classes)  # [(K + 1) C]: row k + 1 instance k's
    # votes are counts: the largest is positive exactly where the instance has pixels; its index is
    # the first maximum, the smallest tied class
    most, instance_class = votes.view(num_centers + 1, num_classes)[1:].max(dim=1, keepdim=True)  # [K, 1]
    present = most > 0
    # n-th present instance of its class, in center order: 1, 2, ... (a bool cumsum counts in int64)
    number = ((instance_class == keys.classes) & present).cumsum(dim=0).gather(1, instance_class)
    if num_centers >= label_divisor and bool((number >= label_divisor).any()):
        raise ConfigError(
            f"a class has {label_divisor} or more instances, which does not fit "
            f"label_divisor={label_divisor}; set top_k or a larger label_divisor"
        )
    # stuff: the classes that are not things, with at least stuff_area (and one) pixels
    stuff_kept = votes[:num_classes].masked_fill(is_thing_class, 0) >= max(stuff_area, 1)

    # segment rows: the kept keys (things by center, then stuff by class) in order; the key of each row
    flags = torch.cat((present.view(-1), stuff_kept))  # [K + C]
    num_keys = flags.numel()
    row_or_none = torch.where(flags, flags.cumsum(dim=0) - 1, num_keys)  # key -> its row
    # key num_keys: padding (and the dump of "none")
    key_of_row = torch.scatter(keys.padding_rows, 0, row_or_none, keys.keys)
    num_segments = num_keys if fixed_rows else int(flags.sum())  # fixed: padding rows past the kept keys
    # each key's panoptic id, class and center as the columns of [K + C + 1, 3] (thing k's first, then
    # stuff class c's, then padding's), and each row's
    things = torch.cat((number.add(instance_class, alpha=label_divisor), instance_class, keys.things), dim=1)
    of_key = torch.cat((things, keys.stuff_columns)).t()  # [3, K + C + 1]
    segment_ids, segment_classes, segment_centers = of_key.index_select(1, key_of_row[:num_segments]).unbind()
    segment_of_key = row_or_none if fixed_rows else row_or_none.clamp(max=num_segments)  # none -> S
    # each (instance, class) pair's segment, panoptic id and thing number (row + 1, 0 if no thing),
    # gathered at every pixel at once
    of_code = torch.stack(
        (
            segment_of_key,
            torch.cat((segment_ids, keys.void)).index_select(0, segment_of_key),
            # an absent thing's pairs have no pixels: what its key holds is never gathered
            torch.where(keys.thing_keys, row_or_none + 1, 0),
        )
    ).index_select(1, keys.key_of_code)  # [3, (K + 1) C]
    # the full-map gather by index_select (about twice as fast as advanced indexing on the CPU)
    segment_of_pixel, panoptic, thing_number = of_code.index_select(1, code).view(3, height, width).unbind()
    return MergeResult(
        panoptic=panoptic,
        instance=thing_number.to(torch.int32),
        segment_of_pixel=segment_of_pixel,
        segment_ids=segment_ids,
        segment_classes=segment_classes,
        segment_centers=segment_centers,
        # each pair's votes counted to its segment: the pixels of every segment without a pass over the map
        segment_pixels=torch.zeros(num_segments + 1, dtype=torch.int64, device=semantic.device).index_add_(
            0, of_code[0], votes
        )[:num_segments],
    )


class _MergeKeys(NamedTuple):
    """Constant tables of :func:`merge_segments` for K centers and C classes (made once).

    A key is a segment candidate: thing ``k`` (center ``k``) for ``k < K``, stuff class ``c`` as key
    ``K + c``, and key ``K + C`` stands for padding.
    """

    classes: torch.Tensor  # [1, C] class indices
    keys: torch.Tensor  # [K + C] 0..K+C-1
    key_of_code: torch.Tensor  # [(K + 1) C] each (instance, class) pair's key: thing k for instance
    # k + 1, the stuff of its class for instance 0
    thing_keys: torch.Tensor  # [K + C] bool, True for the thing keys
    things: torch.Tensor  # [K, 1] k: the center of thing key k
    stuff_columns: torch.Tensor  # [C + 1, 3] (panoptic id, class, center) of the stuff keys (c *
    # label_divisor, c, -1), then of padding (-1, 0, -1)
    padding_rows: torch.Tensor  # [K + C + 1] K + C: the padding key in every row
    void: torch.Tensor  # [1] the void panoptic id


@functools.lru_cache(maxsize=64)
def _merge_keys(num_centers: int, num_classes: int, label_divisor: int, device: torch.device) -> _MergeKeys:
    classes = torch.arange(num_classes, device=device)
    things = torch.arange(num_centers, device=device)
    num_keys = num_centers + num_classes
    stuff = torch.stack((classes * label_divisor, classes, torch.full_like(classes, -1)), dim=1)
    padding = torch.full((1, 3), -1, dtype=torch.int64, device=device)  # made on the device: no host copy
    padding[0, 1] = 0
    return _MergeKeys(
        classes=classes[None, :],
        keys=torch.arange(num_keys, device=device),
        key_of_code=torch.cat((num_centers + classes, things.repeat_interleave(num_classes))),
        thing_keys=torch.arange(num_keys, device=device) < num_centers,
        things=things[:, None],
        stuff_columns=torch.cat((stuff, padding)),
        padding_rows=torch.full((num_keys + 1,), num_keys, dtype=torch.int64, device=device),
        void=torch.full((1,), VOID_PANOPTIC, dtype=torch.int64, device=device),
    )


def segment_stats(
    merged: MergeResult,
    *,
    semantic_logits: torch.Tensor | None = None,
    center_scores: torch.Tensor | None = None,
    frame: PixelFrame | None = None,
    fixed_shapes: bool = False,
) -> SegmentStats:
    """Area, bbox, centroid and score of every segment at once, by histograms on the device.

    Args:
        merged: the output of :func:`merge_segments` (S segments).
        semantic_logits: ``[C, H, W]`` float logits, or None.
        center_scores: ``[K]`` heatmap value at each center, or None (treated as 1).
        frame: measure the geometry in the camera frame the map is resampled into (see
            :mod:`panoptic_ros.core.segments`); None: in the map's own pixels.
        fixed_shapes: no host read on any device (the geometry over every pixel).

    Returns:
        :class:`SegmentStats`. The score is ``p * h``: ``p`` the mean softmax probability of the
        segment's class over its pixels at the map's resolution (1 without logits), ``h`` the heatmap
        value at a thing's center (1 for stuff). Exact integer areas, extents and coordinate sums; no
        device sync on CUDA (on the CPU one host read, unless ``fixed_shapes``).
    """
    segment_of_pixel = merged.segment_of_pixel
    device = segment_of_pixel.device
    num_segments = merged.segment_ids.numel()
    geometry = segment_geometry(segment_of_pixel, num_segments, frame, fixed_shapes=fixed_shapes)
    is_thing = merged.segment_centers >= 0
    if semantic_logits is not None and num_segments > 0:
        pixel_segment = segment_of_pixel.reshape(-1)
        if frame is None:
            own_areas = geometry.areas
        elif merged.segment_pixels is not None:
            own_areas = merged.segment_pixels
        else:
            own_areas = histogram(pixel_segment, num_segments + 1)[:-1]
        logits = as_dtype(semantic_logits, torch.float32).reshape(semantic_logits.shape[0], -1)
        # void pixels (segment S) take any class: their probabilities go to the dropped bin S
        classes = merged.segment_classes.index_select(0, pixel_segment.clamp(max=num_segments - 1))
        prob = torch.softmax(logits, dim=0).gather(0, classes[None])[0]
        prob_sum = torch.zeros(num_segments + 1, dtype=torch.float64, device=device)
        prob_sum.index_add_(0, pixel_segment, prob.double())
        scores = (prob_sum[:num_segments] / own_areas.clamp(min=1)).float()  # int64 areas: float64 exactly
    else:
        scores = torch.ones(num_segments, dtype=torch.float32, device=device)
    if center_scores is not None and center_scores.numel() > 0:
        center_value = as_dtype(center_scores, torch.float32)[merged.segment_centers.clamp(min=0)]
        scores = torch.where(is_thing, scores * center_value, scores)
    return SegmentStats(
        ids=merged.segment_ids,
        classes=merged.segment_classes,
        is_thing=is_thing,
        areas=geometry.areas,
        bboxes=geometry.bboxes,
        centroids=geometry.centroids,
        scores=scores,
    )


def thing_class_mask(
    thing_classes: Sequence[int] | torch.Tensor, num_classes: int, device: torch.device | str
) -> torch.Tensor:
    """``[num_classes]`` bool on ``device``, True at each thing class index.

    ``thing_classes`` lists thing class indices, or is itself a ``[num_classes]`` bool mask (a bool
    tensor is always read as a mask, never as indices). Cached per (classes, C, device), so the
    host-to-device copy (a sync on CUDA) happens once, not once per frame; pass a tuple of ints to
    avoid reading a device tensor back every frame. Raises :class:`FusionInputError` for classes
    outside ``[0, num_classes)`` or a mask of the wrong length.
    """
    if isinstance(thing_classes, torch.Tensor) and thing_classes.dtype == torch.bool:
        if thing_classes.numel() != num_classes:
            raise FusionInputError(
                f"a bool thing_classes mask must have num_classes={num_classes} entries, "
                f"got {thing_classes.numel()}"
            )
        things = tuple(int(c) for c in torch.nonzero(thing_classes.reshape(-1)).reshape(-1).tolist())
    elif isinstance(thing_classes, torch.Tensor):
        things = tuple(int(c) for c in thing_classes.reshape(-1).tolist())
    else:
        things = tuple(int(c) for c in thing_classes)
    if any(c < 0 or c >= num_classes for c in things):
        raise FusionInputError(f"thing_classes {list(things)} must lie in [0, {num_classes})")
    return _cached_thing_mask(things, num_classes, torch.device(device))


@functools.lru_cache(maxsize=64)
def _cached_thing_mask(things: tuple[int, ...], num_classes: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(num_classes, dtype=torch.bool)
    mask[list(things)] = True
    return mask.to(device)


def _host_thing_mask(thing_classes: Sequence[int] | torch.Tensor, num_classes: int) -> np.ndarray:
    """:func:`thing_class_mask` on the host as a numpy view, kept per (classes, C) for a tuple of
    classes (what the model families pass) so that a frame looks it up once. Shared: not to be
    changed (left writable: the compiled loops are compiled for writable arrays)."""
    if isinstance(thing_classes, tuple):
        return _cached_host_thing_mask(thing_classes, num_classes)
    return thing_class_mask(thing_classes, num_classes, "cpu").numpy()


@functools.lru_cache(maxsize=64)
def _cached_host_thing_mask(thing_classes: tuple[int, ...], num_classes: int) -> np.ndarray:
    return thing_class_mask(thing_classes, num_classes, "cpu").numpy()


def checked_inputs(
    semantic: torch.Tensor, center_heatmap: torch.Tensor, offsets: torch.Tensor, *, fewest_ops: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The semantic map ``[H, W]``, the heatmap ``[H, W]`` and the logits (None for an integer
    semantic map) of one image's outputs, after checking that their shapes agree and the offsets are
    floating point (:class:`FusionInputError` otherwise). ``fewest_ops``: see :func:`semantic_argmax`."""
    semantic_map = semantic_argmax(semantic, fewest_ops=fewest_ops)
    height, width = semantic_map.shape
    heat = _heatmap_2d(center_heatmap)
    if heat.shape != (height, width) or offsets.shape != (2, height, width):
        raise FusionInputError(
            f"shapes disagree: semantic {tuple(semantic.shape)}, center heatmap "
            f"{tuple(center_heatmap.shape)}, offsets {tuple(offsets.shape)} (expected [2, {height}, {width}])"
        )
    if not offsets.is_floating_point():
        raise FusionInputError(f"offsets must be floating point, got {offsets.dtype}")
    return semantic_map, heat, semantic if semantic.is_floating_point() else None


def fuse_center_offset(
    semantic: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: CenterOffsetParams | None = None,
    *,
    num_classes: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    frame: PixelFrame | None = None,
    kernels: bool | None = None,
) -> CenterOffsetOutput:
    """Panoptic-DeepLab fusion of one image's network outputs, on their device.

    Args:
        semantic: ``[C, H, W]`` float logits, or an ``[H, W]`` integer semantic argmax.
        center_heatmap: ``[1, H, W]`` or ``[H, W]`` float.
        offsets: ``[2, H, W]`` float, channel 0 = dy (rows), channel 1 = dx (columns).
        thing_classes: the class indices that are things.
        params: thresholds; Panoptic-DeepLab's defaults when None.
        num_classes: C for an integer semantic map (default: one more than its largest value or
            thing class, which costs a sync); ignored for logits.
        memory_budget_bytes: bound on the grouping chunk's temporaries.
        frame: measure the segments in the camera frame the maps are resampled into (see
            :mod:`panoptic_ros.core.segments`); None: at the outputs' resolution.
        kernels: fuse with the compiled CPU loops of :mod:`panoptic_ros.fusion.center_offset_cpu`
            (the same results); None: wherever they apply (float32 logits, heatmap and offsets on the
            CPU); True: there, refused elsewhere.

    Returns:
        :class:`CenterOffsetOutput`. Without logits the probability part of every score is 1.
        For batched ``[N, ...]`` outputs use :func:`fuse_center_offset_batch`.
    """
    params = params if params is not None else CenterOffsetParams()
    on_kernels = all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in (semantic, center_heatmap, offsets)
    )
    if kernels and not on_kernels:
        raise FusionInputError("the compiled fusion takes float32 logits, heatmap and offsets on the CPU")
    if on_kernels and kernels is not False:
        return _fuse_on_kernels(semantic, center_heatmap, offsets, thing_classes, params, frame=frame)
    semantic_map, heat, logits = checked_inputs(semantic, center_heatmap, offsets)
    if logits is not None:
        classes = logits.shape[0]
    elif num_classes is not None:
        classes = num_classes
    else:
        things = [int(c) for c in torch.as_tensor(thing_classes).reshape(-1).tolist()]
        largest = int(semantic_map.max()) if semantic_map.numel() else -1
        classes = max([largest, *things]) + 1
    is_thing_class = thing_class_mask(thing_classes, classes, semantic_map.device)

    centers = find_centers(
        heat, center_threshold=params.center_threshold, nms_kernel=params.nms_kernel, top_k=params.top_k
    )
    thing_mask = is_thing_class.index_select(0, semantic_map.reshape(-1)).view(semantic_map.shape)
    instance = group_pixels(thing_mask, offsets, centers.points, memory_budget_bytes=memory_budget_bytes)
    merged = merge_segments(
        semantic_map,
        instance,
        centers.points.shape[0],
        is_thing_class,
        stuff_area=params.stuff_area,
        label_divisor=params.label_divisor,
    )
    stats = segment_stats(merged, semantic_logits=logits, center_scores=centers.scores, frame=frame)
    return CenterOffsetOutput(
        semantic=semantic_map,
        panoptic=merged.panoptic,
        instance=merged.instance,
        centers=centers.points,
        center_scores=centers.scores,
        segments=stats,
    )


def _fuse_on_kernels(
    logits: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: CenterOffsetParams,
    *,
    frame: PixelFrame | None,
) -> CenterOffsetOutput:
    """:func:`fuse_center_offset` by the compiled CPU loops (float32 logits ``[C, H, W]``): each step a
    loop with the tensor step's rule (the scores' softmax probabilities to float32 rounding, the rest
    bit for bit); the k-d tree groups where ``auto`` grouping would choose it."""
    if logits.dim() != 3:
        raise FusionInputError(f"semantic logits must be [C, H, W], got shape {tuple(logits.shape)}")
    classes, height, width = logits.shape
    heat = _heatmap_2d(center_heatmap)
    if heat.shape != (height, width) or offsets.shape != (2, height, width):  # checked_inputs' rule
        checked_inputs(logits, center_heatmap, offsets)
    probabilities = cpu.class_probabilities_cpu(logits)
    semantic_map = torch.from_numpy(probabilities.argmax)
    is_thing = _host_thing_mask(thing_classes, classes)
    centers = cpu.find_centers_cpu(heat, params.center_threshold, params.nms_kernel, params.top_k)
    semantic_host = semantic_map.numpy()
    num_centers = centers.points.shape[0]
    if num_centers == 0:
        instance = np.zeros(height * width, dtype=np.int64)
    elif (
        num_centers >= KDTREE_FROM_CENTERS
        and num_centers * height * width >= KDTREE_FROM_PAIRS  # else no count of thing pixels can reach it
        and num_centers * int(np.count_nonzero(is_thing[semantic_host])) >= KDTREE_FROM_PAIRS
    ):
        thing_mask = torch.from_numpy(is_thing[semantic_host])
        instance = group_pixels(thing_mask, offsets, torch.from_numpy(centers.points), strategy="kdtree")
        instance = instance.numpy().reshape(-1)
    else:
        instance = cpu.nearest_centers_cpu(
            semantic_host, is_thing, np.ascontiguousarray(offsets.numpy()), centers.points
        )
    merged = cpu.merge_cpu(
        semantic_host,
        instance,
        num_centers=num_centers,
        is_thing=is_thing,
        stuff_area=params.stuff_area,
        label_divisor=params.label_divisor,
    )
    if merged is None:
        raise ConfigError(
            f"a class has {params.label_divisor} or more instances, which does not fit "
            f"label_divisor={params.label_divisor}; set top_k or a larger label_divisor"
        )
    areas, bboxes, centroids, prob_sum = cpu.measure_cpu(
        merged.segment_of_pixel, merged.ids.size, frame, probabilities, merged.classes
    )
    own_areas = merged.pixels if frame is not None else areas
    scores = cpu.segment_scores_cpu(prob_sum, own_areas, merged.centers, centers.scores)
    is_thing_row = merged.centers >= 0
    return CenterOffsetOutput(
        semantic=semantic_map,
        panoptic=torch.from_numpy(merged.panoptic),
        instance=torch.from_numpy(merged.instance),
        centers=torch.from_numpy(centers.points),
        center_scores=torch.from_numpy(centers.scores),
        segments=SegmentStats(
            ids=torch.from_numpy(merged.ids),
            classes=torch.from_numpy(merged.classes),
            is_thing=torch.from_numpy(is_thing_row),
            areas=torch.from_numpy(areas),
            bboxes=torch.from_numpy(bboxes),
            centroids=torch.from_numpy(centroids),
            scores=torch.from_numpy(scores),
        ),
    )


def fuse_center_offset_batch(
    semantic: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: CenterOffsetParams | None = None,
    *,
    num_classes: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> list[CenterOffsetOutput]:
    """:func:`fuse_center_offset` for each image of a batch.

    Args:
        semantic: ``[N, C, H, W]`` float logits or ``[N, H, W]`` integer argmax.
        center_heatmap: ``[N, 1, H, W]`` or ``[N, H, W]``.
        offsets: ``[N, 2, H, W]``.

    Returns:
        one :class:`CenterOffsetOutput` per image, in batch order.
    """
    batch = semantic.shape[0] if semantic.dim() > 0 else 0
    if center_heatmap.shape[:1] != (batch,) or offsets.shape[:1] != (batch,) or offsets.dim() != 4:
        raise FusionInputError(
            f"batch shapes disagree: semantic {tuple(semantic.shape)}, center heatmap "
            f"{tuple(center_heatmap.shape)}, offsets {tuple(offsets.shape)}"
        )
    return [
        fuse_center_offset(
            semantic[i],
            center_heatmap[i],
            offsets[i],
            thing_classes,
            params,
            num_classes=num_classes,
            memory_budget_bytes=memory_budget_bytes,
        )
        for i in range(batch)
    ]
