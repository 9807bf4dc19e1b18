"""Large per-frame buffers without page faults.

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
"""

from __future__ import annotations

import ctypes
import ctypes.util

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
