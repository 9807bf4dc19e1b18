"""Benchmark of center-offset (Panoptic-DeepLab) fusion against the straightforward reference.

Builds realistic network outputs (Cityscapes-like: 19 classes, 8 things, about 50 instances at
1024 x 2048 by default, seeded), times every stage of :mod:`panoptic_ros.fusion.center_offset` and of
:mod:`tests.fusion.reference` on the same inputs in the same run, checks that both give the
same segments, and prints a markdown table. Runs on the CPU, and on CUDA too where available. The
fixed-shape fusion (:mod:`panoptic_ros.fusion.center_offset_fixed`) is timed whole, eager and, on
CUDA, replayed as one CUDA graph.

    python -m benchmarks.bench_fusion            # full size
    python -m benchmarks.bench_fusion --quick    # 256 x 512, 20 instances
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import torch

from benchmarks.common import benchmark_devices, cpu_model, device_name, sync
from panoptic_ros.fusion.center_offset import (
    CenterOffsetParams,
    find_centers,
    fuse_center_offset,
    group_pixels,
    merge_segments,
    segment_stats,
    semantic_argmax,
    thing_class_mask,
)
from panoptic_ros.fusion.center_offset_fixed import fuse_center_offset_fixed
from panoptic_ros.runtime.frame_graph import FrameGraph
from tests.fusion.reference import (
    ReferenceOutput,
    SyntheticOutputs,
    reference_find_centers,
    reference_group_pixels,
    reference_merge,
    reference_segment_stats,
    synthetic_center_offset_outputs,
)

T = TypeVar("T")

STAGES = ("semantic argmax", "center finding", "grouping", "merge", "stats")


class DeviceResult(NamedTuple):
    """Median stage times (ms) of one device and whether the outputs matched the reference."""

    device: str
    ours: dict[str, float]
    ours_whole: float
    fixed_whole: float  # the fixed-shape fusion, eager
    fixed_graph: float | None  # ... replayed as a CUDA graph (None on the CPU)
    reference: dict[str, float]
    identical: bool
    centers: int
    segments: int
    thing_pixels: int


def _timed(device: torch.device, times: dict[str, list[float]], stage: str, fn: Callable[[], T]) -> T:
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    times.setdefault(stage, []).append((time.perf_counter() - start) * 1e3)
    return result


def _run_ours(
    outputs: SyntheticOutputs, params: CenterOffsetParams, device: torch.device, times: dict[str, list[float]]
) -> torch.Tensor:
    logits = outputs.semantic_logits
    semantic = _timed(device, times, "semantic argmax", lambda: semantic_argmax(logits))
    centers = _timed(
        device,
        times,
        "center finding",
        lambda: find_centers(
            outputs.center_heatmap,
            center_threshold=params.center_threshold,
            nms_kernel=params.nms_kernel,
            top_k=params.top_k,
        ),
    )
    is_thing_class = thing_class_mask(outputs.thing_classes, logits.shape[0], device)
    instance = _timed(
        device,
        times,
        "grouping",
        lambda: group_pixels(is_thing_class[semantic], outputs.offsets, centers.points),
    )
    merged = _timed(
        device,
        times,
        "merge",
        lambda: merge_segments(
            semantic,
            instance,
            centers.points.shape[0],
            is_thing_class,
            stuff_area=params.stuff_area,
            label_divisor=params.label_divisor,
        ),
    )
    _timed(
        device,
        times,
        "stats",
        lambda: segment_stats(merged, semantic_logits=logits, center_scores=centers.scores),
    )
    return merged.panoptic


def _run_reference(
    outputs: SyntheticOutputs, params: CenterOffsetParams, device: torch.device, times: dict[str, list[float]]
) -> ReferenceOutput:
    logits = outputs.semantic_logits
    things = list(outputs.thing_classes)
    semantic = _timed(device, times, "semantic argmax", lambda: logits.argmax(dim=0))
    centers = _timed(
        device,
        times,
        "center finding",
        lambda: reference_find_centers(
            outputs.center_heatmap.clone(),
            center_threshold=params.center_threshold,
            nms_kernel=params.nms_kernel,
            top_k=params.top_k,
        ),
    )

    def grouping() -> torch.Tensor:
        thing_seg = torch.zeros_like(semantic)
        for thing_class in things:
            thing_seg[semantic == thing_class] = 1
        if centers.size(0) == 0:
            return torch.zeros_like(semantic)
        return thing_seg * reference_group_pixels(centers, outputs.offsets)

    instance = _timed(device, times, "grouping", grouping)
    panoptic = _timed(
        device,
        times,
        "merge",
        lambda: reference_merge(
            semantic, instance, things, stuff_area=params.stuff_area, label_divisor=params.label_divisor
        ),
    )
    result = ReferenceOutput(semantic, panoptic, instance, centers)
    _timed(
        device,
        times,
        "stats",
        lambda: reference_segment_stats(
            result, outputs.center_heatmap, things, semantic_logits=logits, label_divisor=params.label_divisor
        ),
    )
    return result


def same_segments(ours: torch.Tensor, theirs: torch.Tensor, label_divisor: int) -> bool:
    """Whether two panoptic maps have the same partition of pixels with the same class per segment."""
    if ours.shape != theirs.shape or not torch.equal(ours < 0, theirs < 0):
        return False
    pairs = torch.unique(torch.stack((ours.reshape(-1), theirs.reshape(-1)), dim=1), dim=0)
    one_to_one = pairs[:, 0].unique().numel() == pairs.shape[0] == pairs[:, 1].unique().numel()
    valid = pairs[:, 0] >= 0
    return one_to_one and torch.equal(pairs[valid, 0] // label_divisor, pairs[valid, 1] // label_divisor)


def bench_device(
    outputs: SyntheticOutputs,
    params: CenterOffsetParams,
    device: torch.device,
    *,
    repeats: int,
    reference_repeats: int,
) -> DeviceResult:
    """Time our stages and whole fusion (median of ``repeats``) and the reference's stages."""
    on_device = SyntheticOutputs(
        outputs.semantic_logits.to(device),
        outputs.center_heatmap.to(device),
        outputs.offsets.to(device),
        outputs.thing_classes,
        outputs.num_instances,
    )
    warmup: dict[str, list[float]] = {}
    _run_ours(on_device, params, device, warmup)
    stage_times: dict[str, list[float]] = {}
    whole_times: dict[str, list[float]] = {}
    for _ in range(repeats):
        panoptic = _run_ours(on_device, params, device, stage_times)
        fused = _timed(
            device,
            whole_times,
            "whole",
            lambda: fuse_center_offset(
                on_device.semantic_logits,
                on_device.center_heatmap,
                on_device.offsets,
                on_device.thing_classes,
                params,
            ),
        )
    num_classes = outputs.semantic_logits.shape[0]

    def fixed(semantic: torch.Tensor) -> torch.Tensor:
        out = fuse_center_offset_fixed(
            semantic,
            on_device.center_heatmap,
            on_device.offsets,
            on_device.thing_classes,
            params,
            num_classes=num_classes,
        )
        return out.panoptic

    fixed_times: dict[str, list[float]] = {}
    for _ in range(repeats):
        fixed_panoptic = _timed(device, fixed_times, "fixed", lambda: fixed(on_device.semantic_logits))
    graph_time = None
    if device.type == "cuda":
        graph = FrameGraph(fixed, on_device.semantic_logits)
        for _ in range(repeats):
            graphed = _timed(device, fixed_times, "graph", lambda: graph(on_device.semantic_logits))
        graph_time = statistics.median(fixed_times["graph"])
        fixed_panoptic = torch.where(graphed == fixed_panoptic, fixed_panoptic, -2)
    reference_times: dict[str, list[float]] = {}
    for _ in range(reference_repeats):
        reference = _run_reference(on_device, params, device, reference_times)
    identical = (
        torch.equal(panoptic.cpu(), reference.panoptic.cpu())
        and torch.equal(fused.panoptic.cpu(), reference.panoptic.cpu())
        and torch.equal(fixed_panoptic.cpu(), reference.panoptic.cpu())
        and same_segments(fused.panoptic.cpu(), reference.panoptic.cpu(), params.label_divisor)
    )
    return DeviceResult(
        device=device_name(device),
        ours={stage: statistics.median(stage_times[stage]) for stage in STAGES},
        ours_whole=statistics.median(whole_times["whole"]),
        fixed_whole=statistics.median(fixed_times["fixed"]),
        fixed_graph=graph_time,
        reference={stage: statistics.median(reference_times[stage]) for stage in STAGES},
        identical=identical,
        centers=int(fused.centers.shape[0]),
        segments=int(fused.segments.ids.numel()),
        thing_pixels=int(thing_class_mask(outputs.thing_classes, num_classes, device)[fused.semantic].sum()),
    )


def markdown_table(results: Sequence[DeviceResult]) -> str:
    """One row per stage; per device our median, the reference's and the speed-up."""
    header = ["stage"]
    for result in results:
        short = result.device.split(" (")[0]
        header += [f"ours {short} (ms)", f"reference {short} (ms)", f"speed-up {short}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(name: str, ours: Sequence[float], theirs: Sequence[float]) -> str:
        cells = [name]
        for mine, reference in zip(ours, theirs, strict=True):
            cells += [f"{mine:.1f}", f"{reference:.1f}", f"{reference / mine:.1f}x" if mine > 0 else "-"]
        return "| " + " | ".join(cells) + " |"

    for stage in STAGES:
        lines.append(row(stage, [r.ours[stage] for r in results], [r.reference[stage] for r in results]))
    fusion = STAGES[:4]
    lines.append(
        row(
            "fusion without stats (sum)",
            [sum(r.ours[s] for s in fusion) for r in results],
            [sum(r.reference[s] for s in fusion) for r in results],
        )
    )
    lines.append(
        row(
            "whole fusion with stats",
            [r.ours_whole for r in results],
            [sum(r.reference.values()) for r in results],
        )
    )
    reference_whole = [sum(r.reference.values()) for r in results]
    lines.append(row("fixed shapes, eager", [r.fixed_whole for r in results], reference_whole))
    if any(r.fixed_graph is not None for r in results):
        graphs = [r.fixed_graph if r.fixed_graph is not None else float("nan") for r in results]
        lines.append(row("fixed shapes, one CUDA graph", graphs, reference_whole))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of our fusion (median)")
    parser.add_argument("--reference-repeats", type=int, default=1, help="repetitions of the reference")
    parser.add_argument("--quick", action="store_true", help="256 x 512 with 20 instances")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width, args.instances = 256, 512, 20
    outputs = synthetic_center_offset_outputs(
        args.height, args.width, num_instances=args.instances, seed=args.seed
    )
    params = CenterOffsetParams()
    devices = benchmark_devices(args.device)
    if not devices:
        return 2
    results = [
        bench_device(outputs, params, device, repeats=args.repeats, reference_repeats=args.reference_repeats)
        for device in devices
    ]
    first = results[0]
    print(f"### center-offset fusion, {args.height} x {args.width}")
    print()
    print(f"- torch {torch.__version__}; CPU: {cpu_model()}")
    for result in results:
        print(f"- {result.device}: outputs identical to the reference: {'yes' if result.identical else 'NO'}")
    print(
        f"- {first.centers} centers, {first.segments} segments, {first.thing_pixels} thing pixels "
        f"({first.thing_pixels / (args.height * args.width):.0%}); {args.instances} instances painted"
    )
    print(f"- median of {args.repeats} runs (ours), {args.reference_repeats} run(s) (reference)")
    print()
    print(markdown_table(results))
    return 0 if all(r.identical for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
