"""Colored overlays of panoptic results for people (rviz, the ``infer`` command).

The colors are decided at the label map's own resolution (the model's, a few hundred pixels a side);
only the final picture is made at the camera's: the colors at the camera's columns are painted for
each model row (the nearest-neighbour mapping of :class:`~panoptic_ros.core.segments.PixelFrame`)
into one row in the cache, and the camera rows that copy the model row are blended with it (the
colors in the image's channel order; each blended row's channels reversed on its way into the picture
where it is wanted in the other order, e.g. a BGR picture of an RGB frame); segment
borders and void pixels are found at the map's resolution and drawn on the camera pixels that copy
them (compiled loops: :mod:`panoptic_ros.core.overlay_cpu`). The result equals blending the camera-size
label map pixel by pixel (up to one level of rounding: colors are rounded to 8 bits before the
blend).
"""

from __future__ import annotations

import functools

import numpy as np

from panoptic_ros.core.encodings import ColorOrder
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.overlay_cpu import display_map, paint_rows
from panoptic_ros.core.segments import PixelFrame, spans
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
    order: ColorOrder = "rgb",
    swap: bool = False,
) -> np.ndarray:
    """Blend category colors over an image, with things shaded per instance and segment borders drawn.

    Args:
        image: ``H x W x 3`` uint8 host array, channels in ``order``.
        panoptic: ``h x w`` integer ``category_id * label_divisor + n``, -1 void (left unpainted), host.
        frame: how the map's pixels land in the image (nearest); None: the map is the image's size.
        label_divisor: of the panoptic ids.
        alpha: weight of the colors, in ``[0, 1]``.
        order: the image's channel order: the colors are applied in it.
        swap: give the picture the image's channels in reverse order (an RGB image, a BGR picture:
            what the overlay topic publishes), as each row is written.

    Raises:
        ConfigError: ``alpha`` outside ``[0, 1]``, an unknown ``order``, or a map and frame (or image)
            that do not fit.

    Returns:
        ``H x W x 3`` uint8 host array.
    """
    painter = OverlayPainter(
        image, panoptic, label_set, frame=frame, label_divisor=label_divisor, alpha=alpha, order=order,
        swap=swap,
    )  # fmt: skip
    painter.paint(0, painter.height)
    return painter.picture


class OverlayPainter:
    """The picture of an :func:`overlay` (same arguments, checked here), painted band by band of camera
    rows by :meth:`paint`: bands write disjoint rows of :attr:`picture`, so several threads may paint
    bands of one picture at once (the compiled loops release the GIL). The picture is complete once
    every row has been painted once, in any order of bands.

    Raises:
        ConfigError: as :func:`overlay`.
    """

    def __init__(
        self,
        image: np.ndarray,
        panoptic: np.ndarray,
        label_set: LabelSet,
        *,
        frame: PixelFrame | None = None,
        label_divisor: int = 1000,
        alpha: float = 0.55,
        order: ColorOrder = "rgb",
        swap: bool = False,
    ) -> None:
        panoptic = np.asarray(panoptic)
        height, width = image.shape[:2]
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"the overlay's alpha must be in [0, 1], got {alpha}")
        if order not in ("rgb", "bgr"):
            raise ConfigError(f"the image's channel order must be 'rgb' or 'bgr', got {order!r}")
        if frame is None:
            if panoptic.shape != (height, width):
                raise ConfigError(
                    f"a {panoptic.shape} map needs a frame to overlay a {image.shape[:2]} image"
                )
            rows, cols = np.arange(height), np.arange(width)
        else:
            rows, cols = frame.rows.host_index, frame.cols.host_index
            if (rows.size, cols.size) != (height, width):
                raise ConfigError(
                    f"the frame maps to {(rows.size, cols.size)} but the image is {(height, width)}"
                )
        labels = np.ascontiguousarray(panoptic)
        # positions nondecreasing (a frame's, or the image's own): the last is the largest
        too_far = labels.ndim != 2 or (rows.size and rows[-1] >= labels.shape[0])
        if too_far or (cols.size and cols[-1] >= labels.shape[1]):
            raise ConfigError(f"the frame copies map pixels past the {labels.shape} map it is given")
        # the camera rows and columns copying each map row and column: the frame's (made once per camera
        # geometry) where it is the map's size
        self._row_span, self._col_span = (
            (frame.rows.host_spans, frame.cols.host_spans)
            if frame is not None
            and (frame.rows.host_spans.shape[0], frame.cols.host_spans.shape[0]) == labels.shape
            else (spans(rows, labels.shape[0]), spans(cols, labels.shape[1]))
        )
        self._image = np.ascontiguousarray(image)
        self._labels = labels
        self._rows, self._cols = rows, cols
        self._colors = palette(label_set, label_divisor).in_order(order)
        self._alpha = float(alpha)
        self._label_divisor = int(label_divisor)
        self._swap = bool(swap)
        #: ``[H, W, 3]`` uint8: the overlay, complete once :meth:`paint` has covered every row.
        self.picture = np.empty_like(self._image)

    @property
    def height(self) -> int:
        """The picture's rows."""
        return int(self.picture.shape[0])

    def paint(self, start: int, stop: int) -> None:
        """Paint camera rows ``[start, stop)``: the image blended with the colors of the map pixels
        they copy (the channels reversed with ``swap``) in one compiled pass that reads the image once
        and writes the picture once (each map row's colors painted once into a row in the cache), then
        the void pixels restored and the borders drawn on these rows."""
        paint_rows(
            self.picture, self._image, self._labels, self._colors, self._rows, self._cols, self._row_span,
            self._col_span, start, stop, self._alpha, self._label_divisor, self._swap, BORDER,
        )  # fmt: skip


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
        self._bgr = np.ascontiguousarray(self.colors[:, ::-1])

    def in_order(self, order: ColorOrder) -> np.ndarray:
        """:attr:`colors` (``[ids, 3]`` uint8, RGB) with their channels in ``order``."""
        return self.colors if order == "rgb" else self._bgr


@functools.lru_cache(maxsize=16)
def palette(label_set: LabelSet, label_divisor: int) -> Palette:
    """The :class:`Palette` of a label set and divisor (made once)."""
    return Palette(label_set, label_divisor)


def tracked_display_map(
    semantic: np.ndarray, track_ids: np.ndarray, label_set: LabelSet, label_divisor: int
) -> np.ndarray:
    """The panoptic map an overlay of a tracked frame shows, from the published label maps (host
    ``[h, w]`` arrays): things as ``category * label_divisor + n`` with ``n`` derived from the track id
    (so a track keeps its shade), stuff as ``category * label_divisor``, things without a published
    track and void as -1. ``semantic`` holds category ids (the label set's void value for void),
    ``track_ids`` the track id of each thing pixel (0 elsewhere). int32 where every id fits, else int64;
    one compiled pass (:func:`~panoptic_ros.core.overlay_cpu.display_map`)."""
    if semantic.shape != track_ids.shape or semantic.ndim != 2:
        raise ConfigError(f"a {semantic.shape} category map with a {track_ids.shape} track map")
    stuff = _stuff_ids(label_set, label_divisor)
    return display_map(np.ascontiguousarray(semantic), np.ascontiguousarray(track_ids), stuff, label_divisor)


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
