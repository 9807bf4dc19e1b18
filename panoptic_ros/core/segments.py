"""Per-segment geometry, measured once: area, box and centroid of every segment of a label map at once.

A label map gives each pixel of an ``h x w`` map a segment index ``0..S-1`` (``S`` where the pixel
belongs to no segment). :func:`segment_geometry` measures all ``S`` segments with two joint
histograms (segment x row, segment x column) on the map's device, without a device sync.

Measuring in another frame. A fused map at the model's resolution is shown to people and published at
the camera's resolution, by nearest-neighbour resampling (after removing letterbox padding). Every
camera pixel ``(i, j)`` takes the label of the model pixel ``(R[i], C[j])``, so a camera row is a
copy of one model row and a camera column a copy of one model column. :class:`PixelFrame` holds, per
model row and column, how many camera rows (columns) copy it, the first and last of them and the sum
of their indices. With those weights the two histograms of the *model-resolution* map give the
*exact* areas, boxes and centroids of the segments in the camera frame, without touching a camera-size
map: ``area = sum_r sum_c [seg] * rows.weight[r] * cols.weight[c]`` and so on (see
:func:`geometry_from_histograms`). Fusion measures its segments once, directly in the camera frame.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class AxisMap(NamedTuple):
    """One axis of a :class:`PixelFrame`: for each of the ``n`` model positions (rows or columns),
    the camera positions that copy it.

    Attributes:
        index: ``[N]`` int64, the model position each of the ``N`` camera positions copies.
        weight: ``[n]`` int64, how many camera positions copy each model position (0 for padding or
            positions that no camera pixel falls on).
        first: ``[n]`` int64, the first camera position copying it (garbage where ``weight == 0``).
        last: ``[n]`` int64, the last one.
        total: ``[n]`` int64, the sum of the camera positions copying it.
        host_index: ``index`` as a host array (to expand maps already on the host, without a sync).
    """

    index: torch.Tensor
    weight: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor
    total: torch.Tensor
    host_index: np.ndarray

    @classmethod
    def nearest(cls, size: int, offset: int, length: int, target: int, device: torch.device) -> AxisMap:
        """The axis of ``target`` camera positions resampled (nearest, half-pixel centers) from the
        ``length`` model positions starting at ``offset`` of a model axis of ``size`` positions.

        Camera position ``i`` copies model position ``offset + floor((i + 0.5) * length / target)``,
        computed in exact integer arithmetic (PyTorch's ``nearest-exact`` rule).
        """
        host = offset + np.minimum(
            (2 * np.arange(target, dtype=np.int64) + 1) * length // (2 * target), length - 1
        )
        camera = torch.arange(target, device=device, dtype=torch.int64)
        index = torch.from_numpy(host).to(device)
        weight = torch.zeros(size, dtype=torch.int64, device=device).index_add_(
            0, index, torch.ones_like(index)
        )
        total = torch.zeros(size, dtype=torch.int64, device=device).index_add_(0, index, camera)
        big = torch.full((size,), target, dtype=torch.int64, device=device)
        first = big.scatter_reduce(0, index, camera, "amin")
        last = torch.full_like(big, -1).scatter_reduce(0, index, camera, "amax")
        return cls(index=index, weight=weight, first=first, last=last, total=total, host_index=host)


class PixelFrame(NamedTuple):
    """How the pixels of an ``h x w`` model-resolution map land in a camera frame (see the module
    docstring): ``rows`` maps model rows to camera rows, ``cols`` model columns to camera columns;
    ``weights`` ``[h, w]`` int64 how many camera pixels copy each model pixel (0 for letterbox
    padding), None when the camera frame is the map itself. Statistics of the model-resolution map
    weighted by it are those of the camera-frame map. Made by :meth:`of` (once per camera geometry)."""

    rows: AxisMap
    cols: AxisMap
    weights: torch.Tensor | None

    @classmethod
    def of(cls, rows: AxisMap, cols: AxisMap) -> PixelFrame:
        """The frame of two axes, with its pixel weights."""
        identity = all(
            axis.host_index.size == axis.weight.numel()
            and bool((axis.host_index == np.arange(axis.host_index.size)).all())
            for axis in (rows, cols)
        )
        weights = None if identity else rows.weight[:, None] * cols.weight[None, :]
        return cls(rows, cols, weights)

    @property
    def camera_size(self) -> tuple[int, int]:
        """``(height, width)`` of the camera frame."""
        return int(self.rows.index.numel()), int(self.cols.index.numel())

    def resample(self, labels: torch.Tensor) -> torch.Tensor:
        """A ``[..., h, w]`` model-resolution map in the camera frame: ``[..., H, W]`` (a gather, on the
        map's device). Columns first, at the model's few rows; then whole rows are copied."""
        return labels.index_select(-1, self.cols.index).index_select(-2, self.rows.index)

    def expand(self, labels: np.ndarray) -> np.ndarray:
        """:meth:`resample` for a host array ``[h, w]`` or ``[h, w, C]`` (columns first, then rows)."""
        return labels.take(self.cols.host_index, axis=1).take(self.rows.host_index, axis=0)


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


def histogram(index: torch.Tensor, size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Counts (or summed int64 ``weights``, shaped like ``index``) of the values of ``index`` (int64,
    each in ``[0, size)``) as ``[size]`` int64.

    Unlike :func:`torch.bincount` this makes no device sync on CUDA (the output size is given).
    """
    counts = torch.zeros(size, dtype=torch.int64, device=index.device)
    if weights is None:
        weights = torch.ones(1, dtype=torch.int64, device=index.device).expand_as(index)
    return counts.index_add_(0, index.reshape(-1), weights.reshape(-1))


def segment_histograms(
    segment_of_pixel: torch.Tensor, num_segments: int, frame: PixelFrame | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each segment's pixels per row ``[S, h]`` and per column ``[S, w]`` of an ``[h, w]`` label map.

    With a ``frame``, each pixel counts as the camera pixels of its row (column) that copy it: the
    per-row histogram weighs a pixel by its column's camera weight and the per-column one by its row's,
    which is what :func:`geometry_from_histograms` needs to measure in the camera frame.
    """
    height, width = segment_of_pixel.shape
    device = segment_of_pixel.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    row_weights = col_weights = None
    if frame is not None:
        row_weights = frame.cols.weight[None, :].expand(height, width)
        col_weights = frame.rows.weight[:, None].expand(height, width)
    row_hist = histogram(segment_of_pixel * height + rows[:, None], (num_segments + 1) * height, row_weights)
    col_hist = histogram(segment_of_pixel * width + cols[None, :], (num_segments + 1) * width, col_weights)
    return (
        row_hist.view(num_segments + 1, height)[:num_segments],
        col_hist.view(num_segments + 1, width)[:num_segments],
    )


def segment_geometry(
    segment_of_pixel: torch.Tensor, num_segments: int, frame: PixelFrame | None = None
) -> SegmentGeometry:
    """Area, box and centroid of every segment of a label map, in the map's own pixels or, with a
    ``frame``, in the camera frame it is resampled into.

    Args:
        segment_of_pixel: ``[h, w]`` int64 segment index per pixel, ``num_segments`` for none.
        num_segments: S.
        frame: where the map's pixels land (None: measure the map itself).

    Returns:
        :class:`SegmentGeometry`; exact integer areas, extents and coordinate sums, no device sync.
    """
    row_hist, col_hist = segment_histograms(segment_of_pixel, num_segments, frame)
    return geometry_from_histograms(row_hist, col_hist, frame)


def geometry_from_histograms(
    row_hist: torch.Tensor, col_hist: torch.Tensor, frame: PixelFrame | None = None
) -> SegmentGeometry:
    """Geometry from each segment's pixel count per row (``[S, h]`` int64) and per column (``[S, w]``),
    weighted as :func:`segment_histograms` makes them when a ``frame`` is given."""
    device = row_hist.device
    if frame is None:
        rows = _identity_axis(row_hist.shape[1], device)
        cols = _identity_axis(col_hist.shape[1], device)
    else:
        rows, cols = frame.rows, frame.cols
    areas = (row_hist * rows.weight).sum(dim=1)
    y_first, y_last = _extent((row_hist > 0) & (rows.weight > 0))
    x_first, x_last = _extent((col_hist > 0) & (cols.weight > 0))
    present = areas > 0
    zero = torch.zeros_like(areas)
    x0, y0 = cols.first[x_first], rows.first[y_first]
    bboxes = torch.stack(
        (
            torch.where(present, x0, zero),
            torch.where(present, y0, zero),
            torch.where(present, cols.last[x_last] - x0 + 1, zero),
            torch.where(present, rows.last[y_last] - y0 + 1, zero),
        ),
        dim=1,
    )
    area_f = areas.clamp(min=1).double()
    x_mean = (col_hist * cols.total).sum(dim=1).double() / area_f
    y_mean = (row_hist * rows.total).sum(dim=1).double() / area_f
    return SegmentGeometry(areas=areas, bboxes=bboxes, centroids=torch.stack((x_mean, y_mean), dim=1).float())


def _identity_axis(length: int, device: torch.device) -> AxisMap:
    positions = torch.arange(length, device=device)
    return AxisMap(positions, torch.ones_like(positions), positions, positions, positions, np.arange(length))


def _extent(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along dim 1 of an ``[S, L]`` bool tensor (garbage for empty rows)."""
    length = occupied.shape[1]
    as_int = occupied.to(torch.uint8)
    return as_int.argmax(dim=1), length - 1 - as_int.flip(dims=(1,)).argmax(dim=1)
