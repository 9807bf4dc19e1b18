"""``make demo``'s start-up: the latency of the stream's first second against the rest, run after run.

``python -m benchmarks.demo_start`` (``-- --runs N``, ``--drop-caches``; other arguments go to
``panoptic-ros demo``). Each run is a whole ``panoptic-ros demo`` in a fresh process (a fresh node);
the table gives its frames out, latency p50 / p99 / max, and the largest latency of the frames the
player published in the stream's first second (``latency_ms.start_max`` of the demo's summary).
``--drop-caches`` empties the kernel's page cache before each run (root only), as after a reboot or on
a fresh machine: the state a first ``make demo`` starts in. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def _drop_caches() -> None:
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError as err:
        raise SystemExit(f"--drop-caches needs root (writing {DROP_CACHES}): {err}") from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_start", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="demo runs (default 3)")
    parser.add_argument("--drop-caches", action="store_true", help="empty the page cache before each run")
    args, demo_args = parser.parse_known_args(argv)
    print("| run | page cache | frames out | latency p50 | p99 | max | max in the first second |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="demo_start_") as tmp:
        for run in range(1, args.runs + 1):
            if args.drop_caches:
                _drop_caches()
            out = Path(tmp) / f"run{run}"
            command = [sys.executable, "-m", "panoptic_ros.cli", "demo", "--out", str(out), *demo_args]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
                return done.returncode
            summary = json.loads((out / "summary.json").read_text())
            lat = summary["latency_ms"]
            print(
                f"| {run} | {'dropped' if args.drop_caches else 'as it was'} | "
                f"{summary['frames_out']} / {summary['frames_in']} | {lat['p50']:.0f} ms | "
                f"{lat['p99']:.0f} ms | {lat['max']:.0f} ms | {lat['start_max']:.0f} ms |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
