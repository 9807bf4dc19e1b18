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

import functools

import cv2
import numpy as np

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
    color, void = palette(label_set, label_divisor).paint(panoptic)

    def expand(values: np.ndarray) -> np.ndarray:
        return values if frame is None else frame.expand(values)

    picture = cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, expand(color), alpha, 0.0)
    if void.any():
        cv2.copyTo(image, expand(void.view(np.uint8)), picture)  # void pixels keep the image
    border = _borders(panoptic, rows, cols)
    if border is not None:
        cv2.bitwise_or(picture, (BORDER, BORDER, BORDER, 0), dst=picture, mask=border)
    return picture


def _borders(panoptic: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """``[H, W]`` uint8 mask of the camera pixels whose label differs from the pixel above or to the
    left, for the map ``panoptic[rows][:, cols]``, computed on the few camera rows and columns that copy
    another map row or column than their neighbour (None: no borders)."""
    down, right = _changes(rows), _changes(cols)
    if not down.size and not right.size:
        return None
    # left borders at the map's rows, then whole rows copied; top borders on the camera rows they are on
    per_row = np.zeros((panoptic.shape[0], cols.size), dtype=np.uint8)
    per_row[:, right] = panoptic[:, cols[right]] != panoptic[:, cols[right - 1]]
    border = per_row.take(rows, axis=0)
    border[down] |= (panoptic[rows[down]] != panoptic[rows[down - 1]]).take(cols, axis=1)
    return border


class Palette:
    """The 8-bit overlay color of every panoptic id ``category * label_divisor + n`` of a label set:
    the category's color, things (``n > 0``) brightened or darkened a little per instance so that
    neighbours of one class stay apart. Made once per label set and divisor (:func:`palette`)."""

    def __init__(self, label_set: LabelSet, label_divisor: int) -> None:
        lut = np.asarray(label_set.color_lut, dtype=np.float64)
        number = np.arange(label_divisor)
        shade = np.where(number > 0, 0.75 + 0.5 * ((number * 0.618034) % 1.0), 1.0)
        colors = np.clip(np.rint(lut[:, None, :] * shade[None, :, None]), 0, 255).astype(np.uint8)
        self.label_divisor = label_divisor
        self.colors = colors.reshape(-1, 3)  # row = panoptic id

    def paint(self, panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[h, w, 3]`` uint8 colors of an ``[h, w]`` panoptic map and its ``[h, w]`` bool void mask
        (-1). Categories beyond the label set take the last category's colors."""
        void = panoptic < 0
        index = np.maximum(panoptic, 0)
        size = self.colors.shape[0]
        if index.size and int(index.max()) >= size:
            index = np.where(index < size, index, size - self.label_divisor + index % self.label_divisor)
        return self.colors.take(index, axis=0), void


@functools.lru_cache(maxsize=16)
def palette(label_set: LabelSet, label_divisor: int) -> Palette:
    """The :class:`Palette` of a label set and divisor (made once)."""
    return Palette(label_set, label_divisor)


def _changes(index: np.ndarray) -> np.ndarray:
    """Positions ``i >= 1`` of a nearest-neighbour index that copy another source than ``i - 1``."""
    return np.flatnonzero(index[1:] != index[:-1]) + 1


def tracked_display_map(
    semantic: np.ndarray, track_ids: np.ndarray, label_set: LabelSet, label_divisor: int
) -> np.ndarray:
    """The panoptic map an overlay of a tracked frame shows, from the published label maps (host
    ``[h, w]`` arrays): things as ``category * label_divisor + n`` with ``n`` derived from the track id
    (so a track keeps its shade), stuff as ``category * label_divisor``, things without a published
    track and void as -1. ``semantic`` holds category ids (the label set's void value for void),
    ``track_ids`` the track id of each thing pixel (0 elsewhere)."""
    category = semantic.astype(np.int64)
    tracked = category * label_divisor + track_ids % (label_divisor - 1) + 1
    shown = np.where(_unshaded(label_set)[category], -1, category * label_divisor)
    return np.where(track_ids > 0, tracked, shown)


@functools.lru_cache(maxsize=16)
def _unshaded(label_set: LabelSet) -> np.ndarray:
    """By category id, void value included: True for things and void (without a track they show
    nothing), False for stuff. Made once per label set."""
    table = np.zeros(label_set.void_semantic + 1, dtype=bool)
    table[: label_set.is_thing_lut.size] = label_set.is_thing_lut
    table[label_set.void_semantic] = True
    return table
