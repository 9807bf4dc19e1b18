"""The compiled loops of the frame path (numba), readied ahead of the first frame.

Each loop is compiled on its first call and cached on disk (numba's cache: ``__pycache__`` next to its
module where that is writable, else the user's cache folder), so a process normally loads them in a
few hundred milliseconds; the first run of a source tree compiles them, about 5 s on 2 cores.
:func:`compile_kernels` does that before the first frame (the frame engine calls it when it starts);
:func:`main` does it ahead of time (``make setup`` runs it for the source tree, the install tree and
the Jazzy copy).
"""

from __future__ import annotations

import sys
import time

from panoptic_ros.core.geometry_cpu import compile_kernels as compile_depths
from panoptic_ros.core.geometry_cpu import compile_meters
from panoptic_ros.core.overlay_cpu import compile_kernels as compile_overlay
from panoptic_ros.core.resample_cpu import compile_kernels as compile_expansions
from panoptic_ros.core.segments_cpu import compile_lookups
from panoptic_ros.fusion.center_offset_cpu import compile_kernels as compile_fusion
from panoptic_ros.runtime.instances_cpu import compile_kernels as compile_instances
from panoptic_ros.tracking.assignment_cpu import compile_kernels as compile_matcher
from panoptic_ros.tracking.association_cpu import compile_kernels as compile_statistics
from panoptic_ros.tracking.costs_cpu import compile_kernels as compile_costs
from panoptic_ros.tracking.keys_cpu import compile_kernels as compile_keys
from panoptic_ros.tracking.lifecycle_cpu import compile_kernels as compile_lifecycle
from panoptic_ros.tracking.motion_cpu import compile_kernels as compile_motion
from panoptic_ros.tracking.output_cpu import compile_kernels as compile_output


def compile_kernels(*, cpu_frame_path: bool = True) -> None:
    """Compile (or load) the loops on the host: the overlay's, the label images' expansion, the
    instance table's, the tracker's (costs, id lookups, updates, life cycle, assignment, output rows)
    and the depth conversion always (any device makes them on the host), and the segments' depth
    medians (3D positions of any frames on the CPU take them, fixed-shape fusion or not); with
    ``cpu_frame_path`` also the CPU fusion's, the category maps' lookup and the tracker's pixel
    statistics."""
    compile_overlay()
    compile_expansions()
    compile_instances()
    compile_matcher()
    compile_costs()
    compile_keys()
    compile_lifecycle()
    compile_motion()
    compile_output()
    compile_meters()
    compile_depths()
    if cpu_frame_path:
        compile_fusion()
        compile_lookups()
        compile_statistics()


def main() -> int:
    """Compile every loop and say how long it took (``python -c "from panoptic_ros.runtime.kernels
    import main; main()"``)."""
    start = time.perf_counter()
    compile_kernels()
    print(f"panoptic_ros: compiled loops ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
