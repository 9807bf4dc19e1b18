"""The operating system's name of the calling thread, so that ``top -H``, ``htop`` and ``ps -L`` show
the node's threads by what they do: Python names its threads for itself only, and every thread of a
Python process otherwise shows as ``python``."""

from __future__ import annotations

import ctypes
import functools
import sys

#: ``prctl`` option that names the calling thread (``<linux/prctl.h>``).
PR_SET_NAME = 15
#: Longest name the kernel keeps (16 bytes with the terminating NUL).
MAX_NAME_BYTES = 15


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def name_os_thread(name: str) -> bool:
    """Give the calling thread ``name`` (its first :data:`MAX_NAME_BYTES` bytes) in the operating
    system. False where the platform offers no such call (the thread keeps the process's name)."""
    libc = _libc()
    if libc is None:
        return False
    return int(libc.prctl(PR_SET_NAME, name.encode()[:MAX_NAME_BYTES], 0, 0, 0)) == 0
