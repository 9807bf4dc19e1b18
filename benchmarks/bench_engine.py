"""The frame engine per frame, stage by stage, against the network's own time in the same run.

``python -m benchmarks.run engine`` (``-- --device cpu|cuda|all``, ``--frames N``): the shipped model
on ONNX Runtime (CPU; the float network, or ``--precision int8`` its INT8 companion, which the node
runs by default on the CPU) or PyTorch (CUDA), one camera, a synthetic sequence resized to 640x480 and
1920x1080, overlay requested, tracking on; then the same with an aligned depth image and
camera_info (rows "+ depth": the outputs stage then places every segment in 3D); then without
label images (rows "no label images": the node's frames while nobody subscribes to a label image
topic, only to the overlay or the instances, so the label maps are not expanded); then frames in BGR
order (rows "BGR camera": a ``bgr8`` or JPEG camera's frames as the node hands them over, whose
overlay needs no channel swap). The rows take turns, a few frames each, round after round, so that
all of them see the same minutes of a machine whose speed drifts. Each stage's time is taken over the
same frame's inference time, and the median of those ratios over the frames is printed ("x net"); on
a GPU also the median milliseconds. "after the network" is everything the engine does after inference: fusion
(with segment geometry in the camera frame), the label maps at camera size, tracking, the instance
table, the overlay, the host copies (and the 3D positions in the "+ depth" rows). glibc keeps freed
memory for the next frame, as in the node and the CLI
(:func:`~panoptic_ros.runtime.memory.keep_freed_memory`).

Then the cost of cameras batched: ``--cameras N`` (default 8) cameras of 640x480 in one call of
the engine against one camera, whole-call wall time (on a GPU: milliseconds too), the cameras'
results made one after another and on camera threads, and where the time goes:
the batch's stages (preprocessing, the network, fusion and label maps) once, the per-camera ones
(tracking, outputs) summed over the cameras.

The first frame after opening the engine: a fresh process per case opens the engine, warms it up with
``--warmup`` frames (the node's ``warmup_frames``, default 2) or none, and times its first camera frame
(640x480, overlay, tracking) against the median of the next ones: the first-frame latency a camera
sees after configure, as a ratio ("first / steady").

On a GPU, last, the end-to-end p50 of one engine call per frame (upload to results on the host,
tracking and overlay included) at both sizes, eager (fixed-shape fusion) against the whole-frame
CUDA graph (``cuda_graph=True``: network, fusion and label maps replayed as one graph), and the
batched cameras with the graph.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from benchmarks.common import benchmark_devices, device_name, sync
from panoptic_ros.backends.registry import precision_options
from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine, InputFrame
from panoptic_ros.runtime.camera_threads import CameraThreads, auto_threads
from panoptic_ros.runtime.memory import keep_freed_memory

SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}
AFTER_NETWORK = ("fusion", "postprocess", "tracking", "outputs")
REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("", " + depth", ", no label images", ", BGR camera")


#: ONNX Runtime's precision on the CPU (``--precision``); fp32 by default: issue 14's goal 1 measures
#: the work after the network against the float network
PRECISION = ["fp32"]


def _open(device: torch.device) -> FrameEngine:
    """The shipped model on ONNX Runtime (CPU, at :data:`PRECISION`) or PyTorch (CUDA)."""
    if device.type == "cpu":
        options = precision_options(PRECISION[0])
        return FrameEngine.open(default_model(), backend="onnxruntime", device="cpu", backend_options=options)
    return FrameEngine.open(default_model(), backend="torch", device=str(device))


#: Frames each row takes in turn (after :data:`SETTLE` frames it does not count): the rows are
#: measured block by block, round after round, so that every row sees the same minutes of a VM whose
#: speed changes within the run.
BLOCK = 5
#: Frames each block starts with that are not counted (the frame before was another row's).
SETTLE = 2


class _Row(NamedTuple):
    """One row of the table: its frames and what comes with them."""

    name: str
    frames: list[np.ndarray]
    depth: np.ndarray | None
    camera: CameraModel | None
    label_images: bool
    order: str


def _rows(frames: int) -> list[_Row]:
    rows = []
    for (name, size), variant in itertools.product(SIZES.items(), VARIANTS):
        order = "bgr" if variant == ", BGR camera" else "rgb"
        seq = _sequence(size, frames)
        if order == "bgr":
            seq = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in seq]
        depth, camera = _depth(size) if variant == " + depth" else (None, None)
        rows.append(_Row(f"{name}{variant}", seq, depth, camera, variant != ", no label images", order))
    return rows


def run(device: torch.device, frames: int, cameras: int) -> None:
    """The table: per row, each stage's median over the frames of its time over the same frame's
    network time (the ratios taken frame by frame), and on a GPU its median milliseconds. The rows take
    turns in blocks of :data:`BLOCK` frames, each row a camera of its own (its own tracks)."""
    engine = _open(device)
    gpu = device.type == "cuda"
    header = "| frame | " + " | ".join(["preprocess", "network", *AFTER_NETWORK, "after the network"]) + " |"
    print(f"{device_name(device)}, backend {engine.describe()}\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    rows = _rows(frames)
    block = min(BLOCK, max(frames, 1))
    ms: list[dict[str, list[float]]] = [{} for _ in rows]
    ratios: list[dict[str, list[float]]] = [{} for _ in rows]
    for turn in range(-(-max(frames, 1) // block)):
        for r, row in enumerate(rows):
            for k in range(SETTLE + block):
                index = turn * (SETTLE + block) + k
                frame = InputFrame(
                    f"cam{r}",
                    row.frames[index % len(row.frames)],
                    index * 10**8,
                    overlay=True,
                    depth=row.depth,
                    camera_model=row.camera,
                    semantic_image=row.label_images,
                    instance_image=row.label_images,
                    order=row.order,  # type: ignore[arg-type]
                )
                (result,) = engine.process([frame])
                if k < SETTLE:
                    continue
                times = {**result.times, "after": sum(result.times[s] for s in AFTER_NETWORK)}
                for stage, seconds in times.items():
                    ms[r].setdefault(stage, []).append(seconds * 1e3)
                    ratios[r].setdefault(stage, []).append(seconds / result.times["inference"])
    for r, row in enumerate(rows):
        med = {stage: statistics.median(values) for stage, values in ms[r].items()}
        ratio = {stage: statistics.median(values) for stage, values in ratios[r].items()}
        net = f"{med['inference']:.1f} ms" if gpu else "1.00x net"
        cells = [_cell(med, ratio, stage, gpu) for stage in ("preprocess", *AFTER_NETWORK, "after")]
        print(f"| {row.name} | " + " | ".join([cells[0], net, *cells[1:]]) + " |")
    print("\n(each stage's time over the same frame's network time, median over the frames)")
    batched(engine, cameras, frames)
    engine.close()
    if gpu:
        end_to_end(device, frames, cameras)
    print()


def _depth(size: tuple[int, int]) -> tuple[np.ndarray, CameraModel]:
    """A depth image (a tilted plane, meters) and a camera model for frames of ``size``."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    camera = CameraModel.from_k(
        [0.8 * width, 0, width / 2, 0, 0.8 * width, height / 2, 0, 0, 1], width, height
    )
    return 3.0 + 0.002 * cols + 0.004 * rows, camera


def _sequence(size: tuple[int, int], frames: int, seed: int = 5) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(cv2.resize(s.image, size[::-1]))
        for s in generate(1, seed=seed, sequence_length=min(frames, 40))
    ]


def end_to_end(device: torch.device, frames: int, cameras: int) -> None:
    """p50 wall time of one engine call per frame, eager against the whole-frame CUDA graph (GPU)."""
    print("\n| frame | eager p50 (ms) | CUDA graph p50 (ms) | graph / eager |")
    print("|---|---:|---:|---:|")
    engines = {
        graph: FrameEngine.open(default_model(), backend="torch", device=str(device), cuda_graph=graph)
        for graph in (False, True)
    }
    for name, size in SIZES.items():
        seq = _sequence(size, frames)
        p50 = {}
        for graph, engine in engines.items():
            engine.reset()
            walls = []
            for k in range(frames + 5):
                sync(device)
                start = time.perf_counter()
                engine.process([InputFrame("cam", seq[k % len(seq)], k * 10**8, overlay=True)])
                sync(device)
                if k >= 5:  # warm-up (and the graph's capture) left out
                    walls.append((time.perf_counter() - start) * 1e3)
            p50[graph] = statistics.median(walls)
        print(f"| {name} | {p50[False]:.2f} | {p50[True]:.2f} | {p50[True] / p50[False]:.2f}x |")
    print("\nwith the CUDA graph:", end="")
    batched(engines[True], cameras, frames)
    for engine in engines.values():
        engine.close()


#: Parts of a batched call (:func:`batched`): the batch's stages once, the per-camera ones summed.
BATCH_PARTS = {
    "preprocess": ("preprocess",),
    "network": ("inference",),  # with the CUDA graph: the network, fusion and label maps replayed
    "fusion, label maps": ("fusion", "postprocess"),
    "tracking (all cameras)": ("tracking",),
    "outputs (all cameras)": ("outputs",),
}


def batched(engine: FrameEngine, cameras: int, frames: int) -> None:
    """Median wall time of one engine call with ``cameras`` cameras against one camera, their results
    made one camera after another and on camera threads (:func:`auto_threads`'s number, at least 2),
    and where the time goes (the batch's stages once, the per-camera stages summed over the cameras:
    what runs once per batch and what runs once per camera). The cases take turns, call by call."""
    gpu = engine.device.type == "cuda"
    seq = [
        np.ascontiguousarray(cv2.resize(s.image, SIZES["640x480"][::-1]))
        for s in generate(cameras, seed=6, sequence_length=min(frames, 20))
    ]
    length = len(seq) // cameras
    threads = max(2, auto_threads())
    cases = {
        "1": (1, 1),
        f"{cameras}, one thread": (cameras, 1),
        f"{cameras}, {threads} threads": (cameras, threads),
    }
    walls: dict[str, list[float]] = {name: [] for name in cases}
    parts: dict[str, dict[str, list[float]]] = {name: {} for name in cases}
    pools = {name: CameraThreads(camera_threads) for name, (_, camera_threads) in cases.items()}
    kept = engine.cameras
    engine.reset()
    for k in range(frames + 5):
        for case, (name, (count, _)) in enumerate(cases.items()):  # in turn: the same minutes for each
            engine.cameras = pools[name]
            batch = [
                InputFrame(f"case{case}-cam{c}", seq[c * length + k % length], k * 10**8, overlay=True)
                for c in range(count)
            ]
            sync(engine.device)
            start = time.perf_counter()
            results = engine.process(batch)
            sync(engine.device)
            if k < 5:
                continue
            walls[name].append((time.perf_counter() - start) * 1e3)
            batch_times = results[0].times  # the batch's stages, the same in every result
            for part, stages in BATCH_PARTS.items():
                per_camera = stages[0] in ("tracking", "outputs")
                seconds = sum(
                    (r.times.get(s, 0.0) for r in results for s in stages)
                    if per_camera
                    else (batch_times.get(s, 0.0) for s in stages)
                )
                parts[name].setdefault(part, []).append(seconds * 1e3)
    for pool in pools.values():
        pool.close()
    engine.cameras = kept
    one = statistics.median(walls["1"])
    for name in list(cases)[1:]:
        many = statistics.median(walls[name])
        absolute = f" ({one:.1f} ms vs {many:.1f} ms)" if gpu else ""
        print(f"\n{name.replace(', ', ' cameras of 640x480 in one call, results on ')}: "
              f"{many / one:.2f}x the time of one camera{absolute}")  # fmt: skip
    unit = "ms" if gpu else "x one camera's call"
    print(f"\n| cameras ({unit}, medians) | whole call | " + " | ".join(BATCH_PARTS) + " |")
    print("|---|" + "---:|" * (len(BATCH_PARTS) + 1))
    for name, wall in walls.items():
        values = [statistics.median(wall)]
        values += [statistics.median(parts[name][part]) for part in BATCH_PARTS]
        cells = [f"{v:.2f}" if gpu else f"{v / one:.2f}x" for v in values]
        print(f"| {name} | " + " | ".join(cells) + " |")


def first_frame(device: torch.device, warmup: int, repeats: int = 5) -> None:
    """The first camera frame's time after opening the engine, in a fresh process each (median of
    ``repeats``), with and without the warm-up, against the steady frames after it."""
    cells = []
    for frames in (0, warmup):
        ratios, firsts, steadies = [], [], []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_engine", "--role", "first-frame",
                 "--device", str(device), "--warmup", str(frames), "--precision", PRECISION[0]],
                capture_output=True, text=True, check=True, timeout=600, cwd=REPO,
            ).stdout.split()  # fmt: skip
            first, steady = float(out[-2]), float(out[-1])
            ratios.append(first / steady)
            firsts.append(first)
            steadies.append(steady)
        absolute = (
            f" ({statistics.median(firsts):.1f} vs {statistics.median(steadies):.1f} ms)"
            if device.type == "cuda"
            else ""
        )
        cells.append(f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}){absolute}")
    print(f"\n| first 640x480 frame / steady frame, median of {repeats} processes | no warm-up "
          f"| warm-up of {warmup} frames |")  # fmt: skip
    print(f"|---|---|---|\n| {device_name(device)} | {cells[0]} | {cells[1]} |")


def _first_frame_role(device: torch.device, warmup: int) -> None:
    """In a fresh process: open, warm up, then the first frame's ms and the median of the next five."""
    engine = _open(device)
    engine.warm_up(warmup)
    seq = _sequence(SIZES["640x480"], 6)
    times = []
    for k, image in enumerate(seq):
        sync(device)
        start = time.perf_counter()
        engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    print(times[0], statistics.median(times[1:]))


def _cell(med: dict[str, float], ratio: dict[str, float], stage: str, gpu: bool) -> str:
    cell = f"{ratio[stage]:.2f}x net"
    return f"{med[stage]:.1f} ms ({cell})" if gpu else cell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_engine")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (default: all available)")
    parser.add_argument("--frames", type=int, default=20, help="measured frames per row (default 20)")
    parser.add_argument("--cameras", type=int, default=8, help="cameras of the batched run (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up frames of the first-frame run")
    parser.add_argument("--role", choices=("bench", "first-frame"), default="bench")
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8", "auto"),
        default="fp32",
        help="ONNX Runtime's on the CPU (default fp32, goal 1's reference; int8: the INT8 companion)",
    )
    args, _ = parser.parse_known_args(argv)
    PRECISION[0] = args.precision
    keep_freed_memory()  # as the node's and the CLI's executables do: no page faults on reused buffers
    if args.role == "first-frame":
        _first_frame_role(torch.device(args.device), args.warmup)
        return 0
    devices = benchmark_devices(args.device)
    for device in devices:
        run(device, args.frames, args.cameras)
        first_frame(device, args.warmup)
    return 0 if devices else 2


if __name__ == "__main__":
    sys.exit(main())
