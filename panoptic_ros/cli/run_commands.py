"""``panoptic-ros`` commands that run the frame engine or the node: infer, demo, bag process, play, record.

``infer`` and ``bag process`` open the same :class:`~panoptic_ros.runtime.FrameEngine` from the same
arguments (:func:`_open_engine`); ``play`` and ``record`` need rclpy and import
:mod:`panoptic_ros.ros` inside their functions, so the rest works without ROS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from panoptic_ros.cli.common import (
    Command,
    json_argument,
    model_arguments,
    parse_options,
    storage_argument,
    write_json,
)
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import EngineParams, FrameEngine


def _open_engine(args: argparse.Namespace, *, tracking: bool, resize: str = "resize") -> FrameEngine:
    """The engine of the ``--model``/``--backend``/``--device`` arguments."""
    return FrameEngine.open(
        args.model or default_model(),
        backend=args.backend,
        device=args.device,
        resize=resize,  # type: ignore[arg-type]
        backend_options=parse_options(getattr(args, "backend_option", [])),
        cuda_graph=getattr(args, "cuda_graph", False),
        params=EngineParams(tracking=tracking),
    )


def _stages(engine: FrameEngine) -> str:
    return ", ".join(f"{k} {v:.1f} ms" for k, v in engine.stage_times().items())


# ---- infer


def _infer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        help="an image, a folder of images (or a COCO panoptic folder), a video, or a rosbag2 folder",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (COCO panoptic predictions)")
    model_arguments(parser, backend_options=True)
    parser.add_argument(
        "--resize",
        choices=("resize", "letterbox"),
        default="resize",
        help="fit frames to the model input by stretching (default) or letterboxing",
    )
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay images")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that has predictions")
    parser.add_argument(
        "--track",
        action="store_true",
        help="track things across frames: thing segment ids become stable track ids",
    )
    parser.add_argument(
        "--label-maps",
        action="store_true",
        help="also write the label images of every frame (labels/<frame>.npz: semantic, instance_ids)",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=10.0,
        help="frame rate of image folders, for track velocities (default 10)",
    )


def _infer_run(args: argparse.Namespace) -> int:
    from panoptic_ros.apps.infer import run_infer

    with _open_engine(args, tracking=args.track, resize=args.resize) as engine:
        count = run_infer(
            engine,
            args.input,
            args.out,
            overlays=not args.no_overlay,
            overwrite=args.overwrite,
            label_maps=args.label_maps,
            fps=args.fps,
        )
        print(f"{count} frames -> {args.out} ({engine.describe()}; per frame: {_stages(engine)})")
    return 0 if count else 1


# ---- demo


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--frames", type=int, default=40, help="frames per camera (default 40)")
    parser.add_argument("--cameras", type=int, default=3, help="cameras of the live demo (default 3)")
    parser.add_argument("--rate", type=float, default=1.0, help="bag playback speed factor (live demo)")
    parser.add_argument(
        "--fastdds-profile",
        default=None,
        help="Fast DDS XML profile of the node, player and recorder (live demo; default: the shipped "
        "config/fastdds_large_images.xml unless FASTDDS_DEFAULT_PROFILES_FILE is set; 'none': none)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="without ROS: record a bag of exotic encodings and run the pipeline over it (no node, no DDS)",
    )
    storage_argument(parser, "bag storage format (offline demo)")
    model_arguments(parser)


def _demo_run(args: argparse.Namespace) -> int:
    if args.offline:
        from panoptic_ros.apps.demo import run_demo

        return run_demo(
            args.out,
            frames=args.frames,
            storage=args.storage,
            model=args.model,
            backend=args.backend,
            device=args.device,
        )
    from panoptic_ros.ros.live_demo import run_live_demo

    summary = run_live_demo(
        args.out,
        cameras=args.cameras,
        frames=args.frames,
        rate=args.rate,
        fastdds_profile=args.fastdds_profile,
        model=str(args.model or ""),
        backend=args.backend,
        device=args.device,
    )
    print()
    print(summary.table())
    print()
    for name, path in summary.files.items():
        print(f"{name:14s} {path}")
    return 0 if summary.frames_out else 1


# ---- bag process


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
    model_arguments(parser, backend_options=True)
    parser.add_argument("--no-track", action="store_true", help="no tracking: per-frame instance numbers")
    parser.add_argument("--no-overlay", action="store_true", help="do not write panoptic/overlay")
    parser.add_argument(
        "--labels",
        choices=("raw", "png"),
        default="raw",
        help="label images as raw Image (default) or lossless PNG CompressedImage (.../compressed)",
    )
    parser.add_argument(
        "--points", action="store_true", help="also write panoptic/points (cameras with depth + camera_info)"
    )
    storage_argument(parser, "storage of the output bag (default sqlite3)")
    json_argument(parser, "the summary")


def _process_run(args: argparse.Namespace) -> int:
    from panoptic_ros.apps.bag_process import ProcessOptions, process_bag

    options = ProcessOptions(
        cameras=tuple(args.camera) if args.camera else None,
        overlay=not args.no_overlay,
        labels=args.labels,
        points=args.points,
        storage=args.storage,
    )
    with _open_engine(args, tracking=not args.no_track) as engine:
        report = process_bag(args.input, args.out, engine, options)
        print(report.summary())
        print(f"{engine.describe()}; per frame: {_stages(engine)}")
    write_json(args.json, json.dumps(report.to_dict(), indent=1))
    return 0 if report.frames_out else 1


# ---- bag play / record (rclpy)


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
    storage_argument(parser, "bag storage (default sqlite3)")


def _record_run(args: argparse.Namespace) -> int:
    from panoptic_ros.ros.bag_recorder import record

    try:
        report = record(args.out, args.topics, duration=args.duration, storage=args.storage)
    except KeyboardInterrupt:
        print(f"recording into {args.out} stopped")
        return 0
    print(report.summary())
    return 0


COMMANDS: tuple[Command, ...] = (
    Command(
        "demo",
        "the node live on a synthetic multi-camera bag (or --offline: the pipeline over exotic encodings)",
        _demo_arguments,
        _demo_run,
    ),
    Command(
        "infer",
        "panoptic segmentation of images, a video or a bag with a model (COCO panoptic output)",
        _infer_arguments,
        _infer_run,
    ),
)
BAG_COMMANDS: tuple[Command, ...] = (
    Command(
        "process",
        "run the frame engine over a bag's cameras and write the outputs into a new bag",
        _process_arguments,
        _process_run,
    ),
    Command(
        "play",
        "publish a bag's messages through rclpy with their original timing",
        _play_arguments,
        _play_run,
    ),
    Command("record", "record topics from ROS 2 into a new bag", _record_arguments, _record_run),
)
