"""Pairwise affinities between tracks and a frame's instances.

Device side (PyTorch, any device, a fixed number of kernels per frame, no per-instance loop):
:func:`index_map` turns an instance-id map into compact indices (on the CPU one compiled lookup,
unless fixed shapes ask for the device's ops), :func:`joint_histogram` counts every
(previous index, current index) pixel pair in one histogram, and :func:`mean_colors` averages an image
inside every mask. Host side (numpy, on the small per-frame tables): :func:`mask_iou` from the
histogram, :func:`box_iou` and :func:`center_distance` for the motion gate.

Boxes here are ``[N, 4]`` ``(x0, y0, x1, y1)`` with exclusive ``x1 = x + width``, ``y1 = y + height``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from panoptic_ros.core.segments import as_dtype
from panoptic_ros.tracking.association_cpu import index_map_cpu, index_statistics, pixel_statistics

_MAX_LUT = 1 << 22  # id ranges up to this size use a lookup table, larger ones a binary search
#: Mean-color distances are divided by the largest one, black to white.
COLOR_SCALE = 255 * math.sqrt(3)


def _histogram(index: torch.Tensor, size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``[size]`` int64 counts (or sums of int64 ``weights``, one per element) of the values of
    ``index`` (int64 in ``[0, size)``). On CUDA a scatter-add, which needs no device sync, unlike
    :func:`torch.bincount`."""
    if index.device.type == "cpu":
        if weights is None:
            return torch.bincount(index, minlength=size)
        # float64 sums of integer weights are exact far beyond any image size
        return torch.bincount(index, weights=as_dtype(weights, torch.float64), minlength=size).long()
    counts = torch.zeros(size, dtype=torch.int64, device=index.device)
    if weights is None:
        weights = torch.ones(1, dtype=torch.int64, device=index.device).expand_as(index)
    return counts.scatter_add_(0, index, weights)


def index_map(instance_map: torch.Tensor, ids: np.ndarray, *, fixed_shapes: bool = False) -> torch.Tensor:
    """Compact instance indices of an id map.

    Args:
        instance_map: ``[H, W]`` integer ids on any device.
        ids: ``[T]`` int64 host array of the instance ids (unique, ``>= 0``).
        fixed_shapes: the device's ops on the CPU too (else one compiled lookup there).

    Returns:
        ``[H, W]`` int64 on the map's device: ``k + 1`` where ``instance_map == ids[k]``, 0 elsewhere
        (values not in ``ids``).
    """
    device = instance_map.device
    values = instance_map  # int32 or int64 both index the lookup table: no conversion pass
    if ids.size == 0:
        return torch.zeros(values.shape, dtype=torch.int64, device=device)
    top = int(ids.max())
    if device.type == "cpu" and top < _MAX_LUT and not fixed_shapes:
        return index_map_cpu(values, ids)
    if top == ids.size and np.array_equal(ids, np.arange(1, top + 1)):
        # ids already compact (the pipeline's thing numbers when every thing shows): no lookup
        return torch.where((values > 0) & (values <= top), values.long(), 0)
    if top < _MAX_LUT and top <= torch.iinfo(values.dtype).max:
        lut = torch.zeros(top + 1, dtype=torch.int64)
        lut[torch.from_numpy(ids.astype(np.int64))] = torch.arange(1, ids.size + 1)
        lut = lut.to(device, non_blocking=True)
        inside = (values >= 0) & (values <= top)
        looked_up = lut.index_select(0, values.clamp(0, top).reshape(-1)).view(values.shape)  # int32 too
        return torch.where(inside, looked_up, 0)
    values = values.long()
    order = np.argsort(ids, kind="stable")
    sorted_ids = torch.as_tensor(ids[order], device=device)
    rank = torch.as_tensor(order + 1, device=device)
    pos = torch.searchsorted(sorted_ids, values).clamp(max=ids.size - 1)
    return torch.where(sorted_ids[pos] == values, rank[pos], 0)


def joint_histogram(
    previous: torch.Tensor,
    current: torch.Tensor,
    num_previous: int,
    num_current: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel counts of every (previous index, current index) pair, in one histogram.

    Args:
        previous: ``[H, W]`` int64 indices ``0..P`` (0 = no instance).
        current: ``[H, W]`` int64 indices ``0..T`` on the same device.
        weights: ``[H, W]`` int64 weight of each pixel (None: 1).

    Returns:
        ``[P + 1, T + 1]`` int64 on the device: ``hist[p, t]`` pixels with ``previous == p`` and
        ``current == t``; row 0 and column 0 count the pixels outside any instance.
    """
    flat_weights = weights.reshape(-1) if weights is not None else None
    counts = _joint_counts(previous, current.reshape(-1), num_previous, num_current, flat_weights)
    return counts.reshape(num_previous + 1, num_current + 1)


def _joint_counts(
    previous: torch.Tensor,
    flat_current: torch.Tensor,
    num_previous: int,
    num_current: int,
    flat_weights: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`joint_histogram` read flat (``[(P + 1) (T + 1)]``), of the current indices read flat."""
    key = previous.reshape(-1) * (num_current + 1) + flat_current
    return _histogram(key, (num_previous + 1) * (num_current + 1), flat_weights)


def mask_iou(hist: np.ndarray) -> np.ndarray:
    """``[P, T]`` float64 mask IoU of every previous/current instance pair from a
    :func:`joint_histogram` (``[P + 1, T + 1]``, host): ``inter / (area_p + area_t - inter)``."""
    hist = np.asarray(hist, dtype=np.float64)
    inter = hist[1:, 1:]
    area_prev = hist[1:, :].sum(axis=1)[:, None]
    area_cur = hist[:, 1:].sum(axis=0)[None, :]
    union = area_prev + area_cur - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mean_colors(
    image: torch.Tensor,
    indices: torch.Tensor,
    count: int,
    weights: torch.Tensor | None = None,
    areas: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[count, 3]`` float32 mean of ``image`` (``[H, W, 3]``) over the pixels of each instance index
    ``1..count`` of ``indices`` (``[H, W]`` int64), each pixel counted ``weights`` times (``[H, W]``
    integer; None: once); 0 for instances without pixels. ``areas``: the ``[count + 1]`` weighted
    pixel counts of the indices when already known (else counted here).

    One ``index_add_`` of the pixels in float64 on any device (no sync; exact for integer images,
    summed in pixel order on the CPU), then each mean as the float32 sum over the float32 area: the
    numbers of the CPU's compiled statistics
    (:func:`~panoptic_ros.tracking.association_cpu.pixel_statistics`).
    """
    flat = indices.reshape(-1)
    flat_weights = weights.reshape(-1) if weights is not None else None
    if areas is None:
        areas = _histogram(flat, count + 1, flat_weights)
    sums = _color_sums(image, flat, count, flat_weights)
    return (sums.float() / areas.clamp(min=1).float()[:, None])[1:]


def _color_sums(
    image: torch.Tensor, flat: torch.Tensor, count: int, flat_weights: torch.Tensor | None
) -> torch.Tensor:
    """``[count + 1, 3]`` float64 sums of ``image`` (``[H, W, 3]``) over each index of ``flat``
    (``[H W]``), each pixel ``flat_weights`` times: one ``index_add_``."""
    pixels = image.reshape(-1, 3).double()
    if flat_weights is not None:
        pixels = pixels * flat_weights[:, None]
    return torch.zeros(count + 1, 3, dtype=torch.float64, device=image.device).index_add_(0, flat, pixels)


def instance_statistics(
    previous: torch.Tensor,
    current: torch.Tensor,
    num_previous: int,
    count: int,
    *,
    image: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    fixed_shapes: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Host arrays of what the association needs from the device: mask IoU ``[P, T]`` of every
    (previous, current) instance pair, current areas ``[T]`` and, with ``image``, mean colors ``[T, 3]``
    (float64); each pixel counted ``weights`` times (None: once). One small transfer: the joint
    histogram of :func:`joint_histogram` (exact in float64) and the color sums of :func:`mean_colors`,
    the areas and means taken from them on the host (a mean as the float32 sum over the float32 area,
    as :func:`mean_colors` gives it). On the CPU, unless ``fixed_shapes`` asks for shapes independent
    of the data, by one compiled pass over the pixels inside an instance
    (:func:`~panoptic_ros.tracking.association_cpu.pixel_statistics`: the same numbers)."""
    if current.device.type == "cpu" and not fixed_shapes:
        return pixel_statistics(previous, current, num_previous, count, image=image, weights=weights)
    flat = current.reshape(-1)
    flat_weights = weights.reshape(-1) if weights is not None else None
    shape = (num_previous + 1, count + 1)
    hist = _joint_counts(previous, flat, num_previous, count, flat_weights)
    if image is None:
        hist_np = hist.cpu().numpy().reshape(shape)
        return mask_iou(hist_np), hist_np[:, 1:].sum(axis=0), None
    sums = _color_sums(image, flat, count, flat_weights)
    packed = torch.cat((hist.double(), sums.view(-1))).cpu().numpy()
    hist_np = packed[: hist.numel()].reshape(shape)
    areas = hist_np.sum(axis=0)
    sums_np = packed[hist.numel() :].reshape(count + 1, 3)[1:].astype(np.float32)
    means = sums_np / np.maximum(areas[1:], 1).astype(np.float32)[:, None]
    return mask_iou(hist_np), areas[1:], means.astype(np.float64)


def index_and_statistics(
    instance_map: torch.Tensor,
    ids: np.ndarray,
    previous: torch.Tensor | None,
    num_previous: int,
    *,
    image: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    fixed_shapes: bool = False,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`index_map` of this frame's ``instance_map`` and :func:`instance_statistics` of the indices
    against the ``previous`` frame's (``[H, W]`` int64 indices ``0..num_previous``; None: no previous
    frame, nothing overlaps): ``(index, mask IoU, areas, colors)``. On the CPU (ids below the lookup
    table's bound, shapes free to depend on the data) one compiled pass does both
    (:func:`~panoptic_ros.tracking.association_cpu.index_statistics`: the same numbers)."""
    num_previous = num_previous if previous is not None else 0
    cpu = instance_map.device.type == "cpu" and not fixed_shapes
    if cpu and ids.size and int(ids.max()) < _MAX_LUT:
        return index_statistics(instance_map, ids, previous, num_previous, image=image, weights=weights)
    index = index_map(instance_map, ids, fixed_shapes=fixed_shapes)
    before = previous if previous is not None else torch.zeros_like(index)
    statistics = instance_statistics(
        before, index, num_previous, ids.size, image=image, weights=weights, fixed_shapes=fixed_shapes
    )
    return index, *statistics


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` ``(x, y, w, h)`` to ``(x0, y0, x1, y1)`` with exclusive ends, float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xywh_to_xyxy`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``[N, 4]`` ``(x0, y0, x1, y1)`` boxes cut to the image (``(height, width)``); a box outside the
    image becomes empty (``x1 <= x0`` or ``y1 <= y0``)."""
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    limits = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(boxes, 0.0, limits)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of ``[N, 4]`` and ``[M, 4]`` ``(x0, y0, x1, y1)`` boxes (0 where both are empty)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = width.clip(min=0) * height.clip(min=0)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def center_distance(
    boxes: np.ndarray, points: np.ndarray, other_boxes: np.ndarray | None = None, *, min_size: float = 4.0
) -> np.ndarray:
    """``[N, M]`` distance from each box center (``[N, 4]`` ``x0, y0, x1, y1``) to each point
    (``[M, 2]`` ``x, y``), per axis in units of a size: ``sqrt((dx / w)^2 + (dy / h)^2)``.

    The size is that box's width and height, or with ``other_boxes`` (``[M, 4]``, one per point) the
    larger of the two boxes' per axis, and at least ``min_size`` pixels. 0.5 reaches the border of
    the box along an axis.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = np.maximum(boxes[:, 2:] - boxes[:, :2], min_size)[:, None, :]
    if other_boxes is not None:
        other = np.asarray(other_boxes, dtype=np.float64).reshape(-1, 4)
        size = np.maximum(size, (other[:, 2:] - other[:, :2])[None, :, :])
    delta = (points[None, :, :] - center[:, None, :]) / size
    return np.sqrt((delta**2).sum(axis=2))
