"""Center-offset fusion with fixed shapes: no device sync and no tensor whose shape depends on the data.

:func:`fuse_center_offset_fixed` gives the segments of :func:`~panoptic_ros.fusion.center_offset.
fuse_center_offset` (same maps, same ids, same rows in the same order), but every tensor it makes has a
shape fixed by the input size and a capacity of ``K`` centers, so the whole fusion can be captured in a
CUDA graph with the network and replayed without the host looking at the data:

* centers: the dense max-pool NMS, then the ``K`` largest values (``K = top_k``; without ``top_k``,
  ``max_centers``), kept where strictly above the floor of the reference rule and put in row-major
  order in ``K`` slots, the kept ones first. Without ``top_k``, centers beyond the ``K`` slots are
  left out (the highest ``K`` stay) and counted in :attr:`FixedCenters.dropped`; with ``top_k`` the
  reference itself keeps at most ``K``, so nothing is ever dropped.
* grouping: every pixel's distance to all ``K`` slots (empty slots infinitely far), in chunks of a
  size fixed by the memory budget, kept on thing pixels.
* merge and statistics: ``K + C`` segment rows (``C`` classes), the frame's segments first and
  padding rows after them (id -1, no pixels, area 0).

It does more arithmetic than the CPU's data-dependent path (distances to every pixel and slot), which
is why :class:`~panoptic_ros.fusion.families.CenterOffsetFusion` uses it where kernel launches and
device syncs are what cost (CUDA) and the data-dependent path on the CPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from panoptic_ros.core.segments import PixelFrame, as_dtype
from panoptic_ros.fusion.center_offset import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    CenterOffsetParams,
    FusionInputError,
    SegmentStats,
    _heatmap_2d,
    checked_inputs,
    grouping_chunk_size,
    merge_segments,
    segment_stats,
    thing_class_mask,
)

#: Center slots without ``top_k`` (the reference would keep every center above the threshold).
DEFAULT_MAX_CENTERS = 200


class FixedCenters(NamedTuple):
    """``K`` center slots; the centers found fill the first ones, in row-major order.

    Attributes:
        points: ``[K, 2]`` int64 ``(y, x)``; ``(-1, -1)`` in an empty slot.
        scores: ``[K]`` float32 heatmap value at each center, 0 in an empty slot.
        valid: ``[K]`` bool, which slots hold a center.
        dropped: ``[]`` int64, centers above the threshold left out for lack of slots (only possible
            without ``top_k``).
        distant: ``[K, 2]`` float32 ``points``, but ``(inf, inf)`` in an empty slot: infinitely far
            from every pixel (the grouping's form).
    """

    points: torch.Tensor
    scores: torch.Tensor
    valid: torch.Tensor
    dropped: torch.Tensor
    distant: torch.Tensor


class FixedCenterOffsetOutput(NamedTuple):
    """Result of :func:`fuse_center_offset_fixed`, every tensor on the input's device.

    Attributes:
        semantic: ``[H, W]`` int64 semantic argmax.
        panoptic: ``[H, W]`` int64, as :class:`~panoptic_ros.fusion.center_offset.CenterOffsetOutput`.
        instance: ``[H, W]`` int32 thing segment number ``1..T``, 0 for stuff and void.
        centers: the ``K`` center slots.
        segments: ``K + C`` rows; the frame's S segments first (as the data-dependent fusion lists
            them), then padding rows (id -1, class 0, not a thing, area 0, score 0).
    """

    semantic: torch.Tensor
    panoptic: torch.Tensor
    instance: torch.Tensor
    centers: FixedCenters
    segments: SegmentStats


def center_slots(top_k: int | None, max_centers: int = DEFAULT_MAX_CENTERS) -> int:
    """The number of center slots ``K``: ``top_k`` when set (the reference keeps fewer), else
    ``max_centers``."""
    return top_k if top_k is not None else max_centers


def find_centers_fixed(
    center_heatmap: torch.Tensor,
    *,
    center_threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
    max_centers: int = DEFAULT_MAX_CENTERS,
) -> FixedCenters:
    """:func:`~panoptic_ros.fusion.center_offset.find_centers` into ``K`` slots (see the module
    docstring), without a device sync.

    Args:
        center_heatmap: ``[1, H, W]`` or ``[H, W]`` float heatmap.
        center_threshold, nms_kernel, top_k: as :func:`~panoptic_ros.fusion.center_offset.find_centers`.
        max_centers: slots when ``top_k`` is None.

    Returns:
        :class:`FixedCenters` with ``K = min(center_slots(top_k, max_centers), H * W)`` slots.
    """
    heat = _heatmap_2d(center_heatmap)
    height, width = heat.shape
    pixels = height * width
    slots = min(center_slots(top_k, max_centers), pixels)
    if slots == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=heat.device)
        points = empty.view(0, 2)
        return FixedCenters(points, empty.float(), empty.bool(), empty.new_zeros(()), points.float())
    flat = heat.reshape(-1)
    kept = torch.where(flat > center_threshold, flat, -1.0)
    # the NMS as one k x k max-pool (one launch; the CPU's paths pool the two axes apart)
    half = nms_kernel // 2
    pooled = F.max_pool2d(kept.view(1, 1, height, width), nms_kernel, stride=1, padding=half).view(-1)
    peaks = torch.where(kept == pooled, kept, -1.0)
    values, index = torch.topk(peaks, slots, sorted=True)
    if top_k is None:
        floor = 0.0
        dropped = ((peaks > 0).sum() - slots).clamp(min=0)
    else:  # the k-th largest value, as the reference (its pixel and any equal ones are not kept)
        floor = values[-1].clamp(min=0)
        dropped = torch.zeros((), dtype=torch.int64, device=heat.device)
    valid = values > floor
    # row-major order, the kept centers first: a slot left empty sorts last, as pixel H * W (the
    # empty slots are all alike, so their order does not matter)
    index, order = torch.sort(torch.where(valid, index, pixels))
    grid = _slot_grid(height, width, heat.device)
    return FixedCenters(
        points=grid.points.index_select(0, index),
        scores=as_dtype(torch.where(valid, values, 0.0)[order], torch.float32),
        valid=index < pixels,
        dropped=dropped,
        distant=grid.distant.index_select(0, index),
    )


class _SlotGrid(NamedTuple):
    """Every pixel's ``(y, x)`` in row-major order, then the empty slot's: ``points`` ``[H W + 1, 2]``
    int64 with ``(-1, -1)`` last, ``distant`` float32 with ``(inf, inf)`` last (24 bytes a pixel of
    the model's maps: 4.7 MB at 384x512, kept for the last few sizes)."""

    points: torch.Tensor
    distant: torch.Tensor


@functools.lru_cache(maxsize=4)
def _slot_grid(height: int, width: int, device: torch.device) -> _SlotGrid:
    pixels = _pixel_grid(height, width, device).view(2, -1).t()  # [H W, 2] (y, x), exact below 2**24
    points = torch.cat((pixels.long(), torch.full((1, 2), -1, device=device)))
    distant = torch.cat((pixels, torch.full((1, 2), math.inf, device=device)))
    return _SlotGrid(points, distant)


def group_pixels_fixed(
    thing_mask: torch.Tensor,
    offsets: torch.Tensor,
    centers: FixedCenters,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
) -> torch.Tensor:
    """:func:`~panoptic_ros.fusion.center_offset.group_pixels` over ``K`` center slots, every pixel
    visited (chunks of a size fixed by ``memory_budget_bytes`` and ``K``), no device sync.

    Returns:
        ``[H, W]`` int64: ``slot + 1`` of the nearest center on thing pixels, 0 elsewhere and
        everywhere when no slot holds a center. Distances and ties as the data-dependent grouping.
    """
    height, width = thing_mask.shape
    if offsets.shape != (2, height, width):
        raise FusionInputError(f"offsets must be [2, {height}, {width}], got shape {tuple(offsets.shape)}")
    device = thing_mask.device
    slots = centers.points.shape[0]
    if slots == 0:
        return torch.zeros(height, width, dtype=torch.int64, device=device)
    pixels = height * width
    # (y + dy, x + dx) of every pixel as [P, 1, 2] (a view of the [2, P] sum)
    moved = _pixel_grid(height, width, device) + as_dtype(offsets, torch.float32)
    locations = moved.view(2, -1).t()[:, None]
    chunk = grouping_chunk_size(slots, memory_budget_bytes)
    if chunk >= pixels:  # the frame in one chunk
        nearest = torch.argmin(torch.linalg.vector_norm(centers.distant - locations, dim=-1), dim=1)
    else:
        nearest = torch.empty(pixels, dtype=torch.int64, device=device)
        for start in range(0, pixels, chunk):
            stop = min(start + chunk, pixels)
            distance = torch.linalg.vector_norm(centers.distant - locations[start:stop], dim=-1)  # [B, K]
            torch.argmin(distance, dim=1, out=nearest[start:stop])
    # an empty slot is infinitely far from every pixel: it never wins against a center, and where no
    # slot holds one, no pixel is grouped (the nearest is slot 0, its number 0 + False)
    return torch.where(thing_mask, nearest.view(height, width) + centers.valid.any(), 0)


@functools.lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """``[2, H, W]`` float32 row and column of every pixel (made once per size and device)."""
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, device=device, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack((rows, cols))


def fuse_center_offset_fixed(
    semantic: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: CenterOffsetParams | None = None,
    *,
    num_classes: int,
    max_centers: int = DEFAULT_MAX_CENTERS,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    frame: PixelFrame | None = None,
) -> FixedCenterOffsetOutput:
    """Panoptic-DeepLab fusion of one image with fixed shapes (see the module docstring).

    Args:
        semantic: ``[C, H, W]`` float logits, or an ``[H, W]`` integer semantic argmax.
        center_heatmap: ``[1, H, W]`` or ``[H, W]`` float.
        offsets: ``[2, H, W]`` float, channel 0 = dy (rows), channel 1 = dx (columns).
        thing_classes: the class indices that are things.
        params: thresholds; Panoptic-DeepLab's defaults when None.
        num_classes: C (given, so that no shape is read off the data).
        max_centers: center slots when ``params.top_k`` is None.
        memory_budget_bytes: bound on a grouping chunk's temporaries.
        frame: measure the segments in this camera frame (None: at the outputs' resolution).

    Returns:
        :class:`FixedCenterOffsetOutput`; no device sync (one only where ``K >= label_divisor``, to
        refuse instance numbers that would not fit).
    """
    params = params if params is not None else CenterOffsetParams()
    semantic_map, heat, logits = checked_inputs(semantic, center_heatmap, offsets, fewest_ops=True)
    if logits is not None and logits.shape[0] != num_classes:
        raise FusionInputError(f"semantic logits have {logits.shape[0]} classes, expected {num_classes}")
    is_thing_class = thing_class_mask(thing_classes, num_classes, semantic_map.device)
    centers = find_centers_fixed(
        heat,
        center_threshold=params.center_threshold,
        nms_kernel=params.nms_kernel,
        top_k=params.top_k,
        max_centers=max_centers,
    )
    instance = group_pixels_fixed(
        is_thing_class[semantic_map], offsets, centers, memory_budget_bytes=memory_budget_bytes
    )
    merged = merge_segments(
        semantic_map,
        instance,
        centers.points.shape[0],
        is_thing_class,
        stuff_area=params.stuff_area,
        label_divisor=params.label_divisor,
        fixed_rows=True,
    )
    stats = segment_stats(
        merged, semantic_logits=logits, center_scores=centers.scores, frame=frame, fixed_shapes=True
    )
    return FixedCenterOffsetOutput(
        semantic=semantic_map,
        panoptic=merged.panoptic,
        instance=merged.instance,
        centers=centers,
        segments=stats,
    )
