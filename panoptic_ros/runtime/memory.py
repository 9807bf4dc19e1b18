"""Memory of a long-running frame loop: large per-frame buffers without page faults, and no long
garbage-collection pauses.

Every frame makes a few buffers of several megabytes (label images at the camera's size, the overlay,
their copies into ROS messages and the serialized messages). By default glibc's ``malloc`` gives
much of that memory back to the kernel between frames (a block above its mmap threshold is unmapped
when freed, and free memory at the top of its heap beyond the trim threshold is returned), so the
next frame pays a page fault and the zeroing of a page for each 4 KiB it writes again: at 1920x1080
that made building and serializing the ``instance_ids`` image and the overlay message about 3.5x
slower (``benchmarks/bench_node.py``, "publish all outputs"). :func:`keep_freed_memory` asks glibc to serve
such blocks from its heap and to keep freed memory for the next frame instead. The process then holds
on to its largest per-frame working set (tens of megabytes at 1080p) rather than returning it between
frames.

Python's cyclic garbage collector also walks every object it tracks on each full collection: after the
model, PyTorch and ROS are loaded that is a few hundred thousand objects, 30-110 ms per collection on
the 2-core machine (measured in the node during ``make demo``), a pause the frame it falls on adds to
its latency. :func:`freeze_long_lived` moves the objects alive once everything is loaded out of the
collector's reach (:func:`gc.freeze`), so a collection walks only what the frames made since.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's largest allowed value on 64-bit systems).
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Free memory at the top of the heap is returned to the kernel only beyond this.
TRIM_THRESHOLD_BYTES = 256 * 2**20


def keep_freed_memory() -> bool:
    """Set glibc's ``malloc`` to keep large freed blocks for reuse (see the module docstring); once per
    process, before the frames start. Returns False where the C library is not glibc (nothing changed)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no C library to load, or not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def freeze_long_lived() -> int:
    """Collect, then exempt every object alive now from later collections (see the module docstring):
    call when everything long-lived is loaded (modules, model, tables), before the frames start. They
    are still freed by reference counting; only cycles among them wait for :func:`thaw_long_lived`.
    Returns how many objects were exempted."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw_long_lived() -> None:
    """Undo :func:`freeze_long_lived` (before the long-lived objects are dropped, e.g. a model unloaded)
    and collect what is garbage now."""
    gc.unfreeze()
    gc.collect()
