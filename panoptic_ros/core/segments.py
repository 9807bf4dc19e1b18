"""Per-segment geometry, measured once: area, box and centroid of every segment of a label map at once.

A label map gives each pixel of an ``h x w`` map a segment index ``0..S-1`` (``S`` where the pixel
belongs to no segment). :func:`segment_geometry` measures all ``S`` segments with two joint
histograms (segment x row, segment x column) on the map's device: on CUDA over every pixel, without a
device sync; on the CPU from the runs of one segment along each row.

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

import functools
from typing import NamedTuple

import numpy as np
import torch

from panoptic_ros.core.resample_cpu import expand_map, sample_map


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
        host_middle: ``[n]`` host array, the middle camera position of those copying each model
            position (a neighbour where none does), to sample camera images on the host.
        host_spans: ``[n, 2]`` int64 host array, the camera positions ``[start, end)`` copying each
            model position (empty where none does), to draw camera images from model maps.
    """

    index: torch.Tensor
    weight: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor
    total: torch.Tensor
    host_index: np.ndarray
    host_middle: np.ndarray
    host_spans: np.ndarray

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
        host_spans = spans(host, size)
        return cls(
            index=index, weight=weight, first=first, last=last, total=total, host_index=host,
            host_middle=_middles(host_spans, target), host_spans=host_spans,
        )  # fmt: skip


#: Beyond any camera position (the "first" of a padding slot in :class:`Axes`).
_FAR = 1 << 62


class Axes(NamedTuple):
    """Both axes of a frame side by side, padded to one length ``L = max(h, w)``, for measuring every
    segment's columns and rows in one joint histogram ``[S, 2, L]`` (channel 0 the columns, 1 the
    rows: x before y, as boxes and centroids are written): per channel and position, the camera
    ``weight``, ``first``, ``last`` and ``total`` of :class:`AxisMap` (padding: weight 0, first far,
    last -1, total 0). ``base`` ``[2, h, w]`` int64 each pixel's place in a segment's ``2 L`` bins (its
    column, ``L +`` its row); ``pixel_weights`` ``[2, h, w]`` what each pixel counts there (its row's
    camera weight in the column channel, its column's in the row channel), None for the identity
    frame."""

    length: int
    base: torch.Tensor
    pixel_weights: torch.Tensor | None
    weight: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor
    total: torch.Tensor
    seen_first: torch.Tensor  # first where a camera pixel copies the position, far elsewhere

    @classmethod
    def of(cls, rows: AxisMap, cols: AxisMap, identity: bool) -> Axes:
        height, width = rows.weight.numel(), cols.weight.numel()
        device = rows.weight.device
        length = max(height, width)

        def padded(col_values: torch.Tensor, row_values: torch.Tensor, fill: int) -> torch.Tensor:
            table = torch.full((2, length), fill, dtype=torch.int64, device=device)
            table[0, :width] = col_values
            table[1, :height] = row_values
            return table

        r = torch.arange(height, device=device)[:, None].expand(height, width)
        c = torch.arange(width, device=device)[None, :].expand(height, width)
        weights = None
        if not identity:
            weights = torch.stack(
                (rows.weight[:, None].expand(height, width), cols.weight[None, :].expand(height, width))
            )
        return cls(
            length=length,
            base=torch.stack((c, length + r)),
            pixel_weights=weights,
            weight=(weight := padded(cols.weight, rows.weight, 0)),
            first=(first := padded(cols.first, rows.first, _FAR)),
            last=padded(cols.last, rows.last, -1),
            total=padded(cols.total, rows.total, 0),
            seen_first=torch.where(weight > 0, first, _FAR),
        )


class PixelFrame(NamedTuple):
    """How the pixels of an ``h x w`` model-resolution map land in a camera frame (see the module
    docstring): ``rows`` maps model rows to camera rows, ``cols`` model columns to camera columns;
    ``weights`` ``[h, w]`` int64 how many camera pixels copy each model pixel (0 for letterbox
    padding), None when the camera frame is the map itself. Statistics of the model-resolution map
    weighted by it are those of the camera-frame map. ``axes``: both axes for the joint histogram of
    :func:`segment_geometry`. Made by :meth:`of` (once per camera geometry)."""

    rows: AxisMap
    cols: AxisMap
    weights: torch.Tensor | None
    axes: Axes

    @classmethod
    def of(cls, rows: AxisMap, cols: AxisMap) -> PixelFrame:
        """The frame of two axes, with its pixel weights."""
        identity = all(
            axis.host_index.size == axis.weight.numel()
            and bool((axis.host_index == np.arange(axis.host_index.size)).all())
            for axis in (rows, cols)
        )
        weights = None if identity else rows.weight[:, None] * cols.weight[None, :]
        return cls(rows, cols, weights, Axes.of(rows, cols, identity))

    @property
    def camera_size(self) -> tuple[int, int]:
        """``(height, width)`` of the camera frame."""
        return int(self.rows.index.numel()), int(self.cols.index.numel())

    def resample(self, labels: torch.Tensor) -> torch.Tensor:
        """A ``[..., h, w]`` model-resolution map in the camera frame: ``[..., H, W]`` (a gather, on the
        map's device). Columns first, at the model's few rows; then whole rows are copied."""
        return labels.index_select(-1, self.cols.index).index_select(-2, self.rows.index)

    def expand(self, labels: np.ndarray) -> np.ndarray:
        """:meth:`resample` for a host array ``[h, w]`` (one compiled pass:
        :func:`~panoptic_ros.core.resample_cpu.expand_map`) or ``[h, w, C]`` (columns first, then rows).

        Raises:
            IndexError: a map smaller than the one the frame was made for.
        """
        rows, cols = self.rows.host_index, self.cols.host_index
        if labels.ndim != 2 or not rows.size or not cols.size:
            return labels.take(cols, axis=1).take(rows, axis=0)
        # the indices are nondecreasing: the first and last bound them (the gather does not check them)
        if rows[0] < 0 or cols[0] < 0 or rows[-1] >= labels.shape[0] or cols[-1] >= labels.shape[1]:
            raise IndexError(
                f"the frame copies map pixels from ({rows[0]}, {cols[0]}) up to ({rows[-1]}, {cols[-1]}) "
                f"of a {labels.shape} map"
            )
        return expand_map(np.ascontiguousarray(labels), rows, cols)

    def sample(self, image: np.ndarray) -> np.ndarray:
        """The other way for a host camera-frame image ``[H, W]`` or ``[H, W, C]``: at each model pixel,
        the camera pixel in the middle of those that copy it (``[h, w]`` or ``[h, w, C]``; where no
        camera pixel copies a model pixel, one next to it: such pixels weigh 0 in :attr:`weights`).
        Depth images in one compiled pass (:func:`~panoptic_ros.core.resample_cpu.sample_map`).

        Raises:
            IndexError: an image smaller than the camera frame.
        """
        rows, cols = self.rows.host_middle, self.cols.host_middle
        sampled = sample_map(image, rows, cols)
        return sampled if sampled is not None else image.take(rows, axis=0).take(cols, axis=1)


def spans(index: np.ndarray, size: int) -> np.ndarray:
    """``[size, 2]`` int64: the positions ``[start, end)`` of a nondecreasing ``index`` that copy each of
    ``size`` sources (empty where none does)."""
    sources = np.arange(size)
    return np.stack(
        (np.searchsorted(index, sources, side="left"), np.searchsorted(index, sources, side="right")), axis=1
    ).astype(np.int64)


def _middles(host_spans: np.ndarray, camera_size: int) -> np.ndarray:
    """For each model position, the middle one of the ``camera_size`` camera positions ``[start, end)``
    that copy it (:func:`spans`; the nearest camera position when none does)."""
    first, end = host_spans[:, 0], host_spans[:, 1]
    return np.clip((first + end - 1) // 2, 0, camera_size - 1)


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
    flat = index if index.dim() == 1 else index.reshape(-1)  # a flat index as it is: no op dispatched
    weights = _ones(flat.numel(), index.device) if weights is None else weights.reshape(-1)
    return counts.index_add_(0, flat, weights)


@functools.lru_cache(maxsize=16)
def _ones(count: int, device: torch.device) -> torch.Tensor:
    """``[count]`` int64 ones (made once per size and device; never written)."""
    return torch.ones(count, dtype=torch.int64, device=device)


def take(table: torch.Tensor, index: torch.Tensor, *, fixed_shapes: bool = False) -> torch.Tensor:
    """``table`` (any shape, read flat) at the integer ``index``, shaped like ``index``, on their device:
    :func:`torch.take`, except on the CPU, where numpy's ``take`` gathers the same values in a fraction
    of the time (no parallel setup for a few hundred thousand indices), unless ``fixed_shapes`` asks
    for the device's ops (the CPU standing in for CUDA). For tables that do not require grad; an
    index out of range raises numpy's IndexError on the CPU."""
    if index.device.type == "cpu" and not fixed_shapes:
        return torch.from_numpy(np.asarray(table.numpy().reshape(-1).take(index.numpy())))
    return torch.take(table, index)


def as_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in ``dtype``: itself when it already is (no op dispatched), else converted."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def segment_histograms(
    segment_of_pixel: torch.Tensor,
    num_segments: int,
    frame: PixelFrame | None = None,
    *,
    fixed_shapes: bool = False,
) -> torch.Tensor:
    """Each segment's pixels per column and per row of an ``[h, w]`` label map in one joint histogram
    ``[S, 2, L]`` (see :class:`Axes`: channel 0 the columns, 1 the rows, ``L = max(h, w)``).

    With a ``frame``, each pixel counts as the camera pixels of its column (row) that copy it: the
    column channel weighs a pixel by its row's camera weight and the row channel by its column's,
    which is what :func:`geometry_from_histogram` needs to measure in the camera frame. On the CPU
    from the map's runs (:func:`_histograms_by_runs`, one host read), unless ``fixed_shapes`` asks
    for the sync-free way over every pixel (CUDA's).
    """
    height, width = segment_of_pixel.shape
    axes = frame.axes if frame is not None else identity_axes(height, width, segment_of_pixel.device)
    if segment_of_pixel.device.type == "cpu" and segment_of_pixel.numel() and not fixed_shapes:
        return _histograms_by_runs(segment_of_pixel, num_segments, axes)
    bins = 2 * axes.length
    key = segment_of_pixel[None] * bins + axes.base
    hist = histogram(key, (num_segments + 1) * bins, axes.pixel_weights)
    return hist.view(num_segments + 1, 2, axes.length)[:num_segments]


def _histograms_by_runs(segment_of_pixel: torch.Tensor, num_segments: int, axes: Axes) -> torch.Tensor:
    """:func:`segment_histograms` on the CPU from the map's runs (the stretches of one segment along a
    row: a few thousand where the map has ~10^5 pixels), not pixel by pixel. A run of segment ``s`` on
    map row ``r`` over columns ``[c0, c1)`` adds the camera weight of those columns to ``s``'s row
    ``r``, and the camera weight of row ``r`` to each of ``s``'s columns ``c0..c1-1``, the latter as
    a difference (``+`` at ``c0``, ``-`` at ``c1``) summed along the columns afterwards. Exact int64,
    the same histogram; one pass over the map to find the runs (and one host read of their count)."""
    height, width = segment_of_pixel.shape
    length = axes.length
    starts_here = torch.ones((height, width), dtype=torch.bool)
    torch.ne(segment_of_pixel[:, 1:], segment_of_pixel[:, :-1], out=starts_here[:, 1:])
    starts = torch.nonzero(starts_here.reshape(-1)).squeeze(1)  # row-major; every row starts one
    ends = torch.cat((starts[1:], torch.full((1,), height * width, dtype=starts.dtype)))
    rows = torch.div(starts, width, rounding_mode="floor")
    first, stop = starts - rows * width, ends - rows * width  # columns [first, stop) of the row
    owner = segment_of_pixel.reshape(-1).index_select(0, starts)  # num_segments for no segment
    col_weight = torch.cat((torch.zeros(1, dtype=torch.int64), axes.weight[0, :width].cumsum(0)))
    row_weight = axes.weight[1].index_select(0, rows)
    by_row = torch.zeros((num_segments + 1) * length, dtype=torch.int64)
    by_row.index_add_(0, owner * length + rows, col_weight[stop] - col_weight[first])
    steps = torch.zeros((num_segments + 1) * (length + 1), dtype=torch.int64)
    steps.index_add_(0, owner * (length + 1) + first, row_weight)
    steps.index_add_(0, owner * (length + 1) + stop, -row_weight)
    by_column = steps.view(num_segments + 1, length + 1).cumsum(1)[:, :length]
    return torch.stack((by_column, by_row.view(num_segments + 1, length)), dim=1)[:num_segments]


def segment_geometry(
    segment_of_pixel: torch.Tensor,
    num_segments: int,
    frame: PixelFrame | None = None,
    *,
    fixed_shapes: bool = False,
) -> SegmentGeometry:
    """Area, box and centroid of every segment of a label map, in the map's own pixels or, with a
    ``frame``, in the camera frame it is resampled into.

    Args:
        segment_of_pixel: ``[h, w]`` int64 segment index per pixel, ``num_segments`` for none.
        num_segments: S.
        frame: where the map's pixels land (None: measure the map itself).
        fixed_shapes: no host read on any device (see :func:`segment_histograms`).

    Returns:
        :class:`SegmentGeometry`; exact integer areas, extents and coordinate sums; no device sync on
        CUDA.
    """
    height, width = segment_of_pixel.shape
    axes = frame.axes if frame is not None else identity_axes(height, width, segment_of_pixel.device)
    hist = segment_histograms(segment_of_pixel, num_segments, frame, fixed_shapes=fixed_shapes)
    return geometry_from_histogram(hist, axes)


def geometry_from_histograms(
    row_hist: torch.Tensor, col_hist: torch.Tensor, frame: PixelFrame | None = None
) -> SegmentGeometry:
    """Geometry from each segment's pixel count per row (``[S, h]`` int64) and per column (``[S, w]``),
    weighted as :func:`segment_histograms` weighs its channels when a ``frame`` is given."""
    height, width = row_hist.shape[1], col_hist.shape[1]
    axes = frame.axes if frame is not None else identity_axes(height, width, row_hist.device)
    hist = row_hist.new_zeros((row_hist.shape[0], 2, axes.length))
    hist[:, 0, :width] = col_hist
    hist[:, 1, :height] = row_hist
    return geometry_from_histogram(hist, axes)


def geometry_from_histogram(hist: torch.Tensor, axes: Axes) -> SegmentGeometry:
    """Geometry from a joint histogram ``[S, 2, L]`` (:func:`segment_histograms`) over ``axes``: the
    area is the weighted count, the extent runs from the first camera position of the first occupied
    row (column) to the last of the last, the centroid is the weighted sum of camera positions over
    the area. Both axes at once: a dozen ops whatever S."""
    areas = (hist * axes.weight).sum(dim=2)[:, 0]  # either channel sums to the area
    occupied = hist > 0  # a position no camera pixel copies: seen_first far, last -1
    low = torch.where(occupied, axes.seen_first, _FAR).amin(dim=2)  # [S, 2]: (x0, y0)
    high = torch.where(occupied, axes.last, -1).amax(dim=2)  # (x1, y1)
    boxes = torch.cat((low, high - low + 1), dim=1)  # (x0, y0, w, h)
    present = areas > 0
    # float64 sums over exact integer areas (int64 promotes to float64 exactly)
    centroids = (hist * axes.total).sum(dim=2).double() / areas.clamp(min=1)[:, None]
    return SegmentGeometry(
        areas=areas, bboxes=torch.where(present[:, None], boxes, 0), centroids=centroids.float()
    )


@functools.lru_cache(maxsize=32)
def identity_axes(height: int, width: int, device: torch.device) -> Axes:
    """The :class:`Axes` of a map measured in its own pixels (cached per size and device)."""
    rows = _identity_axis(height, device)
    cols = _identity_axis(width, device)
    return Axes.of(rows, cols, identity=True)


def _identity_axis(length: int, device: torch.device) -> AxisMap:
    positions = torch.arange(length, device=device)
    host = np.arange(length)
    return AxisMap(
        positions,
        torch.ones_like(positions),
        positions,
        positions,
        positions,
        host,
        host,
        spans(host, length),
    )
