"""Benchmark of the instance tracker's cost per frame against center-offset fusion in the same run.

For 10, 50 and 200 instances, builds Panoptic-DeepLab-like network outputs (seeded, as in
``bench_fusion``), fuses them (timed: :func:`~panoptic_ros.fusion.center_offset.fuse_center_offset`),
and feeds the tracker two frames in turn, the fused one and the same shifted by a few pixels, so every
timed update associates all instances with existing tracks (median of ``--repeats`` updates after a
warm-up). Runs on the CPU, and on CUDA too where available; prints a markdown table with the ratio
tracker / fusion.

    python -m benchmarks.bench_tracking            # 1024 x 2048
    python -m benchmarks.bench_tracking --quick    # 256 x 512

With ``--reid``, instead: identity quality with re-identification off (``reid_seconds=0``) and on (the
default), counts, not times. Synthetic sequences where things leave the frame and come back and
trunks in front of the camera hide what passes behind them (``generate(returns=1, occluders=1)``),
tracked at 10 Hz from (a) the ground-truth masks with ids scrambled every frame and (b) the shipped
model (ONNX Runtime on the CPU, through the frame engine's pipeline and ``tracker_input``, every
tracker fed the same frames); ID switches per 1000 ground-truth object-frames and AQ
(:mod:`panoptic_ros.metrics.video`).

    python -m benchmarks.bench_tracking --reid                 # 8 x 60 frames, seed 1000
    python -m benchmarks.bench_tracking --reid --no-model      # ground-truth masks only
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import torch

from benchmarks.common import benchmark_devices, cpu_model, device_name, median_ms
from panoptic_ros.data.synthetic import generate
from panoptic_ros.data.synthetic_scene import THING_CLASSES
from panoptic_ros.fusion.center_offset import CenterOffsetParams, fuse_center_offset
from panoptic_ros.metrics.semantic import SEMANTIC_VOID
from panoptic_ros.metrics.video import FrameLabels
from panoptic_ros.metrics.video_result import VideoResult
from panoptic_ros.tracking import Tracker, TrackerInput, TrackerParams
from tests.fusion.reference import SyntheticOutputs, synthetic_center_offset_outputs
from tests.tracking.test_tracker_synthetic import FRAME_NS as SEQUENCE_FRAME_NS
from tests.tracking.test_tracker_synthetic import Scores, evaluate

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


def reid_settings() -> list[tuple[str, TrackerParams]]:
    """The two trackers compared by ``--reid``: re-identification off and the defaults."""
    return [
        ("off", TrackerParams(reid_seconds=0.0)),
        (f"{TrackerParams().reid_seconds:g} s", TrackerParams()),
    ]


def model_results(
    settings: Sequence[TrackerParams], *, sequences: int, frames: int, seed: int
) -> list[VideoResult]:
    """The shipped model (ONNX Runtime, CPU) on the ``--reid`` sequences, one result per tracker."""
    from panoptic_ros.resources import default_model
    from panoptic_ros.runtime import EngineParams, FrameEngine
    from panoptic_ros.runtime.download import tracker_input
    from panoptic_ros.runtime.records import InputFrame

    scores = Scores(len(settings))
    trackers: list[Tracker] = []
    engine = FrameEngine.open(
        default_model(), backend="onnxruntime", device="cpu", params=EngineParams(tracking=False)
    )
    with engine:
        void = engine.label_set.void_semantic
        things = [c.id for c in engine.label_set.categories if c.is_thing]
        samples = generate(sequences, seed=seed, sequence_length=frames, returns=1.0, occluders=1)
        for sample in samples:
            if sample.frame == 0:
                scores.start(f"seq_{sample.sequence:04d}")
                trackers = [Tracker(params) for params in settings]
            stamp = sample.frame * SEQUENCE_FRAME_NS
            (out,), _ = engine.infer([InputFrame(camera="cam", image=sample.image, stamp_ns=stamp)])
            inp = tracker_input(out, stamp)
            semantic = out.semantic.cpu().numpy().astype(np.int64)
            semantic[semantic == void] = SEMANTIC_VOID
            is_thing = np.isin(semantic, things)
            gt_semantic = sample.semantic.astype(np.int64)
            gt = FrameLabels(gt_semantic, np.where(np.isin(gt_semantic, THING_CLASSES), sample.instance, 0))
            scores.add(
                gt,
                [
                    FrameLabels(semantic, np.where(is_thing, t.update(inp).track_map.cpu().numpy(), 0))
                    for t in trackers
                ],
            )
    return scores.results()


def reid_table(rows: Sequence[tuple[str, str, VideoResult]]) -> str:
    lines = [
        "| input | re-id | ID switches | per 1000 object-frames | AQ | fragmentations | object-frames "
        "| gt tracks | predicted tracks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for source, setting, r in rows:
        lines.append(
            f"| {source} | {setting} | {r.id_switches} | {r.id_switches_per_1000:.2f} | {r.aq:.3f} "
            f"| {r.fragmentations} | {r.object_frames} | {r.num_gt_tracks} | {r.num_pred_tracks} |"
        )
    return "\n".join(lines)


def reid_main(args: argparse.Namespace) -> int:
    names, settings = zip(*reid_settings(), strict=True)
    options = {"sequences": args.sequences, "frames": args.frames, "seed": args.seed}
    tracked, _ = evaluate(settings, returns=1.0, occluders=1, **options)
    rows = [("ground-truth masks", n, r) for n, r in zip(names, tracked, strict=True)]
    if not args.no_model:
        model = model_results(settings, **options)
        rows += [("shipped model (onnxruntime, CPU)", n, r) for n, r in zip(names, model, strict=True)]
    print(
        f"### re-identification: {args.sequences} sequences x {args.frames} frames at 10 Hz, "
        f"seed {args.seed}; things leave and come back, a trunk in front of the camera"
    )
    print()
    print(reid_table(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=None, help="default 0 (speed), 1000 (--reid)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="256 x 512, 3 repetitions")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    reid = parser.add_argument_group("identity quality with and without re-identification")
    reid.add_argument("--reid", action="store_true", help="compare re-identification off and on")
    reid.add_argument("--sequences", type=int, default=8, help="synthetic sequences (default 8)")
    reid.add_argument("--frames", type=int, default=60, help="frames per sequence (default 60)")
    reid.add_argument("--no-model", action="store_true", help="ground-truth masks only")
    args = parser.parse_args(argv)
    if args.reid:
        args.seed = 1000 if args.seed is None else args.seed
        return reid_main(args)
    args.seed = 0 if args.seed is None else args.seed
    if args.quick:
        args.height, args.width, args.repeats = 256, 512, 3
    devices = benchmark_devices(args.device)
    if not devices:
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
