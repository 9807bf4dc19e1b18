"""Where ``make demo``'s CPU goes: each thread's share of a core while the bag plays, in both processes.

``python -m benchmarks.demo_threads`` (``-- --runs N``; other arguments go to ``panoptic-ros demo``).
It runs the live demo and samples ``/proc`` (every thread's user + system time, 4 times a second) of
the demo process (the bag player on its main thread, the recorder on ``demo_recorder``) and the node
process (``panoptic_worker``: decoding and the network; ``panoptic_result``: fusion, tracking and
publishing; the main thread: the executor and the subscription callbacks; ONNX Runtime's own
threads carry the process's name ``python``; Fast DDS's ``dds.*``). The window is the longest run of
samples in which the node used more than one core's worth: the bag playing. Linux only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
BUSY = 1.0  # cores: the node works on frames


def _stat(path: Path) -> tuple[str, list[str]]:
    """A ``/proc/.../stat`` file: the name in parentheses and the fields after it (state first)."""
    raw = path.read_text()
    return raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 1 :].split()


def _threads(pid: int) -> dict[tuple[int, str], int]:
    """(thread id, OS name) -> CPU ticks so far, for every thread of ``pid`` (empty once it ended)."""
    out = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            name, fields = _stat(task / "stat")
        except OSError:
            continue
        out[(int(task.name), name)] = int(fields[11]) + int(fields[12])
    return out


def _node_process(pid: int) -> int | None:
    """The node's process: the child of ``pid`` running ``panoptic_ros.ros.executables``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(entry / "stat")[1][1])
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == pid and b"panoptic_ros.ros.executables" in command:
                return int(entry.name)
    return None


def run_once(demo_args: list[str]) -> str:
    """One demo run: the table of thread shares in the busy window, and the demo's summary lines."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"demo_threads_{os.getpid()}.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "panoptic_ros.cli", "demo", *demo_args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        samples = []
        node = None
        while demo.poll() is None:
            node = node or _node_process(demo.pid)
            samples.append((time.monotonic(), _threads(demo.pid), _threads(node) if node else {}))
            time.sleep(0.25)
    busy = [
        i
        for i, (a, b) in enumerate(itertools.pairwise(samples))
        if (sum(b[2].values()) - sum(a[2].values())) / TICK / (b[0] - a[0]) > BUSY
    ]
    runs: list[list[int]] = []
    for i in busy:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    text = log.read_text()
    log.unlink()
    if not runs:
        return f"the node never used a core's worth: no window to report\n{text[-2000:]}\n"
    window = max(runs, key=len)
    first, last = samples[window[0]], samples[window[-1] + 1]
    seconds = last[0] - first[0]
    lines = [f"window {seconds:.1f} s\n", "| process | thread (OS name) | % of a core |", "|---|---|---|"]
    for column, process in ((1, "demo (player, recorder)"), (2, "node")):
        shares: dict[str, float] = defaultdict(float)
        for (tid, name), ticks in last[column].items():
            used = (ticks - first[column].get((tid, name), 0)) / TICK / seconds
            if used >= 0.005:
                shares[f"{name} ({tid})"] += 100 * used
        total = sum(shares.values())
        for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {process} | {name} | {share:.0f} |")
        lines.append(f"| {process} | **all** | **{total:.0f}** |")
    summary = [line for line in text.splitlines() if line.startswith(("frames in", "latency"))]
    return "\n".join([*lines, "", *summary]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo_threads")
    parser.add_argument("--runs", type=int, default=1)
    args, demo_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    demo_args = [a for a in demo_args if a != "--"]
    if not sys.platform.startswith("linux"):
        print("demo_threads reads /proc: Linux only")
        return 1
    for k in range(args.runs):
        print(f"## run {k + 1}\n\n{run_once(demo_args or ['--out', 'out/demo_threads'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
