"""Training targets of the center-offset family, built for a whole batch at once.

For every thing instance: its center of mass; the center heatmap is the per-pixel maximum of one
Gaussian per instance (``sigma`` pixels) around those centers; the offset of every thing pixel is
the vector (dy, dx) from the pixel to its own instance's center.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

IGNORE = 255


class CenterOffsetTargets(NamedTuple):
    """Shapes: ``center`` N x 1 x H x W, ``offset`` N x 2 x H x W (dy, dx), ``thing`` N x H x W bool,
    ``pixel_weight`` N x H x W float (higher on pixels of small instances)."""

    center: torch.Tensor
    offset: torch.Tensor
    thing: torch.Tensor
    pixel_weight: torch.Tensor


def center_offset_targets(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    thing_classes: torch.Tensor,
    *,
    sigma: float = 3.0,
    small_area: int = 150,
    small_weight: float = 3.0,
) -> CenterOffsetTargets:
    """Targets for a batch.

    Args:
        semantic: ``N x H x W`` integer class indices, :data:`IGNORE` where unlabeled.
        instance: ``N x H x W`` integer instance ids (any values, unique per image), 0 on stuff.
        thing_classes: ``bool`` tensor ``C``, True for thing classes.
        sigma: standard deviation of the center Gaussians, pixels.
        small_area: instances with fewer pixels get ``small_weight`` in the semantic loss.
    """
    n, h, w = semantic.shape
    device = semantic.device
    sem = semantic.long()
    valid = sem != IGNORE
    thing = valid & thing_classes.to(device)[sem.clamp(max=thing_classes.numel() - 1)] & (instance > 0)
    flat_thing = thing.reshape(n, -1)
    image_index = torch.arange(n, device=device)[:, None].expand(n, h * w)
    keys = image_index * (int(instance.max()) + 1) + instance.reshape(n, -1).long()
    keys = keys[flat_thing]
    center = torch.zeros(n, h * w, device=device)
    offset = torch.zeros(n, 2, h * w, device=device)
    weight = torch.ones(n, h * w, device=device)
    if keys.numel():
        unique, inverse = torch.unique(keys, return_inverse=True)
        pixel = torch.nonzero(flat_thing)[:, 1]
        ys = torch.div(pixel, w, rounding_mode="floor").float()
        xs = (pixel % w).float()
        area = torch.bincount(inverse, minlength=unique.numel()).float()
        cy = torch.bincount(inverse, weights=ys, minlength=unique.numel()) / area
        cx = torch.bincount(inverse, weights=xs, minlength=unique.numel()) / area
        owner = torch.div(unique, int(instance.max()) + 1, rounding_mode="floor")
        grid_y = torch.arange(h, device=device, dtype=torch.float32)
        grid_x = torch.arange(w, device=device, dtype=torch.float32)
        gy = torch.exp(-((grid_y[None, :] - cy[:, None]) ** 2) / (2 * sigma**2))  # K x H
        gx = torch.exp(-((grid_x[None, :] - cx[:, None]) ** 2) / (2 * sigma**2))  # K x W
        gauss = (gy[:, :, None] * gx[:, None, :]).reshape(-1, h * w)
        center.index_reduce_(0, owner, gauss, "amax", include_self=True)
        rows = torch.nonzero(flat_thing)[:, 0]
        offset[rows, 0, pixel] = cy[inverse] - ys
        offset[rows, 1, pixel] = cx[inverse] - xs
        small = (area < small_area)[inverse]
        weight[rows[small], pixel[small]] = small_weight
    return CenterOffsetTargets(
        center=center.reshape(n, 1, h, w),
        offset=offset.reshape(n, 2, h, w),
        thing=thing,
        pixel_weight=weight.reshape(n, h, w),
    )
