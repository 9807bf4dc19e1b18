"""The segments' depth medians of 3D positions on the CPU: the compiled loops against the tensor form.

``python -m benchmarks.run depths`` (``-- --repeats N``): label maps at the shipped model's resolution
(192 x 384), each model pixel weighing the camera pixels of a 1080p frame that copy it, with 40
segments as blocks (things and stuff, a panoptic map's runs) or a new label at every pixel (runs of
one pixel, the loops' worst case), and four kinds of depth: a smooth plane, depths from 1 to 3 m (a
power of two crossed: the smallest and largest share no bit below the exponent), 0.1 % outliers at
50 m (flying pixels), and sensor noise (2 cm, millimetre steps). Each cell is the compiled medians'
time (:func:`panoptic_ros.core.geometry.segment_positions`, ``kernels=True``) over the tensor form's
(``kernels=False``: one sort of packed keys) in the same run, after checking that both give the same
positions bit for bit.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import torch

from benchmarks.common import median_ms
from panoptic_ros.core.geometry import CameraModel, segment_positions
from panoptic_ros.core.preprocess import pixel_frame, plan

MODEL = (192, 384)
CAMERA = (1080, 1920)
SEGMENTS = 40


def _labels(kind: str, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A thing id map (0 for stuff) and a category map of ``kind``: blocks of 16 x 24 pixels, or a new
    label at every pixel."""
    height, width = MODEL
    if kind == "blocks":
        block = (np.arange(height)[:, None] // 16 * 7 + np.arange(width)[None, :] // 24) % SEGMENTS
    else:
        block = rng.integers(0, SEGMENTS, size=MODEL)
    ids = np.where(block >= 8, block, 0)  # segments 8.. are things (their ids), 0..7 stuff categories
    return torch.from_numpy(ids.astype(np.int32)), torch.from_numpy(np.where(block < 8, block, 9))


def _depth(kind: str, rng: np.random.Generator) -> torch.Tensor:
    height, width = MODEL
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    plane = 3.0 + 0.01 * cols + 0.02 * rows
    if kind == "smooth plane":
        depth = plane
    elif kind == "1-3 m":
        depth = 1.0 + 2.0 * cols / width
    elif kind == "0.1 % outliers":
        depth = np.where(rng.random(MODEL) < 0.001, np.float32(50.0), plane)
    else:
        depth = np.round(plane + rng.normal(0.0, 0.02, MODEL), 3)
    return torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_depths")
    parser.add_argument("--repeats", type=int, default=20)
    args, _ = parser.parse_known_args(argv)
    cpu = torch.device("cpu")
    frame = pixel_frame(plan(CAMERA, MODEL, "resize"), MODEL, cpu)
    camera = CameraModel.from_k([1500.0, 0, 960.0, 0, 1500.0, 540.0, 0, 0, 1], CAMERA[1], CAMERA[0])
    keys = torch.tensor([*range(8, SEGMENTS), *(-1 - c for c in range(8))])
    centroids = torch.zeros(keys.numel(), 2)
    print(f"{MODEL[0]} x {MODEL[1]} model pixels weighing a {CAMERA[0]} x {CAMERA[1]} frame's pixels,")
    print(f"{SEGMENTS} segments; median of {args.repeats} runs; the compiled medians' time over the tensor")
    print("form's\n")
    print("| labels | depths | compiled / tensor form |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    for labels_kind in ("blocks", "a new label every pixel"):
        ids, semantic = _labels(labels_kind, rng)
        for depth_kind in ("smooth plane", "1-3 m", "0.1 % outliers", "sensor noise"):
            depth = _depth(depth_kind, rng)
            given = {"min_pixels": 10, "weights": frame.weights, "semantic": semantic}
            maps = (ids, keys, centroids, depth, camera)
            forms = [partial(segment_positions, *maps, kernels=kernels, **given) for kernels in (True, False)]
            (compiled_ms, compiled), (tensor_ms, tensor) = (median_ms(cpu, f, args.repeats) for f in forms)
            if not (torch.equal(compiled[1], tensor[1]) and torch.equal(compiled[0], tensor[0])):
                print(f"| {labels_kind} | {depth_kind} | the two forms differ |")
                return 1
            print(f"| {labels_kind} | {depth_kind} | {compiled_ms / tensor_ms:.3f} |")
    return 0
