"""The nearest center of each thing pixel, the search of center-offset grouping on the CPU, as one
compiled loop (numba) that gives :func:`panoptic_ros.fusion.center_offset.group_pixels`' exhaustive
search's indices exactly (its near ties settled by ``vector_norm``'s own float32 arithmetic), for a
few centers; many centers go to the k-d tree of :mod:`panoptic_ros.fusion.center_offset`. Part of the
fusion's compiled loops (:mod:`panoptic_ros.fusion.center_offset_cpu` compiles it ahead of the first
frame); cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, register_jitable


@intrinsic
def _fma32(typingctx: object, a: types.Type, b: types.Type, c: types.Type) -> tuple:  # pragma: no cover
    """``a * b + c`` of float32 values rounded once (the ``llvm.fma`` intrinsic: the processor's fused
    multiply-add)."""
    signature = types.float32(types.float32, types.float32, types.float32)

    def codegen(context: object, builder: ir.IRBuilder, sig: object, args: tuple) -> ir.Value:
        fma = builder.module.declare_intrinsic("llvm.fma", [ir.FloatType()] * 3)
        return builder.call(fma, args)

    return signature, codegen


@register_jitable
def _vector_norm(dy: np.float32, dx: np.float32) -> np.float32:  # pragma: no cover - compiled
    """``torch.linalg.vector_norm`` of the float32 pair ``(dy, dx)`` on the CPU, bit for bit:
    ``sqrt(fma(dx, dx, dy * dy))`` (tested against it)."""
    return np.sqrt(_fma32(dx, dx, dy * dy))


@njit(cache=True, nogil=True)
def _nearest(
    semantic: np.ndarray, is_thing: np.ndarray, offsets: np.ndarray, centers: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Each thing pixel's nearest center: ``[P]`` int64 center + 1 on thing pixels, 0 elsewhere.
    ``semantic`` ``[H, W]`` int64, ``offsets`` ``[2, H, W]`` float32, ``centers`` ``[K, 2]`` float32
    (K >= 1). By squared float32 distances; a pixel whose two nearest centers lie within float32
    rounding of each other is settled as the exhaustive tensor search settles it: the ``vector_norm``
    to every center (:func:`_vector_norm`), the first minimum.

    Row by row: the row's thing pixels gathered first, then center after center over all of them in a
    loop without branches (selects, vectorized by the compiler), where a loop over the centers of each
    pixel mispredicted its comparisons."""
    height, width = semantic.shape
    num_centers = centers.shape[0]
    instance = np.zeros(height * width, dtype=np.int64)
    position = np.empty(width, dtype=np.int64)
    ly = np.empty(width, dtype=np.float32)
    lx = np.empty(width, dtype=np.float32)
    best = np.empty(width, dtype=np.float32)
    second = np.empty(width, dtype=np.float32)
    index = np.empty(width, dtype=np.int32)
    for y in range(height):
        fy = np.float32(y)
        row = semantic[y]
        n = 0
        for x in range(width):  # the row's thing pixels, without a branch
            position[n] = x
            n += is_thing[np.uint64(row[x])]  # unsigned: no negative-index check
        for i in range(n):
            x = position[i]
            ly[i] = fy + offsets[0, y, x]
            lx[i] = np.float32(x) + offsets[1, y, x]
            best[i] = np.float32(np.inf)
            second[i] = np.float32(np.inf)
            index[i] = 0
        for k in range(num_centers):
            cy = centers[k, 0]
            cx = centers[k, 1]
            for i in range(n):  # the first minimum and the second smallest (NaN never less)
                dy = cy - ly[i]
                dx = cx - lx[i]
                squared = dy * dy + dx * dx
                smallest = best[i]
                closer = squared < smallest
                second[i] = smallest if closer else (squared if squared < second[i] else second[i])
                best[i] = squared if closer else smallest
                index[i] = np.int32(k) if closer else index[i]
        for i in range(n):
            nearest_index = np.int64(index[i])
            root = np.float32(math.sqrt(best[i]))
            band = root + np.float32(1e-5) * max(root, np.float32(1.0))
            if num_centers > 1 and second[i] <= band * band:  # a near tie: rare
                nearest = np.float32(np.inf)
                for k in range(num_centers):
                    norm = _vector_norm(centers[k, 0] - ly[i], centers[k, 1] - lx[i])
                    if norm < nearest:
                        nearest = norm
                        nearest_index = k
            instance[y * width + position[i]] = nearest_index + 1
    return instance


def nearest_centers_cpu(
    semantic: np.ndarray, is_thing: np.ndarray, offsets: np.ndarray, centers: np.ndarray
) -> np.ndarray:
    """``group_pixels``' search for K >= 1 centers ``[K, 2]``: ``center + 1`` on thing pixels, 0
    elsewhere (``[H * W]`` int64), near ties settled as the exhaustive search settles them, see
    :func:`_nearest`. ``semantic`` holds class indices (an argmax: in ``[0, len(is_thing))``; they
    index ``is_thing`` unchecked)."""
    return _nearest(semantic, is_thing, offsets, np.ascontiguousarray(centers, dtype=np.float32))
