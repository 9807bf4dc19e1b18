"""PyTorch's OpenMP workers spinning into the network: the frame engine with libgomp's default spin and
with this package's (:data:`panoptic_ros.GOMP_SPINCOUNT`).

``python -m benchmarks.run spin`` (``-- --frames N --rounds R``): R rounds, each running the frame
engine (the shipped model on ONNX Runtime, CPU, one 640x480 camera, tracking and overlay) in two fresh
processes one after the other: libgomp's default (``GOMP_SPINCOUNT=300000``), then the package's.
Per round, the second's median network time, work after the network and whole frame (preprocessing
to outputs) as ratios to the first's. The spin is read when libgomp loads, hence one process each.
CPU only: on a GPU the network does not run on the CPU's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.bench_engine import AFTER_NETWORK, _sequence
from panoptic_ros import GOMP_SPINCOUNT

#: libgomp's spin count when neither ``GOMP_SPINCOUNT`` nor ``OMP_WAIT_POLICY`` is set.
LIBGOMP_DEFAULT = "300000"


def child(frames: int) -> None:
    """One process's medians (seconds) of the network, the work after it and the whole frame."""
    from panoptic_ros.resources import default_model
    from panoptic_ros.runtime import FrameEngine, InputFrame

    engine = FrameEngine.open(default_model(), backend="onnxruntime", device="cpu")
    seq = _sequence((480, 640), 20)
    rows: dict[str, list[float]] = {"network": [], "after": [], "frame": []}
    for k in range(frames + 5):
        (result,) = engine.process([InputFrame("cam", seq[k % len(seq)], k * 10**8, overlay=True)])
        if k >= 5:  # warm-up left out
            times = result.times
            rows["network"].append(times["inference"])
            rows["after"].append(sum(times[s] for s in AFTER_NETWORK))
            rows["frame"].append(sum(times.values()))
    engine.close()
    print(json.dumps({name: statistics.median(values) for name, values in rows.items()}))


def _run(spin: str, frames: int) -> dict[str, float]:
    env = {**os.environ, "GOMP_SPINCOUNT": spin}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_spin", "--child", "--frames", str(frames)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_spin")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.child:
        child(args.frames)
        return 0
    print(f"GOMP_SPINCOUNT {GOMP_SPINCOUNT} (this package) against {LIBGOMP_DEFAULT} (libgomp's default)\n")
    print("| round | network | after the network | whole frame |")
    print("|---|---|---|---|")
    for k in range(args.rounds):
        before, after = _run(LIBGOMP_DEFAULT, args.frames), _run(GOMP_SPINCOUNT, args.frames)
        cells = [f"{after[name] / before[name]:.2f}x" for name in ("network", "after", "frame")]
        print(f"| {k + 1} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
