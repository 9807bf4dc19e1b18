"""Colored overlays of panoptic results for people (rviz, the ``infer`` command).

The colors are decided at the label map's own resolution (the model's, a few hundred pixels a side);
only the final picture is made at the camera's: the color map is expanded by the nearest-neighbour
mapping of :class:`~panoptic_ros.core.segments.PixelFrame` (a gather of columns at the model's rows,
then whole rows copied), blended with the camera image in 8 bits (OpenCV), and segment borders are
drawn only on the camera rows and columns where the mapped label can change. The result equals
blending the camera-size label map pixel by pixel (up to one level of rounding: colors are rounded to
8 bits before the blend).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.errors import ConfigError

#: Value of border pixels in every channel.
BORDER = 255


def overlay(
    image: np.ndarray,
    panoptic: np.ndarray,
    label_set: LabelSet,
    *,
    frame: PixelFrame | None = None,
    label_divisor: int = 1000,
    alpha: float = 0.55,
) -> np.ndarray:
    """Blend category colors over an image, with things shaded per instance and segment borders drawn.

    Args:
        image: ``H x W x 3`` uint8 host array (any channel order; colors are applied in the order of
            the ``label_set`` colors, i.e. RGB).
        panoptic: ``h x w`` integer ``category_id * label_divisor + n``, -1 void (left unpainted), host.
        frame: how the map's pixels land in the image (nearest); None: the map is the image's size.
        label_divisor: of the panoptic ids.
        alpha: weight of the colors.

    Returns:
        ``H x W x 3`` uint8 host array.
    """
    panoptic = np.asarray(panoptic)
    height, width = image.shape[:2]
    if frame is None:
        if panoptic.shape != (height, width):
            raise ConfigError(f"a {panoptic.shape} map needs a frame to overlay a {image.shape[:2]} image")
        rows, cols = np.arange(height), np.arange(width)
    else:
        rows, cols = frame.rows.host_index, frame.cols.host_index
        if (rows.size, cols.size) != (height, width):
            raise ConfigError(
                f"the frame maps to {(rows.size, cols.size)} but the image is {(height, width)}"
            )
    identity = panoptic.shape == (height, width) and frame is None
    color, void = _colors(panoptic, label_set, label_divisor)

    def expand(values: np.ndarray) -> np.ndarray:
        return values if identity else values.take(cols, axis=1).take(rows, axis=0)

    picture = cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, expand(color), alpha, 0.0)
    cv2.copyTo(image, expand(void.view(np.uint8)), picture)  # void pixels keep the image
    # borders: a camera pixel differs from the one above only on rows copying another model row
    changed = _changes(rows)
    if changed.size:
        differs = (panoptic[rows[changed]] != panoptic[rows[changed - 1]]).take(cols, axis=1)
        picture[changed] = np.where(differs[..., None], BORDER, picture[changed])
    changed = _changes(cols)
    if changed.size:
        differs = (panoptic[:, cols[changed]] != panoptic[:, cols[changed - 1]]).take(rows, axis=0)
        picture[:, changed] = np.where(differs[..., None], BORDER, picture[:, changed])
    return picture


def _colors(panoptic: np.ndarray, label_set: LabelSet, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's 8-bit color (things brightened or darkened a little per instance, so neighbours of
    one class stay apart) and whether it is void."""
    lut = np.asarray(label_set.color_lut, dtype=np.float32)
    void = panoptic < 0
    labels = np.maximum(panoptic, 0).astype(np.int64)
    category = np.minimum(labels // label_divisor, lut.shape[0] - 1)
    number = labels % label_divisor
    shade = np.where(number > 0, 0.75 + 0.5 * ((number * 0.618034) % 1.0), 1.0).astype(np.float32)
    color = np.clip(np.rint(lut[category] * shade[..., None]), 0, 255).astype(np.uint8)
    return color, void


def _changes(index: np.ndarray) -> np.ndarray:
    """Positions ``i >= 1`` of a nearest-neighbour index that copy another source than ``i - 1``."""
    return np.flatnonzero(index[1:] != index[:-1]) + 1


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
