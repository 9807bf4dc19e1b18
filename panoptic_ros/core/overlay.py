"""Colored overlays of panoptic results for people (rviz, the ``infer`` command).

The colors are decided at the label map's own resolution (the model's, a few hundred pixels a side);
only the final picture is made at the camera's: the color map is expanded by the nearest-neighbour
mapping of :class:`~panoptic_ros.core.segments.PixelFrame` (a gather of columns at the model's rows,
then whole rows copied, band by band of camera rows) and blended with the camera image in 8 bits
(OpenCV); segment borders and void pixels are found at the map's resolution and drawn pixel by
pixel. The result equals blending the camera-size label map pixel by pixel (up to one level of
rounding: colors are rounded to 8 bits before the blend).
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
#: Above this share of void map pixels, void is restored through an expanded mask, not pixel by pixel.
_DENSE_VOID = 0.05
#: Bytes of picture blended per band of camera rows (with the band's colors, well within a core's cache).
_BAND_BYTES = 128 * 1024


def overlay(
    image: np.ndarray,
    panoptic: np.ndarray,
    label_set: LabelSet,
    *,
    frame: PixelFrame | None = None,
    label_divisor: int = 1000,
    alpha: float = 0.55,
    swap: bool = False,
) -> np.ndarray:
    """Blend category colors over an image, with things shaded per instance and segment borders drawn.

    Args:
        image: ``H x W x 3`` uint8 host array (any channel order; colors are applied in the order of
            the ``label_set`` colors, i.e. RGB).
        panoptic: ``h x w`` integer ``category_id * label_divisor + n``, -1 void (left unpainted), host.
        frame: how the map's pixels land in the image (nearest); None: the map is the image's size.
        label_divisor: of the panoptic ids.
        alpha: weight of the colors.
        swap: give the picture the image's channels in reverse order (an RGB image, a BGR picture:
            what the overlay topic publishes), at no extra pass.

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
    color, void = palette(label_set, label_divisor).paint(panoptic, reverse=swap)
    color_cols = color if frame is None else color.take(cols, axis=1)
    image = np.ascontiguousarray(image)
    picture = _blend(image, color_cols, rows, alpha, swap)
    _keep_void(picture, image, void, (rows, cols), swap=swap)
    picture.reshape(-1, 3)[_border_pixels(panoptic, rows, cols)] = BORDER
    return picture


def _blend(
    image: np.ndarray, color_cols: np.ndarray, rows: np.ndarray, alpha: float, swap: bool
) -> np.ndarray:
    """``image`` (``[H, W, 3]``, channels reversed first with ``swap``) blended with the colors of the map
    rows ``rows`` of ``color_cols`` (``[h, W, 3]``: the colors at the camera's columns), band after band
    of camera rows: each band's colors and picture are made and used while they are in the cache, so
    the camera-size work reads the image once and writes the picture once."""
    height, width = image.shape[:2]
    picture = np.empty_like(image)
    step = max(1, _BAND_BYTES // (3 * width))
    for start in range(0, height, step):
        band = slice(start, min(start + step, height))
        colors = color_cols.take(rows[band], axis=0)
        source = image[band]
        if swap:
            source = cv2.cvtColor(source, cv2.COLOR_RGB2BGR, dst=picture[band])
        cv2.addWeighted(source, 1.0 - alpha, colors, alpha, 0.0, dst=picture[band])
    return picture


def _keep_void(
    picture: np.ndarray,
    image: np.ndarray,
    void: np.ndarray,
    index: tuple[np.ndarray, np.ndarray],
    *,
    swap: bool,
) -> None:
    """Give the camera pixels of void map pixels the image's own values again (channels reversed with
    ``swap``; ``index``: the frame's rows and columns): pixel by pixel where void is rare (the work
    grows with it), through an expanded mask where it covers much of the map."""
    rows, cols = index
    count = np.count_nonzero(void)
    if not count:
        return
    if count > _DENSE_VOID * void.size:
        source = image[..., ::-1] if swap else image
        np.copyto(picture, source, where=void.take(cols, axis=1).take(rows, axis=0)[..., None])
        return
    map_row, map_col = _nonzero(void)
    camera_rows, count = _runs(rows, map_row)
    camera_cols, count = _runs(cols, np.repeat(map_col, count))
    flat = np.repeat(camera_rows, count) * cols.size + camera_cols
    values = image.reshape(-1, 3)[flat]
    picture.reshape(-1, 3)[flat] = values[:, ::-1] if swap else values


def _border_pixels(panoptic: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Flat indices (``row * W + column``) of the camera pixels whose label differs from the pixel above
    or to the left, for the map ``panoptic[rows][:, cols]`` (``rows`` and ``cols`` nondecreasing).

    Found at the map's resolution: a left border can only sit on a camera column that copies another
    map column than its left neighbour, and there it runs down every camera row that copies the map
    row; a top border likewise. Each map-level border is then spread over the camera rows (columns)
    that copy it, so the work grows with the length of the borders, not with the camera's size."""
    width = cols.size
    down, right = _changes(rows), _changes(cols)
    found = [np.zeros(0, dtype=np.int64)]
    if right.size:
        map_row, k = _nonzero(_differ(panoptic, cols[right], cols[right - 1], axis=1))
        camera_rows, count = _runs(rows, map_row)
        found.append(camera_rows * width + np.repeat(right[k], count))
    if down.size:
        m, map_col = _nonzero(_differ(panoptic, rows[down], rows[down - 1], axis=0))
        camera_cols, count = _runs(cols, map_col)
        found.append(np.repeat(down[m], count) * width + camera_cols)
    return np.concatenate(found)


def _differ(labels: np.ndarray, here: np.ndarray, before: np.ndarray, axis: int) -> np.ndarray:
    """``labels`` at the positions ``here`` along ``axis`` differ from those at ``before``; by slices
    where ``here`` is a run of consecutive positions each following its ``before`` (a map enlarged into
    the camera frame), by gathers otherwise."""
    first, last = int(here[0]), int(here[-1])
    if last - first + 1 == here.size and np.array_equal(here - before, np.ones_like(here)):
        ahead = slice(first, last + 1)
        behind = slice(first - 1, last)
        if axis == 1:
            return labels[:, ahead] != labels[:, behind]
        return labels[ahead] != labels[behind]
    return labels.take(here, axis=axis) != labels.take(before, axis=axis)


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the True pixels of a 2D ``mask`` (as :func:`numpy.nonzero`, several times faster
    through the flat positions)."""
    flat = np.flatnonzero(mask)
    row = flat // mask.shape[1]
    return row, flat - row * mask.shape[1]


def _runs(index: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every camera position copying each of ``positions`` (map positions) under the nondecreasing
    nearest-neighbour ``index``, run after run, and the length of each run."""
    first = np.searchsorted(index, positions, side="left")
    count = np.searchsorted(index, positions, side="right") - first
    starts = np.repeat(first - np.cumsum(count) + count, count)
    return starts + np.arange(starts.size), count


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
        self.reversed = np.ascontiguousarray(self.colors[:, ::-1])

    def paint(self, panoptic: np.ndarray, *, reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``[h, w, 3]`` uint8 colors of an ``[h, w]`` panoptic map (channels in reverse order with
        ``reverse``) and its ``[h, w]`` bool void mask (-1). Categories beyond the label set take the
        last category's colors."""
        void = panoptic < 0
        index = np.maximum(panoptic, 0)
        size = self.colors.shape[0]
        if index.size and int(index.max()) >= size:
            index = np.where(index < size, index, size - self.label_divisor + index % self.label_divisor)
        return (self.reversed if reverse else self.colors).take(index, axis=0), void


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
    ``track_ids`` the track id of each thing pixel (0 elsewhere). int32 where every id fits, else int64;
    the track pixels (a part of the map) are computed apart from the table lookup of the rest."""
    stuff = _stuff_ids(label_set, label_divisor)
    shown = stuff.take(semantic)
    tracked = np.flatnonzero(track_ids)
    category = semantic.reshape(-1)[tracked].astype(stuff.dtype)
    number = track_ids.reshape(-1)[tracked] % (label_divisor - 1) + 1
    shown.reshape(-1)[tracked] = category * label_divisor + number
    return shown


@functools.lru_cache(maxsize=16)
def _stuff_ids(label_set: LabelSet, label_divisor: int) -> np.ndarray:
    """By category id, void value included: ``category * label_divisor`` for stuff, -1 for things and
    void (without a track they show nothing). int32 where every panoptic id of the label set fits."""
    size = label_set.void_semantic + 1
    dtype = np.int32 if size * label_divisor < 2**31 else np.int64
    table = np.arange(size, dtype=dtype) * label_divisor
    unshaded = np.zeros(size, dtype=bool)
    unshaded[: label_set.is_thing_lut.size] = label_set.is_thing_lut
    unshaded[label_set.void_semantic] = True
    table[unshaded] = -1
    return table
