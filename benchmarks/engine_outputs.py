"""Are the engine's outputs what they were? Dump them from one tree, compare with another's dump.

``python benchmarks/engine_outputs.py dump OUT.npz`` runs the shipped model (ONNX Runtime, CPU) over
three held-out synthetic sequences (seeds 1000-1002, 12 frames) at 640x480, 1920x1080 and 300x500,
stretched and letterboxed, tracking on, overlay requested, with the synthetic depth of each frame
(:func:`~panoptic_ros.data.bag_synth.synthetic_depth`) and camera_info, and stores every frame's
label images, overlay and instance table. ``python benchmarks/engine_outputs.py compare A.npz B.npz``
prints, per output, how many frames are identical (label images and overlay: the share of equal
pixels and the largest change of one value, e.g. one level of an overlay channel) and, for
the 3D positions, how far they moved, things and stuff apart. Run ``dump`` with ``PYTHONPATH`` set to
another tree (a ``git worktree`` of an older commit) to compare before and after a change, or
``--precision fp32`` and ``int8`` to compare the float network with its INT8 companion.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from panoptic_ros.backends.registry import precision_options
from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.data.bag_synth import synthetic_depth
from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine, InputFrame

SIZES = ((480, 640), (1080, 1920), (300, 500))
TABLE_FIELDS = ("ids", "category_ids", "areas", "bboxes", "scores", "centroids", "is_thing")


def dump(path: str, frames: int, model: Path | None = None, precision: str = "auto") -> None:
    out: dict[str, np.ndarray] = {}
    for resize in ("resize", "letterbox"):
        options = precision_options(precision)
        engine = FrameEngine.open(
            model or default_model(),
            backend="onnxruntime",
            device="cpu",
            resize=resize,
            backend_options=options,
        )
        for (height, width), seed in ((size, seed) for size in SIZES for seed in (1000, 1001, 1002)):
            engine.reset()
            camera = CameraModel.from_k(
                [0.8 * width, 0, width / 2, 0, 0.8 * width, height / 2, 0, 0, 1], width, height
            )
            for k, sample in enumerate(generate(1, seed=seed, sequence_length=frames)):
                image = np.ascontiguousarray(cv2.resize(sample.image, (width, height)))
                semantic = cv2.resize(
                    sample.semantic.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
                )
                instance = cv2.resize(
                    sample.instance.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST
                )
                depth = synthetic_depth(semantic, instance, camera)
                frame = InputFrame("cam", image, k * 10**8, overlay=True, depth=depth, camera_model=camera)
                (result,) = engine.process([frame])
                key = f"{resize}/{height}x{width}/{seed}/{k}"
                out[f"{key}/semantic"] = result.semantic
                out[f"{key}/instance_ids"] = result.instance_ids
                out[f"{key}/overlay"] = result.overlay_bgr
                for name in (*TABLE_FIELDS, "positions", "position_valid"):
                    out[f"{key}/{name}"] = np.asarray(getattr(result.instances, name))
        engine.close()
    np.savez_compressed(path, **out)
    print(f"wrote {len(out)} arrays to {path}")


def compare(before_path: str, after_path: str) -> int:
    before, after = np.load(before_path), np.load(after_path)
    frames: dict[str, list[bool]] = defaultdict(list)
    pixels: dict[str, list[float]] = defaultdict(list)
    moved: dict[str, list[float]] = defaultdict(list)
    largest: dict[str, int] = defaultdict(int)
    for key in before.files:
        name = key.rsplit("/", 1)[1]
        a, b = before[key], after[key]
        same = a.shape == b.shape and np.array_equal(a, b)
        frames[name].append(same)
        if name in ("semantic", "instance_ids", "overlay") and a.shape == b.shape:
            pixels[name].append(float(np.mean(np.all((a == b).reshape(*a.shape[:2], -1), axis=2))))
            largest[name] = max(largest[name], int(np.abs(a.astype(np.int64) - b).max(initial=0)))
        if name == "positions" and a.shape == b.shape:
            frame = key.rsplit("/", 1)[0]
            both = before[f"{frame}/position_valid"] & after[f"{frame}/position_valid"]
            thing = before[f"{frame}/is_thing"]
            for kind, rows in (("things", both & thing), ("stuff", both & ~thing)):
                distance = np.linalg.norm(a[rows] - b[rows], axis=1)
                moved[kind].extend((distance / np.maximum(np.abs(a[rows, 2]), 1e-6)).tolist())
    print(
        "| output | frames identical | equal pixels (all frames) | equal pixels (lowest frame) "
        "| largest change of a value |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, same in frames.items():
        share = f"{100 * min(pixels[name]):.3f} %" if pixels.get(name) else ""
        mean = f"{100 * np.mean(pixels[name]):.3f} %" if pixels.get(name) else ""
        change = str(largest[name]) if name in largest else ""
        print(f"| {name} | {sum(same)} / {len(same)} | {mean} | {share} | {change} |")
    for kind, values in moved.items():
        rel = np.asarray(values)
        print(
            f"\n3D positions of {kind}: {100 * np.mean(rel == 0):.1f} % of {rel.size} unchanged; distance "
            f"moved relative to the depth: p99 {np.percentile(rel, 99):.4f}, max {rel.max():.4f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine_outputs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dump_parser = sub.add_parser("dump", help="run the engine and store its outputs")
    dump_parser.add_argument("out")
    dump_parser.add_argument("--frames", type=int, default=12)
    dump_parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    dump_parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "int8"),
        default="auto",
        help="ONNX Runtime's (auto: the model's INT8 companion when current, as the node runs it)",
    )
    compare_parser = sub.add_parser("compare", help="compare two dumps")
    compare_parser.add_argument("before")
    compare_parser.add_argument("after")
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.out, args.frames, args.model, args.precision)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
