"""The tracker's per-frame pixel statistics on the CPU as one compiled loop (numba).

:func:`panoptic_ros.tracking.association.instance_statistics` on the CPU finds the pixels inside an
instance of either frame, then counts every (previous, current) pair in a joint histogram and sums
the image per current instance, by a dozen PyTorch ops. :func:`pixel_statistics` does it in one pass
over the maps with the same arithmetic, in the same pixel order (row-major), so the counts and float64
sums are the same, bit for bit. :func:`index_statistics` also turns the frame's instance-id map into
compact indices in that pass (what :func:`index_map_cpu` does alone). What the association takes from
the counts (mask IoU, areas, mean colors) is made by one more compiled step (:func:`_results`), the
same numbers as numpy's and PyTorch's. Compiled on first use and cached
on disk (``cache=True``); :func:`compile_kernels` compiles it ahead of the first frame.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

#: Pixels per block of :func:`_statistics`' vectorized passes.
_BLOCK = 512


@njit(cache=True, nogil=True)
def _statistics(  # noqa: PLR0917 (compiled loops take positional arguments)
    previous: np.ndarray,
    values: np.ndarray,
    table: np.ndarray,
    num_previous: int,
    count: int,
    weights: np.ndarray,
    planes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``(index [n] int64, hist [P + 1, T + 1] int64, sums [T + 1, 3] float64)`` over the ``[n]``
    pixels inside an instance of either frame: the current index of pixel ``p`` is ``table[values[p]]``
    (0 for values outside the table), returned as ``index``; with an empty ``table`` ``values`` are the
    indices ``0..T`` already and ``index`` is empty. ``previous`` ``0..P`` int64 (``[0]`` for none: all
    0). Each pixel counted ``weights[p]`` times (``[n]`` int64; ``[0]`` for once) and its values in
    ``planes`` (``[3, n]``; ``[3, 0]`` for no colors) added ``weights[p]`` times to its current
    instance's sums. ``hist[0, 0]`` stays 0 (the pixels outside both are not visited)."""
    hist = np.zeros((num_previous + 1, count + 1), dtype=np.int64)
    sums = np.zeros((count + 1, 3), dtype=np.float64)
    size = table.size
    lookup = size > 0
    pixels = values.size
    index = np.empty(pixels if lookup else 0, dtype=np.int64)
    has_previous = previous.size > 0
    weighted = weights.size > 0
    colored = planes.shape[1] > 0
    # block by block of pixels: the indices and whether each pixel is inside an instance of either
    # frame in vectorized passes (into bytes), then only the 8-byte words holding such a pixel visited,
    # in pixel order (the sums add up in the same order)
    inside = np.zeros(_BLOCK, dtype=np.uint8)
    packed = inside.view(np.uint64)
    current = np.empty(_BLOCK, dtype=np.int64)
    # the counts and sums of a run of pixels of one pair (one current instance) kept in registers, in
    # the same order of additions: adding to memory pixel after pixel waited for the previous store
    run_a, run_b, run_count = 0, 0, 0
    sum_b, red, green, blue = 0, 0.0, 0.0, 0.0
    for start in range(0, pixels, _BLOCK):
        stop = min(start + _BLOCK, pixels)
        m = stop - start
        block_values = values[start:stop]
        if lookup:
            block_index = index[start:stop]
            for i in range(m):
                v = block_values[i]
                b = table[v] if (v >= 0) & (v < size) else 0
                current[i] = b
                block_index[i] = b
        else:
            for i in range(m):
                current[i] = block_values[i]
        if has_previous:
            block_previous = previous[start:stop]
            for i in range(m):
                inside[i] = (current[i] != 0) | (block_previous[i] != 0)
        else:
            for i in range(m):
                inside[i] = current[i] != 0
        inside[m:] = 0
        for w in range(_BLOCK // 8):
            if packed[w] == 0:
                continue
            for i in range(8 * w, 8 * w + 8):
                if not inside[i]:
                    continue
                p = start + i
                b = current[i]
                a = previous[p] if has_previous else 0
                weight = weights[p] if weighted else 1
                if a != run_a or b != run_b:  # a run of one pair ends: its count stored
                    hist[run_a, run_b] += run_count
                    run_a, run_b, run_count = a, b, 0
                run_count += weight
                if colored:
                    if b != sum_b:  # the run's sums stored, the next instance's taken up
                        sums[sum_b, 0], sums[sum_b, 1], sums[sum_b, 2] = red, green, blue
                        sum_b = b
                        red, green, blue = sums[b, 0], sums[b, 1], sums[b, 2]
                    scale = np.float64(weight)
                    red += np.float64(planes[0, p]) * scale
                    green += np.float64(planes[1, p]) * scale
                    blue += np.float64(planes[2, p]) * scale
    hist[run_a, run_b] += run_count
    if colored:
        sums[sum_b, 0], sums[sum_b, 1], sums[sum_b, 2] = red, green, blue
    return index, hist, sums


@njit(cache=True, nogil=True)
def _results(
    hist: np.ndarray, sums: np.ndarray, colored: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """What the association takes from :func:`_statistics`' ``hist`` (``[P + 1, T + 1]``) and ``sums``
    (``[T + 1, 3]``), as :func:`~panoptic_ros.tracking.association.mask_iou` and
    :func:`~panoptic_ros.tracking.association.mean_colors` compute them: ``(mask IoU [P, T] float64,
    areas [T] int64, mean colors [T, 3] float64; [0, 3] without colors)``. The IoU's sums are of
    integers (exact in float64, in any order); a mean is the float32 sum over the float32 area (at
    least 1), as a float32 division gives it."""
    rows, cols = hist.shape
    row_areas = np.zeros(rows, dtype=np.int64)
    col_areas = np.zeros(cols, dtype=np.int64)
    for a in range(rows):
        for b in range(cols):
            row_areas[a] += hist[a, b]
            col_areas[b] += hist[a, b]
    iou = np.zeros((rows - 1, cols - 1), dtype=np.float64)
    for a in range(1, rows):
        for b in range(1, cols):
            inter = np.float64(hist[a, b])
            union = np.float64(row_areas[a]) + np.float64(col_areas[b]) - inter
            if union > 0:
                iou[a - 1, b - 1] = inter / union
    colors = np.zeros((cols - 1 if colored else 0, 3), dtype=np.float64)
    if colored:
        for b in range(1, cols):
            area = np.float32(max(col_areas[b], 1))
            for c in range(3):
                colors[b - 1, c] = np.float64(np.float32(sums[b, c]) / area)
    return iou, col_areas[1:].copy(), colors


_NONE = np.zeros(0, dtype=np.int64)
_NO_PLANES = np.zeros((3, 0), dtype=np.float32)


def pixel_statistics(
    previous: torch.Tensor,
    current: torch.Tensor,
    num_previous: int,
    count: int,
    *,
    image: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What :func:`~panoptic_ros.tracking.association.instance_statistics` gives, for two ``[H, W]``
    int64 CPU index maps: mask IoU ``[P, T]`` of every (previous, current) pair, current areas ``[T]``
    and, with ``image`` (``[H, W, 3]``), the mean color ``[T, 3]`` of each current instance (0 where it
    has no pixel); each pixel counted ``weights`` (``[H, W]`` int64) times. The means are those of
    :func:`~panoptic_ros.tracking.association.mean_colors`: float64 sums, then a float32 division by the
    float32 area. Areas and colors in float64 with colors (as the device's one packed transfer gives
    them), areas int64 without."""
    _, iou, areas, colors = _run(previous, _flat(current), _NONE, num_previous, count, image, weights)
    return iou, areas, colors


def index_statistics(
    instance_map: torch.Tensor,
    ids: np.ndarray,
    previous: torch.Tensor | None,
    num_previous: int,
    *,
    image: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`index_map_cpu` of a CPU id map (ids below its lookup table's bound) and
    :func:`pixel_statistics` of the indices against ``previous`` (None: no previous frame), in one pass:
    ``(index [H, W] int64 tensor, mask IoU, areas, colors)``, the same numbers as the two."""
    table = _id_table(ids)
    index, iou, areas, colors = _run(
        previous,
        np.ascontiguousarray(instance_map.numpy()).reshape(-1),
        table,
        num_previous,
        ids.size,
        image,
        weights,
    )
    return torch.from_numpy(index.reshape(instance_map.shape)), iou, areas, colors


def _flat(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.reshape(-1).numpy())


def _run(  # noqa: PLR0917 (the compiled loop's arguments, prepared)
    previous: torch.Tensor | None,
    values: np.ndarray,
    table: np.ndarray,
    num_previous: int,
    count: int,
    image: torch.Tensor | None,
    weights: torch.Tensor | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_statistics` of host-ready arrays, then :func:`_results`: ``(index, mask IoU, areas,
    colors)`` (see :func:`pixel_statistics`)."""
    planes = _NO_PLANES
    if image is not None:
        planes = np.ascontiguousarray(image.permute(2, 0, 1).reshape(3, -1).numpy())  # channel-first: a view
    flat_weights = (
        _NONE if weights is None else np.ascontiguousarray(weights.reshape(-1).numpy(), dtype=np.int64)
    )
    index, hist, sums = _statistics(
        _NONE if previous is None else _flat(previous),
        values,
        table,
        int(num_previous),
        int(count),
        flat_weights,
        planes,
    )
    iou, areas, colors = _results(hist, sums, image is not None)
    if image is None:
        return index, iou, areas, None
    return index, iou, areas.astype(np.float64), colors


def _id_table(ids: np.ndarray) -> np.ndarray:
    """``[max(ids) + 1]`` int64: ``k + 1`` at ``ids[k]``, 0 elsewhere."""
    table = np.zeros(int(ids.max(initial=-1)) + 1, dtype=np.int64)
    table[ids] = np.arange(1, ids.size + 1)
    return table


@njit(cache=True, nogil=True)
def _lookup(values: np.ndarray, table: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``[n]`` int64: ``table[v]`` for each value ``v`` of ``values`` (``[n]`` integer) inside the
    table, 0 for the others (negative or past its end)."""
    size = table.size
    out = np.empty(values.size, dtype=np.int64)
    for p in range(values.size):
        v = values[p]
        out[p] = table[v] if 0 <= v < size else 0
    return out


def index_map_cpu(instance_map: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
    """:func:`~panoptic_ros.tracking.association.index_map` of a CPU map whose ids are below its lookup
    table's bound, in one pass: ``[H, W]`` int64, ``k + 1`` where the map holds ``ids[k]``, else 0."""
    values = np.ascontiguousarray(instance_map.numpy()).reshape(-1)
    return torch.from_numpy(_lookup(values, _id_table(ids)).reshape(instance_map.shape))


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the loops for the tracker's inputs (int64 maps, int64
    weights, float32 images, with and without weights and colors; int32 and int64 id maps)."""
    for dtype in (torch.int32, torch.int64):
        index_map_cpu(torch.zeros((2, 2), dtype=dtype), np.arange(1, 3))
    maps = torch.zeros((2, 2), dtype=torch.int64)
    image = torch.zeros((2, 2, 3), dtype=torch.float32)
    pixel_statistics(maps, maps, 0, 0, image=image, weights=torch.ones((2, 2), dtype=torch.int64))
    pixel_statistics(maps, maps, 0, 0)
    for dtype in (torch.int32, torch.int64):  # the fused lookup of a frame's id map
        instance_map = torch.zeros((2, 2), dtype=dtype)
        index_statistics(instance_map, np.arange(1, 3), maps, 0, image=image, weights=torch.ones_like(maps))
        index_statistics(instance_map, np.arange(1, 3), None, 0)
