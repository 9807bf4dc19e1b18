"""Benchmark of the instance tracker's cost per frame against center-offset fusion in the same run.

For 10, 50 and 200 instances, builds Panoptic-DeepLab-like network outputs (seeded, as in
``bench_fusion``), fuses them (timed: :func:`~panoptic_ros.fusion.center_offset.fuse_center_offset`),
and feeds the tracker two frames in turn, the fused one and the same shifted by a few pixels, so every
timed update associates all instances with existing tracks (median of ``--repeats`` updates after a
warm-up). Runs on the CPU, and on CUDA too where available; prints a markdown table with the ratio
tracker / fusion.

    python -m benchmarks.bench_tracking            # 1024 x 2048
    python -m benchmarks.bench_tracking --quick    # 256 x 512
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import torch

from benchmarks.common import benchmark_devices, cpu_model, device_name, median_ms
from panoptic_ros.fusion.center_offset import CenterOffsetParams, fuse_center_offset
from panoptic_ros.tracking import Tracker, TrackerInput
from tests.fusion.reference import SyntheticOutputs, synthetic_center_offset_outputs

T = TypeVar("T")
INSTANCE_COUNTS = (10, 50, 200)
FRAME_NS = 33_333_333  # 30 Hz


class Row(NamedTuple):
    """Median times (ms) of one instance count on one device."""

    device: str
    instances: int
    things: int
    tracks: int
    fusion_ms: float
    tracker_ms: float


def _inputs(panoptic: torch.Tensor, label_divisor: int, shift: int, stamp_ns: int) -> TrackerInput:
    """The thing instances of a fused panoptic map (classes as categories), moved by ``shift`` pixels
    down and right."""
    moved = torch.roll(panoptic, shifts=(shift, shift), dims=(0, 1))
    valid = moved >= 0
    instance = torch.where(valid, moved % label_divisor, 0)
    category = torch.where(valid, torch.div(moved, label_divisor, rounding_mode="floor"), 0)
    return TrackerInput.from_maps(instance, category, stamp_ns, label_divisor=label_divisor)


def bench(outputs: SyntheticOutputs, device: torch.device, *, repeats: int) -> Row:
    params = CenterOffsetParams()
    logits = outputs.semantic_logits.to(device)
    heat = outputs.center_heatmap.to(device)
    offsets = outputs.offsets.to(device)
    fusion_ms, fused = median_ms(
        device, lambda: fuse_center_offset(logits, heat, offsets, outputs.thing_classes, params), repeats
    )
    frames = [_inputs(fused.panoptic, params.label_divisor, shift, 0) for shift in (0, 3)]
    tracker = Tracker()
    counter = iter(range(1, 1 << 30))

    def update() -> int:
        k = next(counter)
        out = tracker.update(frames[k % 2]._replace(stamp_ns=k * FRAME_NS))
        return len(out.tracks)

    tracker.update(frames[0])
    tracker_ms, tracks = median_ms(device, update, repeats)
    return Row(
        device=device_name(device),
        instances=outputs.num_instances,
        things=int(frames[0].ids.numel()),
        tracks=tracks,
        fusion_ms=fusion_ms,
        tracker_ms=tracker_ms,
    )


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| device | instances painted | thing segments | tracks matched | fusion (ms) | tracker (ms) | "
        "tracker / fusion |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r.tracker_ms / r.fusion_ms:.2f}" if r.fusion_ms > 0 else "-"
        lines.append(
            f"| {r.device} | {r.instances} | {r.things} | {r.tracks} | {r.fusion_ms:.1f} "
            f"| {r.tracker_ms:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="256 x 512, 3 repetitions")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width, args.repeats = 256, 512, 3
    devices = benchmark_devices(args.device)
    if not devices:
        print("no CUDA device available")
        return 2
    rows = []
    for count in INSTANCE_COUNTS:
        outputs = synthetic_center_offset_outputs(
            args.height, args.width, num_instances=count, seed=args.seed
        )
        rows.extend(bench(outputs, device, repeats=args.repeats) for device in devices)
    print(f"### tracker vs center-offset fusion, {args.height} x {args.width}")
    print()
    print(f"- torch {torch.__version__}; CPU: {cpu_model()}")
    print(f"- median of {args.repeats} runs; every tracker update associates a frame shifted by 3 px")
    print()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
