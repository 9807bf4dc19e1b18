"""Colored overlays of panoptic results for people (rviz, the ``infer`` command), on the device."""

from __future__ import annotations

import torch

from panoptic_ros.core.labels import LabelSet


def overlay(
    image: torch.Tensor,
    panoptic: torch.Tensor,
    label_set: LabelSet,
    *,
    label_divisor: int = 1000,
    alpha: float = 0.55,
) -> torch.Tensor:
    """Blend category colors over an image, with things shaded per instance and segment borders drawn.

    Args:
        image: ``H x W x 3`` uint8 (any channel order; colors are applied in the same order as
            ``label_set`` colors, i.e. RGB).
        panoptic: ``H x W`` int64 ``category_id * label_divisor + n``, -1 void (left unpainted).
    Returns:
        ``H x W x 3`` uint8 on ``panoptic``'s device.
    """
    device = panoptic.device
    lut = torch.as_tensor(label_set.color_lut, device=device).float()
    void = panoptic < 0
    category = torch.div(panoptic.clamp(min=0), label_divisor, rounding_mode="floor").clamp(
        max=lut.shape[0] - 1
    )
    number = panoptic.clamp(min=0) % label_divisor
    color = lut[category]
    # things: brighten or darken each instance a little so neighbours of one class stay apart
    shade = torch.where(
        number > 0, 0.75 + 0.5 * ((number * 0.618034) % 1.0), torch.ones_like(number, dtype=torch.float)
    )
    color = (color * shade[..., None]).clamp(0, 255)
    base = image.to(device).float()
    blended = torch.where(void[..., None], base, base * (1 - alpha) + color * alpha)
    border = torch.zeros_like(void)
    border[1:, :] |= panoptic[1:, :] != panoptic[:-1, :]
    border[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
    blended[border] = 255.0
    return blended.round().to(torch.uint8)


def tracked_display_map(
    panoptic: torch.Tensor, instance: torch.Tensor, track_map: torch.Tensor, label_divisor: int
) -> torch.Tensor:
    """The map an overlay of a tracked frame shows: things as ``category * label_divisor + n`` with
    ``n`` derived from the track id (so a track keeps its shade), stuff as is, untracked things and
    void as -1. All ``[H, W]`` on one device; ``panoptic`` int64, ``instance`` the per-frame thing
    numbers (0 for stuff), ``track_map`` the track ids (0 for none)."""
    track_map = track_map.to(panoptic.device).long()
    category = torch.div(panoptic.clamp(min=0), label_divisor, rounding_mode="floor")
    stuff = (panoptic >= 0) & (instance == 0)
    return torch.where(
        track_map > 0,
        category * label_divisor + track_map % (label_divisor - 1) + 1,
        torch.where(stuff, panoptic, -1),
    )
