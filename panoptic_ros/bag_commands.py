"""``panoptic-ros bag ...``: the bag tools' sub-commands (info, synth, process, eval, play, record).

``play`` and ``record`` need rclpy and import :mod:`panoptic_ros.ros` inside their functions, so the
rest works without ROS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from panoptic_ros.errors import ConfigError


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError(text)
        return int(height), int(width)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 192x384") from err


def _storage(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help=help_text)


# ---- info


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 folder (sqlite3 or MCAP)")


def _info_run(args: argparse.Namespace) -> int:
    from panoptic_ros.data.bag_io import message_counts, topic_types

    types = topic_types(args.bag)
    counts = message_counts(args.bag)
    if not types:
        print(f"{args.bag}: no topics")
        return 1
    for topic in sorted(types):
        print(f"{topic}  {types[topic]}  {counts.get(topic, 0)} messages")
    return 0


# ---- synth


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    from panoptic_ros.data.bag_synth import SynthBagConfig

    d = SynthBagConfig()
    parser.add_argument("out", type=Path, help="new rosbag2 folder")
    parser.add_argument(
        "--cameras", type=int, default=d.cameras, help=f"cameras /cam0.. (default {d.cameras})"
    )
    parser.add_argument(
        "--sequences", type=int, default=d.sequences, help=f"sequences per camera (default {d.sequences})"
    )
    parser.add_argument(
        "--frames", type=int, default=d.frames, help=f"frames per sequence (default {d.frames})"
    )
    parser.add_argument(
        "--size", type=_size, default=d.size, help=f"image size HxW (default {d.size[0]}x{d.size[1]})"
    )
    parser.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of rgb8")
    _storage(parser, "bag storage (default sqlite3)")
    parser.add_argument(
        "--seed", type=int, default=d.seed, help=f"world seed (default {d.seed}; the model was trained on 0)"
    )


def _synth_run(args: argparse.Namespace) -> int:
    from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag

    report = write_synthetic_bag(
        args.out,
        SynthBagConfig(
            cameras=args.cameras,
            sequences=args.sequences,
            frames=args.frames,
            size=args.size,
            compressed=args.compressed,
            storage=args.storage,
            seed=args.seed,
        ),
    )
    print(
        f"wrote {report.messages} messages on {len(report.counts)} topics into {report.path} "
        f"(cameras: {', '.join(report.image_topics)})"
    )
    return 0


# ---- process


def _process_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="rosbag2 folder with camera topics")
    parser.add_argument("out", type=Path, help="new rosbag2 folder for the outputs")
    parser.add_argument(
        "--camera",
        action="extend",
        nargs="+",
        metavar="TOPIC",
        help="camera topics to process (default: every Image/CompressedImage topic that is not depth, "
        "ground truth or output)",
    )
    parser.add_argument("--model", type=Path, help="ONNX model with a spec (default: the shipped model)")
    parser.add_argument("--backend", default="auto", help="auto (default), onnxruntime or torch")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--no-track", action="store_true", help="no tracking: per-frame instance numbers")
    parser.add_argument("--no-overlay", action="store_true", help="do not write panoptic/overlay")
    _storage(parser, "storage of the output bag (default sqlite3)")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")


def _process_run(args: argparse.Namespace) -> int:
    from panoptic_ros.cli import default_model
    from panoptic_ros.core.pipeline import PanopticPipeline
    from panoptic_ros.data.bag_process import ProcessOptions, process_bag
    from panoptic_ros.runtime import FrameProcessor, ProcessorParams

    options = ProcessOptions(
        cameras=tuple(args.camera) if args.camera else None,
        overlay=not args.no_overlay,
        storage=args.storage,
    )
    with PanopticPipeline(
        args.model or default_model(), backend=args.backend, device=args.device
    ) as pipeline:
        processor = FrameProcessor(pipeline, ProcessorParams(tracking=not args.no_track))
        report = process_bag(args.input, args.out, processor, options)
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in pipeline.times.per_frame_ms().items())
        print(report.summary())
        print(f"{pipeline.backend.describe()}; per frame: {stages}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return 0 if report.frames_out else 1


# ---- eval


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="a bag with panoptic outputs and ground truth (bag process)")
    parser.add_argument(
        "--labels", help="label set name or .yaml (default: the bag's panoptic/categories message)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")


def _eval_run(args: argparse.Namespace) -> int:
    from panoptic_ros.core.labels import load_label_set
    from panoptic_ros.data.bag_eval import evaluate_bag

    report = evaluate_bag(args.bag, load_label_set(args.labels) if args.labels else None)
    print(report.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json() + "\n")
    return 0 if report.matched else 1


# ---- play / record (rclpy)


def _play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="rosbag2 folder")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="start over at the end (stamps stay the bag's)")
    parser.add_argument(
        "--topics",
        action="extend",
        nargs="+",
        metavar="TOPIC",
        help="topics to play (default: images, camera_info and panoptic_ros types)",
    )
    parser.add_argument(
        "--best-effort", action="store_true", help="best-effort publishers (default reliable)"
    )
    parser.add_argument(
        "--wait-for",
        action="extend",
        nargs="+",
        metavar="TOPIC",
        help="topics that need a subscriber before playing (default: the camera topics played)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for subscribers before playing (default 10; 0 = do not wait)",
    )


def _play_run(args: argparse.Namespace) -> int:
    from panoptic_ros.ros.bag_player import play

    report = play(
        args.input,
        rate=args.rate,
        loop=args.loop,
        topics=args.topics,
        qos_reliable=not args.best_effort,
        wait_for=args.wait_for,
        wait_s=args.wait,
    )
    print(report.summary())
    return 0 if report.published else 1


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="new rosbag2 folder")
    parser.add_argument(
        "--topics",
        action="extend",
        nargs="+",
        required=True,
        metavar="TOPIC[=TYPE]",
        help="topics to record; without =package/msg/Type the type is looked up on the ROS graph",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    _storage(parser, "bag storage (default sqlite3)")


def _record_run(args: argparse.Namespace) -> int:
    from panoptic_ros.ros.bag_recorder import record

    try:
        report = record(args.out, args.topics, duration=args.duration, storage=args.storage)
    except KeyboardInterrupt:
        print(f"recording into {args.out} stopped")
        return 0
    print(report.summary())
    return 0


SUBCOMMANDS = {
    "info": ("list every topic of a bag with its type and message count", _info_arguments, _info_run),
    "synth": (
        "write a synthetic multi-camera bag with depth, camera_info and ground truth",
        _synth_arguments,
        _synth_run,
    ),
    "process": (
        "run the pipeline over a bag's cameras and write the outputs into a new bag",
        _process_arguments,
        _process_run,
    ),
    "eval": ("PQ and STQ of a bag's outputs against its ground truth", _eval_arguments, _eval_run),
    "play": ("publish a bag's messages through rclpy with their original timing", _play_arguments, _play_run),
    "record": ("record topics from ROS 2 into a new bag", _record_arguments, _record_run),
}


def add_bag_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bag`` command's sub-commands."""
    sub = parser.add_subparsers(dest="bag_command", metavar="SUBCOMMAND", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub_parser)
        sub_parser.set_defaults(bag_run=run)


def run_bag(args: argparse.Namespace) -> int:
    """Run the chosen ``bag`` sub-command."""
    run = getattr(args, "bag_run", None)
    if run is None:
        raise ConfigError("name a bag sub-command: " + ", ".join(SUBCOMMANDS))
    return int(run(args))
