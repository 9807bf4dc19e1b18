"""Launch-bound work after the network, counted: top-level PyTorch ops and host reads per frame.

``python -m benchmarks.run launches``: the shipped model on ONNX Runtime (the network runs outside
PyTorch, so every PyTorch op counted is the engine's), tracking on, overlay requested, one camera at
640x480, on two frames: a scene with few things, and a mosaic of synthetic scenes with as many things
as the shipped model finds at its input resolution. Per stage after the network (fusion, label maps
at the model's resolution, tracking, outputs), the ``aten::`` ops directly under the stage
(:func:`benchmarks.counting.top_level_ops`; each is a kernel launch on a GPU), and the host reads of
device data (:func:`benchmarks.counting.count_host_reads`; each a synchronisation on a GPU), network
and preprocessing left out. The counts do not depend on the machine. Both fusions are counted: the
data-dependent one (the CPU's default) and the fixed-shape one (CUDA's default, run here on the CPU).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from benchmarks.counting import AFTER_NETWORK_LABELS, count_host_reads, top_level_ops
from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine, InputFrame

SIZE = (480, 640)


def scenes(tiles: int) -> list[np.ndarray]:
    """Two frames before the measured one (the tracker has tracks), ``tiles x tiles`` synthetic scenes
    side by side in each, resized to :data:`SIZE`."""
    images = [s.image for s in generate(tiles * tiles, seed=77, sequence_length=3)]
    frames = []
    for k in range(3):
        per_scene = images[k::3]
        rows = [np.concatenate(per_scene[r * tiles : (r + 1) * tiles], axis=1) for r in range(tiles)]
        frames.append(np.ascontiguousarray(cv2.resize(np.concatenate(rows, axis=0), SIZE[::-1])))
    return frames


def network_reads(engine: FrameEngine, image: np.ndarray) -> int:
    """Host reads of preprocessing and the network alone (subtracted from the frame's)."""
    pipeline = engine.pipeline
    with count_host_reads() as counts:
        fitted, _ = pipeline.preprocess.fit([pipeline.preprocess.upload(image)])
        pipeline.backend.infer({pipeline.spec.input.name: pipeline.preprocess.normalize(fitted)})
    return sum(counts.values())


def measure(engine: FrameEngine, frames: list[np.ndarray]) -> tuple[int, dict[str, int], dict[str, int]]:
    """(things in the last frame, top-level ops per stage, host reads by kind) of the last frame, in
    the steady state: every frame is run once first, so the per-shape caches (key tables, pixel grids)
    already hold the measured frame's shapes and their one-time construction is not counted (it
    would be counted or not depending on what ran before in the process)."""
    engine.reset()
    for k, image in enumerate(frames):
        engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])
    last = InputFrame("cam", frames[-1], (len(frames) - 1) * 10**8, overlay=True)
    engine.reset()  # the same history again, then the measured frame under the profiler
    for k, image in enumerate(frames[:-1]):
        engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        (result,) = engine.process([last])
    ops = top_level_ops(prof.events())
    engine.reset()
    for k, image in enumerate(frames[:-1]):
        engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])
    with count_host_reads() as reads:
        engine.process([last])
    reads = dict(reads)
    reads["network (subtracted)"] = -network_reads(engine, frames[-1])
    things = int((result.instances.is_thing & (result.instances.areas > 0)).sum())
    return things, ops, reads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_launches")
    parser.add_argument("--tiles", type=int, default=3, help="scenes per side of the crowded mosaic")
    args, _ = parser.parse_known_args(argv)
    stages = [label.split("::")[1] for label in AFTER_NETWORK_LABELS]
    columns = ["fusion", "frame", "things", *(f"ops: {s}" for s in stages), "ops after the network",
               "host reads after the network"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|" + "---:|" * (len(stages) + 2))
    for path, fixed in (("data-dependent (CPU default)", False), ("fixed shapes (CUDA default)", True)):
        engine = FrameEngine.open(default_model(), backend="onnxruntime", device="cpu", fixed_shapes=fixed)
        for name, tiles in (("one scene", 1), (f"{args.tiles}x{args.tiles} mosaic", args.tiles)):
            things, ops, reads = measure(engine, scenes(tiles))
            total_reads = sum(reads.values())
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(reads.items()) if v)
            cells = [str(ops[label]) for label in AFTER_NETWORK_LABELS]
            print(
                f"| {path} | {name} | {things} | "
                + " | ".join(cells)
                + f" | {sum(ops.values())} | {total_reads} ({kinds}) |"
            )
        engine.close()
    return 0
