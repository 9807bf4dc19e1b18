"""Model-resolution label maps expanded to the camera's size on the host as one compiled pass (numba);
a frame's two label images in one call (:func:`expand_two`).

The nearest-neighbour mapping of :class:`~panoptic_ros.core.segments.PixelFrame` copies whole model
rows: a camera row is gathered from its model row only where it copies another model row than the
camera row above it, and is otherwise a copy of that row (in a core's cache). NumPy's two ``take``
calls (columns, then rows) wrote a model-height array first and then read it back; this writes each
camera pixel once. Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@njit(cache=True, nogil=True)
def expand_map(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``[H, W]`` in ``labels``' type: ``labels[rows[i], cols[j]]`` at camera pixel ``(i, j)``
    (``labels`` ``[h, w]`` C-contiguous; ``rows`` ``[H]`` and ``cols`` ``[W]`` int64 model positions,
    within the map: not checked here, and read as unsigned, so a negative one reads outside it)."""
    height = rows.size
    width = cols.size
    out = np.empty((height, width), dtype=labels.dtype)
    for i in range(height):
        target = out[i]
        if i > 0 and rows[i] == rows[i - 1]:
            above = out[i - 1]
            for j in range(width):  # vectorized
                target[j] = above[j]
        else:
            source = labels[rows[i]]
            for j in range(width):
                target[j] = source[np.uint64(cols[j])]  # unsigned: no negative-index check
    return out


@njit(cache=True, nogil=True)
def expand_two(  # noqa: PLR0917 (compiled loops take positional arguments)
    first_out: np.ndarray,
    first: np.ndarray,
    second_out: np.ndarray,
    second: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """:func:`expand_map` of two maps at once, into ``[H, W]`` outputs of their own types (each value
    cast to its output's type as it is written), camera row by camera row; an output with no pixels
    is left out (its map is not read). One call, so a thread expanding a frame's label images takes
    the GIL once, not once per image (and no pass converts a map's type first)."""
    height = rows.size
    width = cols.size
    with_first = first_out.size > 0
    with_second = second_out.size > 0
    for i in range(height):
        copied = i > 0 and rows[i] == rows[i - 1]
        if with_first:
            target = first_out[i]
            if copied:
                above = first_out[i - 1]
                for j in range(width):  # vectorized
                    target[j] = above[j]
            else:
                source = first[rows[i]]
                for j in range(width):
                    target[j] = source[np.uint64(cols[j])]  # unsigned: no negative-index check
        if with_second:
            target_ids = second_out[i]
            if copied:
                above_ids = second_out[i - 1]
                for j in range(width):
                    target_ids[j] = above_ids[j]
            else:
                source_ids = second[rows[i]]
                for j in range(width):
                    target_ids[j] = source_ids[np.uint64(cols[j])]


@intrinsic
def _prefetch(typingctx: object, array: types.Type, index: types.Type) -> tuple:  # pragma: no cover
    """Ask the processor to bring the cache line holding ``array.flat[index]`` in (``llvm.prefetch``:
    a read, kept in every cache level; never faults, so any index of the array is safe)."""
    if not (isinstance(array, types.Array) and isinstance(index, types.Integer)):
        return None
    signature = types.void(array, index)

    def codegen(context: object, builder: ir.IRBuilder, sig: object, args: tuple) -> object:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data  # type: ignore[attr-defined]
        address = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
        word = ir.IntType(32)
        declared = ir.FunctionType(ir.VoidType(), [address.type, word, word, word])
        # the name mangled from the pointer type by llvmlite (LLVM upgrades a typed pointer's name)
        prefetch = builder.module.declare_intrinsic("llvm.prefetch", [address.type], declared)
        builder.call(prefetch, [address, word(0), word(3), word(1)])
        return context.get_dummy_value()  # type: ignore[attr-defined]

    return signature, codegen


#: Model rows ahead whose camera row :func:`sample_rows` asks the processor for.
_AHEAD = 2


@njit(cache=True, nogil=True)
def sample_rows(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``[h, w]`` in ``image``'s type: ``image[rows[i], cols[j]]`` (``image`` ``[H, W]`` C-contiguous;
    ``rows`` ``[h]`` and ``cols`` ``[w]`` int64 camera positions, within the image: not checked here,
    and read as unsigned). The camera rows a frame samples lie apart (every fifth or sixth of a 1080p
    image for the shipped model), so the processor's prefetchers start afresh at each; the lines of
    the camera row two model rows ahead are asked for while this one is gathered (0.14 → 0.10 ms for a
    1080p depth image not in the cache)."""
    height, width = rows.size, cols.size
    out = np.empty((height, width), dtype=image.dtype)
    row_items = image.shape[1]
    line = max(64 // image.itemsize, 1)  # items per 64-byte cache line
    flat = image.reshape(-1)
    for i in range(height):
        if i + _AHEAD < height:
            ahead = rows[i + _AHEAD] * row_items
            for k in range(0, row_items, line):
                _prefetch(flat, ahead + k)
        source = image[rows[i]]
        target = out[i]
        for j in range(width):
            target[j] = source[np.uint64(cols[j])]
    return out


#: The label types the frame engine expands: category images (uint8, uint16) and id images (int32,
#: int64 where the ids need it).
EXPANDED_TYPES = (np.uint8, np.uint16, np.int32, np.int64)
#: The image types gathered the other way, at the model's pixels
#: (:meth:`~panoptic_ros.core.segments.PixelFrame.sample`): depth images.
SAMPLED_TYPES = (np.float32,)


def sample_map(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """``image[rows][:, cols]`` (``[h, w]``) by :func:`sample_rows` for a writable C-contiguous ``[H, W]``
    image of a type in :data:`EXPANDED_TYPES` or :data:`SAMPLED_TYPES` (the layouts it is compiled
    for); None for any other (the caller gathers it otherwise). ``rows`` and ``cols`` int64,
    nondecreasing and not negative (a frame's positions).

    Raises:
        IndexError: positions past the image or negative (the compiled gather does not check them).
    """
    flags = image.flags
    if image.ndim != 2 or image.dtype not in EXPANDED_TYPES + SAMPLED_TYPES:
        return None
    if not (flags.c_contiguous and flags.writeable):
        return None
    if rows.size and cols.size and (rows[0] < 0 or cols[0] < 0):
        raise IndexError("the frame's positions are negative")
    if rows.size and cols.size and (rows[-1] >= image.shape[0] or cols[-1] >= image.shape[1]):
        raise IndexError(f"a {image.shape} image is smaller than the frame's camera image")
    return sample_rows(image, rows, cols)


def compile_kernels() -> None:
    """Compile (or load from numba's cache) :func:`expand_map` and :func:`sample_rows` for every type in
    :data:`EXPANDED_TYPES` and :data:`SAMPLED_TYPES`, so that the first frame does not pay for it."""
    index = np.zeros(2, dtype=np.int64)
    for dtype in EXPANDED_TYPES + SAMPLED_TYPES:
        expand_map(np.zeros((1, 1), dtype=dtype), index, index)
        sample_rows(np.zeros((1, 1), dtype=dtype), index, index)
    # the label images' pair: 8- or 16-bit category images and int32 id images from int32 (a device's
    # download) or int64 (the CPU's) maps; a missing image's map is the other one
    for category_type in (np.uint8, np.uint16):
        for first_type in (np.int32, np.int64):
            for second_type in (np.int32, np.int64):
                expand_two(
                    np.zeros((2, 2), dtype=category_type), np.zeros((1, 1), dtype=first_type),
                    np.zeros((2, 2), dtype=np.int32), np.zeros((1, 1), dtype=second_type), index, index,
                )  # fmt: skip
