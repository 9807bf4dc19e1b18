"""Is a change to the frame path faster? Two trees' engines, frame by frame in turn.

``python benchmarks/engine_ab.py BEFORE AFTER`` (two source trees, e.g. a ``git worktree`` of an older
commit and this one) starts one engine process per tree (the shipped model on ONNX Runtime, CPU,
tracking on, overlay and label images requested, a synthetic sequence resized to each ``--sizes``;
with ``--depth`` a depth image and camera model with each frame, so the 3D positions are made too)
(glibc keeping freed memory for the next frame, as the node and the CLI have it; both trees need
``panoptic_ros.runtime.memory``, i.e. commit 080d50a or later) and feeds them the
same frames in turn, A B B A ..., one frame at a time: both see the same state of
a noisy machine, which runs of whole benchmarks one after the other do not. Per tree it prints the
median over the frames of "after the network / network" taken frame by frame (goal 1 of issue 14),
with its quartiles and the median milliseconds of each stage; then the median over the pairs of
frames of the after tree's "after the network" time over the before tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

AFTER_NETWORK = ("fusion", "postprocess", "tracking", "outputs")
WARM_UP = 8


def serve(depth: bool = False) -> int:
    """The engine side: read ``WIDTHxHEIGHT INDEX`` lines, answer each with the frame's stage times
    (with ``depth``, each frame with a depth image and a camera model: 3D positions too)."""
    import cv2
    import numpy as np

    from panoptic_ros.core.geometry import CameraModel
    from panoptic_ros.data.synthetic import generate
    from panoptic_ros.resources import default_model
    from panoptic_ros.runtime import FrameEngine, InputFrame
    from panoptic_ros.runtime.memory import keep_freed_memory

    keep_freed_memory()  # as the node's and the CLI's executables do
    engine = FrameEngine.open(default_model(), backend="onnxruntime", device="cpu")
    images = [s.image for s in generate(1, seed=5, sequence_length=40)]
    sequences: dict[str, list[np.ndarray]] = {}
    depths: dict[str, tuple[np.ndarray, CameraModel]] = {}
    print("ready", flush=True)
    for line in sys.stdin:
        size, index = line.split()
        if size not in sequences:
            width, height = (int(v) for v in size.split("x"))
            sequences[size] = [np.ascontiguousarray(cv2.resize(im, (width, height))) for im in images]
            rows = np.linspace(4.0, 40.0, height, dtype=np.float32)[:, None]  # a plane, nearer below
            plane = np.ascontiguousarray(np.broadcast_to(rows[::-1], (height, width)))
            camera = CameraModel(0.9 * width, 0.9 * width, width / 2, height / 2, width, height)
            depths[size] = (plane, camera)
            engine.reset()
        k = int(index)
        plane, camera = depths[size] if depth else (None, None)
        frame = InputFrame(
            "cam", sequences[size][k % len(images)], k * 10**8, overlay=True, depth=plane, camera_model=camera
        )
        (result,) = engine.process([frame])
        print(json.dumps(result.times), flush=True)
    engine.close()
    return 0


def _start(tree: Path, depth: bool) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", *(["--depth"] if depth else [])],
        cwd=tree,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        raise SystemExit(f"the engine of {tree} did not start (see its error above)")
    return process


def _frame(process: subprocess.Popen[str], size: str, index: int) -> dict[str, float]:
    if process.stdin is None or process.stdout is None:
        raise SystemExit("the engine process has no pipes")
    process.stdin.write(f"{size} {index}\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"an engine process ended at frame {index} of {size} (see its error above)")
    return json.loads(line)


def compare(before: Path, after: Path, sizes: list[str], frames: int, depth: bool = False) -> None:
    trees = (before, after)
    processes = [_start(tree, depth) for tree in trees]
    try:
        for size in sizes:
            times: list[list[dict[str, float]]] = [[], []]
            for k in range(frames + WARM_UP):
                for side in (0, 1) if k % 2 == 0 else (1, 0):
                    measured = _frame(processes[side], size, k)
                    if k >= WARM_UP:
                        times[side].append(measured)
            print(f"\n{size}{' with depth' if depth else ''}, {frames} frames each, alternated\n")
            print(
                "| tree | after / network, per frame (quartiles) | network | "
                + " | ".join(AFTER_NETWORK)
                + " |"
            )
            print("|---|---|---|" + "---|" * len(AFTER_NETWORK))
            for tree, measured in zip(trees, times, strict=True):
                ratios = [sum(t[s] for s in AFTER_NETWORK) / t["inference"] for t in measured]
                low, middle, high = statistics.quantiles(ratios, n=4)
                stages = ["inference", *AFTER_NETWORK]
                cells = [f"{1e3 * statistics.median(t[s] for t in measured):.2f} ms" for s in stages]
                print(f"| {tree} | **{middle:.3f}** ({low:.3f}-{high:.3f}) | " + " | ".join(cells) + " |")
            pairs = [
                sum(b[s] for s in AFTER_NETWORK) / sum(a[s] for s in AFTER_NETWORK)
                for a, b in zip(times[0], times[1], strict=True)
            ]
            ratio = statistics.median(pairs)
            print(f"\nafter the network, {after.name} / {before.name}, median over the pairs: {ratio:.3f}")
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine_ab", description=__doc__.splitlines()[0])
    parser.add_argument("before", nargs="?", type=Path)
    parser.add_argument("after", nargs="?", type=Path)
    parser.add_argument("--frames", type=int, default=60, help="measured frames per tree and size")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1920x1080"])
    parser.add_argument("--depth", action="store_true", help="frames with depth: 3D positions too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.depth)
    if args.before is None or args.after is None:
        parser.error("give the two trees to compare")
    if args.frames < 2:
        parser.error("--frames: at least 2 (the quartiles need two frames)")
    compare(args.before.resolve(), args.after.resolve(), args.sizes, args.frames, args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
