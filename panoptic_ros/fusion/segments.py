"""Per-segment geometry shared by the fusion families: area, box and centroid of every segment at once.

A fusion result labels each pixel of an ``H x W`` map with a segment index ``0..S-1`` (``S`` where the
pixel belongs to no segment); :func:`segment_geometry` measures all ``S`` segments with two joint
histograms (segment x row, segment x column) on the map's device, without a device sync.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class SegmentGeometry(NamedTuple):
    """Geometry of S segments (row ``s`` is segment ``s``).

    Attributes:
        areas: ``[S]`` int64 pixel count.
        bboxes: ``[S, 4]`` int64 ``(x, y, width, height)`` of the inclusive pixel extent; an empty
            segment gets ``(0, 0, 0, 0)``.
        centroids: ``[S, 2]`` float32 ``(x, y)`` mean pixel coordinate (0 for an empty segment).
    """

    areas: torch.Tensor
    bboxes: torch.Tensor
    centroids: torch.Tensor


def histogram(index: torch.Tensor, size: int) -> torch.Tensor:
    """Counts of the values of ``index`` (int64, each in ``[0, size)``) as ``[size]`` int64.

    Unlike :func:`torch.bincount` this makes no device sync on CUDA (the output size is given).
    """
    counts = torch.zeros(size, dtype=torch.int64, device=index.device)
    ones = torch.ones(1, dtype=torch.int64, device=index.device).expand_as(index)
    return counts.index_add_(0, index.reshape(-1), ones.reshape(-1))


def segment_geometry(segment_of_pixel: torch.Tensor, num_segments: int) -> SegmentGeometry:
    """Area, box and centroid of every segment of a label map.

    Args:
        segment_of_pixel: ``[H, W]`` int64 segment index per pixel, ``num_segments`` for none.
        num_segments: S.

    Returns:
        :class:`SegmentGeometry`; exact integer areas, extents and coordinate sums, no device sync.
    """
    height, width = segment_of_pixel.shape
    device = segment_of_pixel.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_hist = histogram((segment_of_pixel * height + rows[:, None]).reshape(-1), (num_segments + 1) * height)
    col_hist = histogram((segment_of_pixel * width + cols[None, :]).reshape(-1), (num_segments + 1) * width)
    return geometry_from_histograms(
        row_hist.view(num_segments + 1, height)[:num_segments],
        col_hist.view(num_segments + 1, width)[:num_segments],
    )


def geometry_from_histograms(row_hist: torch.Tensor, col_hist: torch.Tensor) -> SegmentGeometry:
    """Geometry from each segment's pixel count per row (``[S, H]`` int64) and per column (``[S, W]``)."""
    rows = torch.arange(row_hist.shape[1], device=row_hist.device)
    cols = torch.arange(col_hist.shape[1], device=col_hist.device)
    areas = row_hist.sum(dim=1)
    y_first, y_last = _extent(row_hist > 0)
    x_first, x_last = _extent(col_hist > 0)
    present = areas > 0
    zero = torch.zeros_like(areas)
    bboxes = torch.stack(
        (
            torch.where(present, x_first, zero),
            torch.where(present, y_first, zero),
            torch.where(present, x_last - x_first + 1, zero),
            torch.where(present, y_last - y_first + 1, zero),
        ),
        dim=1,
    )
    area_f = areas.clamp(min=1).double()
    x_mean = (col_hist * cols).sum(dim=1).double() / area_f
    y_mean = (row_hist * rows).sum(dim=1).double() / area_f
    return SegmentGeometry(areas=areas, bboxes=bboxes, centroids=torch.stack((x_mean, y_mean), dim=1).float())


def _extent(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along dim 1 of an ``[S, L]`` bool tensor (garbage for empty rows)."""
    length = occupied.shape[1]
    as_int = occupied.to(torch.uint8)
    return as_int.argmax(dim=1), length - 1 - as_int.flip(dims=(1,)).argmax(dim=1)
