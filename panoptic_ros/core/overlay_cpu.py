"""The overlay's per-pixel work as compiled loops (numba), for :mod:`panoptic_ros.core.overlay`.

What numpy or OpenCV needed several passes or a dozen calls on small arrays for is done here in one
pass each:

- :func:`display_map`: the panoptic map a tracked frame shows (stuff by category, things shaded by
  track id);
- :func:`blend_rows`: camera rows of the image blended with the colors of the map rows they copy: a
  map row's colors at the camera's columns painted into one cache-resident row, run by run of equal
  labels (one color lookup per run), right before the camera rows copying it; each camera row then a
  flat loop over its bytes in float32 (vectorized by the compiler), its channels reversed on the way
  into the picture where asked for;
- :func:`restore_void_and_draw_borders`: void camera pixels back to the image's values, then the
  borders, found at the map's resolution (a camera column that copies another map column than its
  left neighbour can hold a left border, on the camera rows of each map row where the labels differ;
  top borders likewise) and drawn on every camera pixel that copies them; the comparisons of a row
  vectorized into bytes, only the words holding a difference visited;
- :func:`paint_rows`: both for a band of camera rows in one call (bands painted on two threads).

Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def display_map(
    semantic: np.ndarray, track_ids: np.ndarray, stuff: np.ndarray, label_divisor: int
) -> np.ndarray:  # pragma: no cover - compiled
    """``[h, w]`` in ``stuff``'s type: ``category * label_divisor + track % (label_divisor - 1) + 1``
    where ``track_ids`` (``[h, w]``) is not 0, else ``stuff[semantic]`` (``category * label_divisor``
    for stuff, -1 for things without a track and void). A track's shade (a division) is worked out once
    per run of its pixels.

    Raises:
        IndexError: a category outside ``stuff`` (checked here: the table is read unchecked).
    """
    height, width = semantic.shape
    shown = np.empty((height, width), dtype=stuff.dtype)
    last_track = 0
    shade = 0
    for y in range(height):
        for x in range(width):
            category = semantic[y, x]
            if category < 0 or category >= stuff.size:
                raise IndexError("a category id outside the label set's table")
            track = track_ids[y, x]
            if track != 0:
                if track != last_track:
                    last_track = track
                    shade = track % (label_divisor - 1) + 1
                shown[y, x] = category * label_divisor + shade
            else:
                shown[y, x] = stuff[np.uint64(category)]  # ids are not negative: no wraparound check
    return shown


@njit(cache=True, nogil=True)
def blend_rows(  # noqa: PLR0917 (compiled loops take positional arguments)
    picture: np.ndarray,
    image: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray,
    col_span: np.ndarray,
    rows: np.ndarray,
    start: int,
    stop: int,
    alpha: float,
    label_divisor: int,
    color_row: np.ndarray,
    swap: bool,
    scratch: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """In place on camera rows ``[start, stop)`` of ``picture`` (``[H, W, 3]`` uint8, C-contiguous like
    ``image``): ``(1 - alpha) * image + alpha * color`` in float32, rounded half to even, ``color`` the
    color of the map pixel (panoptic ids ``labels`` ``[h, w]``) each camera pixel copies: row ``id`` of
    ``colors`` (``[N, 3]``, in the image's channel order); void (-1) takes row 0 (it is restored later),
    ids past the table take the last category's row of the same instance number. ``rows`` ``[H]``: the
    map row each camera row copies; ``col_span`` ``[w, 2]``: the camera columns ``[start, end)``
    copying each map column (nondecreasing, together covering ``[0, W)``). ``swap``: the picture's
    channels in the reverse order of the image's.

    A map row's colors at the camera's columns are painted into ``color_row`` (``[W * 3]`` uint8, in a
    core's cache) once for the camera rows that copy it, run by run of equal labels (one color lookup
    per run; within a run, whole groups of 8 camera pixels as three 8-byte words of the color repeated);
    each camera row is then a flat loop over its bytes, vectorized by the compiler, into the picture or,
    with ``swap``, into ``scratch`` (``[W * 3]`` uint8, in the cache) and from there into the picture
    pixel by pixel with the channels reversed (a byte shuffle the compiler vectorizes too): the picture
    is written once either way."""
    size = image.shape[1] * image.shape[2]
    map_width = labels.shape[1]
    table = colors.shape[0]
    weight = np.float32(alpha)
    keep = np.float32(1.0 - alpha)
    words = color_row[: size - size % 24].view(np.uint64)  # 8 camera pixels: 3 words
    for i in range(start, stop):
        r = rows[i]
        if i == start or r != rows[i - 1]:
            # the run of each label, written out: numba's cache would miss edits to a helper elsewhere
            c = 0
            while c < map_width:
                label = labels[r, c]
                end = c + 1
                while end < map_width and labels[r, end] == label:
                    end += 1
                index = max(label, 0)
                if index >= table:
                    index = table - label_divisor + index % label_divisor
                red = np.uint64(colors[index, 0])
                green = np.uint64(colors[index, 1])
                blue = np.uint64(colors[index, 2])
                first = col_span[c, 0]
                stop_column = col_span[end - 1, 1]
                # whole groups of 8 camera pixels as three 8-byte words of the color repeated, the
                # pixels before and after them byte by byte
                group_start = min((first + 7) // 8, stop_column // 8)
                group_stop = max(stop_column // 8, group_start)
                pixel = np.uint64(red | (green << np.uint64(8)) | (blue << np.uint64(16)))
                word0 = pixel | (pixel << np.uint64(24)) | (red << np.uint64(48)) | (green << np.uint64(56))
                word1 = (blue | (pixel << np.uint64(8)) | (pixel << np.uint64(32))) | (red << np.uint64(56))
                word2 = (green | (blue << np.uint64(8))) | (pixel << np.uint64(16)) | (pixel << np.uint64(40))
                for g in range(group_start, group_stop):
                    words[3 * g] = word0
                    words[3 * g + 1] = word1
                    words[3 * g + 2] = word2
                for j in range(first, min(8 * group_start, stop_column)):
                    color_row[3 * j] = red
                    color_row[3 * j + 1] = green
                    color_row[3 * j + 2] = blue
                for j in range(max(8 * group_stop, first), stop_column):
                    color_row[3 * j] = red
                    color_row[3 * j + 1] = green
                    color_row[3 * j + 2] = blue
                c = end
        source = image[i].reshape(size)
        target = picture[i].reshape(size)
        blended = scratch if swap else target
        for k in range(size):
            blended[k] = np.uint8(
                np.int32(np.rint(np.float32(source[k]) * keep + np.float32(color_row[k]) * weight))
            )
        if swap:  # the row's pixels into the picture with their channels reversed (vectorized too)
            for j in range(image.shape[1]):
                target[3 * j] = scratch[3 * j + 2]
                target[3 * j + 1] = scratch[3 * j + 1]
                target[3 * j + 2] = scratch[3 * j]


@njit(cache=True, nogil=True)
def restore_void_and_draw_borders(  # noqa: PLR0917 (compiled loops take positional arguments)
    picture: np.ndarray,
    image: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    row_span: np.ndarray,
    col_span: np.ndarray,
    swap: bool,
    border: int,
    start: int,
    stop: int,
) -> None:  # pragma: no cover - compiled
    """In place on camera rows ``[start, stop)`` of ``picture`` (``[H, W, 3]``): the camera pixels of
    void map pixels (``labels`` ``[h, w]`` < 0) take ``image``'s values (channels reversed with
    ``swap``), then every camera pixel whose label differs from the pixel above or to the left becomes
    ``border``. ``rows`` ``[H]``, ``cols`` ``[W]``: the map row (column) each camera row (column)
    copies, nondecreasing; ``row_span`` ``[h, 2]``, ``col_span`` ``[w, 2]``: the camera rows (columns)
    ``[start, end)`` copying each map row (column). Bands of rows painted apart (on other threads)
    make the picture painted whole."""
    width = labels.shape[1]
    if stop <= start:
        return
    first_row, last_row = rows[start], rows[stop - 1] + 1  # the map rows the band copies
    for r in range(first_row, last_row):
        row = labels[r]
        void = 0
        for c in range(width):  # vectorized: most rows have no void
            void += row[c] < 0
        if void == 0:
            continue
        for c in range(width):
            if row[c] >= 0:
                continue
            for i in range(max(row_span[r, 0], start), min(row_span[r, 1], stop)):
                for j in range(col_span[c, 0], col_span[c, 1]):
                    for k in range(3):
                        picture[i, j, k] = image[i, j, 2 - k] if swap else image[i, j, k]
    # the camera columns that copy another map column than their left neighbour: (camera column, its
    # map column, the neighbour's)
    first = np.empty(cols.size, dtype=np.int64)
    here = np.empty(cols.size, dtype=np.int64)
    left = np.empty(cols.size, dtype=np.int64)
    count = 0
    for j in range(1, cols.size):
        if cols[j] != cols[j - 1]:
            first[count] = j
            here[count] = cols[j]
            left[count] = cols[j - 1]
            count += 1
    # per map row (per camera row pair for top borders), the label comparisons in one vectorized pass
    # into bytes, then only the 8-byte words that hold a difference visited
    words = (max(count, width) + 7) // 8
    differs = np.zeros(words * 8, dtype=np.uint8)
    packed = differs.view(np.uint64)
    consecutive = count == width - 1  # every map column copied: column e + 1's left neighbour is e
    for r in range(first_row, last_row):
        row = labels[r]
        if consecutive:
            for e in range(count):
                differs[e] = row[e + 1] != row[e]
        else:
            for e in range(count):
                differs[e] = row[here[e]] != row[left[e]]
        for w in range(words):
            if packed[w] == 0:
                continue
            for e in range(8 * w, 8 * w + 8):
                if differs[e]:
                    j = first[e]
                    for i in range(max(row_span[r, 0], start), min(row_span[r, 1], stop)):
                        for k in range(3):
                            picture[i, j, k] = border
    differs[:] = 0
    for i in range(max(start, 1), stop):
        if rows[i] == rows[i - 1]:
            continue
        below = labels[rows[i]]
        above = labels[rows[i - 1]]
        for c in range(width):
            differs[c] = below[c] != above[c]
        for w in range(words):
            if packed[w] == 0:
                continue
            for c in range(8 * w, 8 * w + 8):
                if differs[c]:
                    for j in range(col_span[c, 0], col_span[c, 1]):
                        for k in range(3):
                            picture[i, j, k] = border


@njit(cache=True, nogil=True)
def paint_rows(  # noqa: PLR0917 (compiled loops take positional arguments)
    picture: np.ndarray,
    image: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    row_span: np.ndarray,
    col_span: np.ndarray,
    start: int,
    stop: int,
    alpha: float,
    label_divisor: int,
    swap: bool,
    border: int,
) -> None:  # pragma: no cover - compiled
    """Camera rows ``[start, stop)`` of an overlay painted whole in one call (the GIL released once):
    :func:`blend_rows` (its rows in the cache allocated here), then :func:`restore_void_and_draw_borders`
    on the same rows."""
    row_bytes = image.shape[1] * image.shape[2]
    color_row = np.empty(row_bytes, dtype=np.uint8)
    scratch = np.empty(row_bytes, dtype=np.uint8)
    blend_rows(
        picture, image, labels, colors, col_span, rows, start, stop, alpha, label_divisor, color_row, swap,
        scratch,
    )  # fmt: skip
    restore_void_and_draw_borders(
        picture, image, labels, rows, cols, row_span, col_span, swap, border, start, stop
    )


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the loops for the engine's host maps, so that the first
    overlay does not pay for it: category maps int32 (from a device) or int64 (the CPU's, viewed), int32
    track maps, panoptic ids int32 (shown, tracked) or int64 (the CPU's map, untracked)."""
    track_ids = np.zeros((2, 2), dtype=np.int32)
    stuff = np.zeros(2, dtype=np.int32)
    colors = np.zeros((1000, 3), dtype=np.uint8)
    index = np.zeros(2, dtype=np.int64)
    span = np.array([[0, 2], [2, 2]], dtype=np.int64)  # both positions copy the first source
    picture = np.zeros((2, 2, 3), dtype=np.uint8)
    row = np.zeros(6, dtype=np.uint8)
    for semantic in (track_ids, track_ids.astype(np.int64)):
        display_map(semantic, track_ids, stuff, 1000)
        shown = semantic  # the same types as the panoptic maps an overlay is given
        for swap in (False, True):
            blend_rows(picture, picture, shown, colors, span, index, 0, 2, 0.55, 1000, row, swap, row.copy())
        restore_void_and_draw_borders(picture, picture, shown, index, index, span, span, True, 255, 0, 2)
        paint_rows(picture, picture, shown, colors, index, index, span, span, 0, 2, 0.55, 1000, True, 255)
