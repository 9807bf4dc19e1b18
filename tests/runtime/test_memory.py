"""Large buffers are reused after :func:`keep_freed_memory` instead of being faulted in afresh: a frame's
worth of 8 MiB arrays (an ``instance_ids`` image at 1080p is 8 MB), written, freed and made again,
costs (nearly) no page faults from the second frame on; by default glibc gives part of it back after
each frame and faults that in again. Measured in a fresh interpreter each, since the setting is
process-wide."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from panoptic_ros.runtime.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    frame = [np.empty(8 * 2**20, dtype=np.uint8) for _ in range(4)]
    for block in frame:
        block[::4096] = 1  # one write per page
    del frame, block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, min(faults[1:]))
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings (Linux only)")
def test_freed_large_blocks_are_reused_without_page_faults() -> None:
    _, default_faults = _faults("default")
    kept, kept_faults = _faults("keep")
    assert kept == "True", "glibc took both settings"
    pages = 4 * 8 * 2**20 // 4096
    # by default, glibc gives back what lies beyond its trim threshold: some blocks are faulted in again
    assert default_faults > pages // 8, default_faults
    assert kept_faults < pages // 100, kept_faults


FREEZE = """
import gc
from panoptic_ros.runtime.memory import freeze_long_lived, thaw_long_lived

class Held:
    pass

held = [Held() for _ in range(5000)]
for item in held:
    item.me = item  # cycles: only the collector could free them
walked = len(gc.get_objects())  # what a full collection walks
frozen = freeze_long_lived()
walked_frozen = len(gc.get_objects())
thaw_long_lived()
print(frozen, walked, walked_frozen, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_long_lived_objects_are_frozen_out_of_full_collections_and_thawed() -> None:
    out = subprocess.run([sys.executable, "-c", FREEZE], capture_output=True, text=True, check=True)
    frozen, walked, walked_frozen, frozen_after_thaw, walked_after_thaw = map(int, out.stdout.split())
    assert frozen >= 5000 + 1  # the held objects and their list, with everything imported
    assert walked >= 5000 and walked_frozen < walked - 5000 < walked_after_thaw, out.stdout
    assert frozen_after_thaw == 0
