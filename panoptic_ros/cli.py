"""The ``panoptic-ros`` command line (no ROS needed).

Each subcommand is a :class:`Command`: a name, a help line, a function that adds its arguments and
a function that runs it. ``main`` turns :class:`~panoptic_ros.errors.PanopticRosError` into a one-line
message and exit status 2, so users see what to fix instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from panoptic_ros import __version__
from panoptic_ros.errors import ConfigError, PanopticRosError

log = logging.getLogger("panoptic_ros")


class Command(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------------------------------
# labels


def _labels_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="a shipped label set name or a .yaml path; omit to list them")
    parser.add_argument("--json", action="store_true", help="print the label set as JSON")


def _labels_run(args: argparse.Namespace) -> int:
    from panoptic_ros.core.labels import load_label_set, shipped_label_sets

    if args.name is None:
        for name in shipped_label_sets():
            label_set = load_label_set(name)
            print(f"{name:16s} {len(label_set):4d} categories ({len(label_set.thing_ids)} things)")
        return 0
    label_set = load_label_set(args.name)
    if args.json:
        print(json.dumps(label_set.to_dict(), indent=1))
        return 0
    print(f"{label_set.name}: {len(label_set)} categories, void = {label_set.void_semantic}")
    for index, c in enumerate(label_set.categories):
        kind = "thing" if c.is_thing else "stuff"
        print(f"  [{index:3d}] id {c.id:3d}  {kind}  #{bytes(c.color).hex()}  {c.name}")
    return 0


# --------------------------------------------------------------------------------------------------
# bag-info / bag / decode


def _bag_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 folder (sqlite3 or MCAP)")


def _bag_info_run(args: argparse.Namespace) -> int:
    from panoptic_ros.data.bags import image_topics

    topics = image_topics(args.bag)
    if not topics:
        print(f"{args.bag}: no image topics")
        return 1
    for topic, msgtype in sorted(topics.items()):
        print(f"{topic}  {msgtype}")
    return 0


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="rosbag2 folder with camera topics")
    parser.add_argument("--out", required=True, type=Path, help="folder for the decoded frames (PNG)")
    parser.add_argument("--topic", action="append", help="only this image topic (repeatable)")
    parser.add_argument("--every", type=int, default=1, help="write every N-th frame per topic (default 1)")


def _decode_run(args: argparse.Namespace) -> int:
    from panoptic_ros.demo import decode_bag

    report = decode_bag(args.input, args.out, topics=args.topic, every=args.every)
    print(report.table())
    return 0 if report.decoded else 1


def _bag_arguments(parser: argparse.ArgumentParser) -> None:
    from panoptic_ros.bag_commands import add_bag_arguments

    add_bag_arguments(parser)


def _bag_run(args: argparse.Namespace) -> int:
    from panoptic_ros.bag_commands import run_bag

    return run_bag(args)


# --------------------------------------------------------------------------------------------------
# demo


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--frames", type=int, default=40, help="frames per camera (default 40)")
    parser.add_argument("--cameras", type=int, default=3, help="cameras of the live demo (default 3)")
    parser.add_argument("--rate", type=float, default=1.0, help="bag playback speed factor (live demo)")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="without ROS: record a bag of exotic encodings and run the pipeline over it (no node, no DDS)",
    )
    parser.add_argument(
        "--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="bag storage format (offline demo)"
    )
    parser.add_argument("--model", type=Path, help="ONNX model with a spec (default: the shipped model)")
    parser.add_argument("--backend", default="auto", help="auto (default), onnxruntime or torch")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")


def _demo_run(args: argparse.Namespace) -> int:
    if args.offline:
        from panoptic_ros.demo import run_demo

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


# --------------------------------------------------------------------------------------------------
# synth / eval


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (COCO panoptic format)")
    parser.add_argument("--count", required=True, type=int, help="number of images, or of sequences")
    parser.add_argument(
        "--seed",
        required=True,
        type=int,
        help="world seed; the shipped model was trained on seed 0, so evaluate on others",
    )
    parser.add_argument("--width", type=int, help="image width (default: the shipped model's input width)")
    parser.add_argument("--height", type=int, help="image height (default: the shipped model's input height)")
    parser.add_argument(
        "--sequence-length",
        type=int,
        help="write COUNT sequences of this many frames, one folder each (things keep their ids)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a folder that already has a dataset"
    )


def _synth_run(args: argparse.Namespace) -> int:
    from panoptic_ros.data.synthetic import DEFAULT_SIZE, export_coco

    if args.count < 1 or (args.sequence_length is not None and args.sequence_length < 1):
        raise ConfigError("--count and --sequence-length must be at least 1")
    height = args.height or DEFAULT_SIZE[0]
    width = args.width or DEFAULT_SIZE[1]
    if height < 16 or width < 16:
        raise ConfigError(f"--height {height} / --width {width}: images must be at least 16 x 16")
    folders = export_coco(
        args.out,
        args.count,
        seed=args.seed,
        height=height,
        width=width,
        sequence_length=args.sequence_length,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(folders)} COCO panoptic folder(s) under {args.out}")
    return 0


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth COCO panoptic folder")
    parser.add_argument("--pred", required=True, type=Path, help="predicted COCO panoptic folder")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--per-class", action="store_true", help="print PQ/SQ/RQ per class (with --video: per sequence)"
    )
    parser.add_argument(
        "--video",
        action="store_true",
        help="video metrics over folders of sequences: STQ, AQ, SQ, ID switches, fragmentations",
    )


def _eval_run(args: argparse.Namespace) -> int:
    from panoptic_ros.metrics import evaluate_folders, evaluate_video_folders

    if args.video:
        result = evaluate_video_folders(args.gt, args.pred, progress=True)
        print(result.table(per_sequence=args.per_class))
    else:
        result = evaluate_folders(args.gt, args.pred)
        print(result.table(per_class=args.per_class))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(result.to_json() + "\n")
    return 0


# --------------------------------------------------------------------------------------------------
# infer


def default_model() -> Path:
    from panoptic_ros.resources import engines_dir

    return engines_dir() / "panoptic_synthetic.onnx"


def _infer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="ONNX model with a spec (default: the shipped model)")
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        help="an image, a folder of images (or a COCO panoptic folder), a video, or a rosbag2 folder",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (COCO panoptic predictions)")
    parser.add_argument("--backend", default="auto", help="auto (default), onnxruntime or torch")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
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
        "--fps",
        type=float,
        default=10.0,
        help="frame rate of image folders, for track velocities (default 10)",
    )
    parser.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option, e.g. compile=true or cuda_graphs=true (torch), precision=fp16 (tensorrt)",
    )


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings to a dict; values are read as JSON (true, 3, 0.5) or else kept as text."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--backend-option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _infer_run(args: argparse.Namespace) -> int:
    from panoptic_ros.core.pipeline import PanopticPipeline
    from panoptic_ros.infer import run_infer

    model = args.model or default_model()
    with PanopticPipeline(
        model,
        backend=args.backend,
        device=args.device,
        resize=args.resize,
        timing=True,
        backend_options=parse_options(args.backend_option),
    ) as pipeline:
        from panoptic_ros.tracking import TrackerParams

        count = run_infer(
            pipeline,
            args.input,
            args.out,
            overlays=not args.no_overlay,
            overwrite=args.overwrite,
            track=TrackerParams() if args.track else None,
            fps=args.fps,
        )
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in pipeline.times.per_frame_ms().items())
        print(f"{count} frames -> {args.out} ({pipeline.backend.describe()}; per frame: {stages})")
    return 0 if count else 1


# --------------------------------------------------------------------------------------------------
# build-engine / check-onnx


def _build_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", type=Path, help="ONNX model with a spec (default: the shipped model)")
    parser.add_argument(
        "--out",
        type=Path,
        help="engine file (default: next to the ONNX, named by its cache key, where the node looks)",
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16", action="store_const", dest="precision", const="fp16", help="FP16 (default)"
    )
    precision.add_argument("--fp32", action="store_const", dest="precision", const="fp32", help="FP32")
    precision.add_argument(
        "--int8",
        action="store_const",
        dest="precision",
        const="int8",
        help="INT8 with entropy calibration (needs --calib unless a calibration cache exists)",
    )
    parser.add_argument(
        "--calib", type=Path, help="folder of images or a rosbag2 folder for INT8 calibration"
    )
    parser.add_argument(
        "--max-batch", type=int, help="largest batch (number of cameras); default: the spec's"
    )
    parser.set_defaults(precision="fp16")


def _build_engine_run(args: argparse.Namespace) -> int:
    from panoptic_ros.backends.tensorrt_backend import build_engine_command

    if args.calib is not None and args.precision != "int8":
        raise ConfigError("--calib is only used with --int8")
    result = build_engine_command(
        args.onnx or default_model(), args.out, args.precision, args.calib, args.max_batch
    )
    print(f"engine {result.engine_path} ({result.precision_used}, {result.seconds:.0f} s)")
    return 0


def _check_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, nargs="?", help="ONNX file (default: the shipped model)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _check_onnx_run(args: argparse.Namespace) -> int:
    from panoptic_ros.models.onnx_check import check_onnx

    report = check_onnx(args.model or default_model())
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1


# --------------------------------------------------------------------------------------------------
# train


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from panoptic_ros.models.train import TrainConfig

    defaults = TrainConfig()
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("engines/panoptic_synthetic.onnx"),
        help="ONNX file to write (default: the shipped model, engines/panoptic_synthetic.onnx)",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("out/train"), help="checkpoints and history")
    parser.add_argument(
        "--steps", type=int, default=defaults.steps, help=f"optimizer steps (default {defaults.steps})"
    )
    parser.add_argument(
        "--images",
        type=int,
        default=defaults.images,
        help=f"synthetic training images rendered in memory (default {defaults.images})",
    )
    parser.add_argument(
        "--batch", type=int, default=defaults.batch, help=f"batch size (default {defaults.batch})"
    )
    parser.add_argument(
        "--width", type=int, default=defaults.width, help=f"network width (default {defaults.width})"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"data and init seed (default {defaults.seed})"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore an existing checkpoint in --work-dir"
    )


def _train_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from panoptic_ros.models.export import export_onnx
    from panoptic_ros.models.train import TrainConfig, synthetic_model_spec, train

    cfg = replace(
        TrainConfig(),
        steps=args.steps,
        images=args.images,
        batch=args.batch,
        width=args.width,
        seed=args.seed,
        threads=args.threads,
    )
    model = train(cfg, args.work_dir, resume=not args.no_resume)
    path = export_onnx(model, synthetic_model_spec(cfg), args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) with its model spec")
    return 0


# --------------------------------------------------------------------------------------------------
# export


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        help="transformers Mask2Former / MaskFormer / OneFormer checkpoint: a folder or a hub id",
    )
    source.add_argument(
        "--module",
        help="PyTorch network of another family: 'package.module:factory' (called without arguments); "
        "needs --spec",
    )
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write (spec embedded)")
    parser.add_argument("--spec", type=Path, help="with --module: the model spec (JSON, see docs/models.md)")
    parser.add_argument("--weights", type=Path, help="with --module: a state dict (.pt) to load first")
    parser.add_argument("--height", type=int, help="input height (default: from the image processor)")
    parser.add_argument("--width", type=int, help="input width (default: from the image processor)")
    parser.add_argument("--max-batch", type=int, default=4, help="largest batch (cameras), default 4")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--label-set", help="label set of the checkpoint's classes: a shipped name or a .yaml path"
    )
    labels.add_argument(
        "--thing-ids",
        help="comma-separated class indices that are things, when the checkpoint does not say",
    )
    parser.add_argument(
        "--fusion-mode",
        choices=("mask2former", "transformers"),
        default="mask2former",
        help="fusion rules written into the spec (default: Mask2Former's)",
    )
    parser.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "torchscript"),
        default="auto",
        help="ONNX exporter (auto: torch.export, falling back to TorchScript)",
    )
    parser.add_argument("--name", help="model name in the spec (default: the checkpoint's)")


def _export_run(args: argparse.Namespace) -> int:
    from panoptic_ros.models.hf_export import export_module, export_transformers
    from panoptic_ros.models.onnx_check import check_onnx
    from panoptic_ros.models.spec import ModelSpec

    if args.checkpoint:
        thing_ids = None
        if args.thing_ids is not None:
            try:
                thing_ids = [int(v) for v in args.thing_ids.split(",") if v.strip()]
            except ValueError as err:
                raise ConfigError(
                    f"--thing-ids {args.thing_ids!r} is not a comma-separated list of integers"
                ) from err
        report = export_transformers(
            args.checkpoint,
            args.out,
            height=args.height,
            width=args.width,
            max_batch=args.max_batch,
            label_set=args.label_set,
            thing_ids=thing_ids,
            fusion_mode=args.fusion_mode,
            exporter=args.exporter,
            name=args.name,
        )
    else:
        if args.spec is None:
            raise ConfigError("--module needs --spec with the model spec (JSON)")
        spec = ModelSpec.from_json(args.spec.read_text(encoding="utf-8"), source=str(args.spec))
        report = export_module(
            _load_module(args.module, args.weights), spec, args.out, exporter=args.exporter
        )
    spec = report.spec
    things = sum(c.is_thing for c in spec.label_set.categories)
    errors = ", ".join(f"{k} {v:.2g}" for k, v in report.max_error.items())
    print(
        f"wrote {report.path} ({report.path.stat().st_size / 1e6:.1f} MB, {report.exporter} exporter): "
        f"{spec.family}, input {spec.input.height} x {spec.input.width}, {len(spec.label_set)} classes "
        f"({things} things){f' from {report.label_source}' if report.label_source else ''}; "
        f"ONNX Runtime vs PyTorch max |difference|: {errors}"
    )
    print(check_onnx(report.path).table())
    return 0


def _load_module(target: str, weights: Path | None) -> Any:
    import importlib
    import os

    import torch

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--module {target!r} must be 'package.module:factory'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"--module {target!r}: {err}") from err
    network = factory()
    if not isinstance(network, torch.nn.Module):
        raise ConfigError(f"--module {target!r} returned {type(network).__name__}, not a torch.nn.Module")
    if weights is not None:
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return network


COMMANDS: tuple[Command, ...] = (
    Command("labels", "list the shipped label sets, or print one", _labels_arguments, _labels_run),
    Command("bag-info", "list the image topics of a rosbag2 file", _bag_info_arguments, _bag_info_run),
    Command(
        "bag",
        "bag tools: info, synth, process, eval, play, record (see panoptic-ros bag -h)",
        _bag_arguments,
        _bag_run,
    ),
    Command(
        "decode",
        "decode every camera frame of a bag to PNG, counting malformed ones",
        _decode_arguments,
        _decode_run,
    ),
    Command(
        "demo",
        "record a multi-camera bag and replay it through decoding, the shipped model and tracking",
        _demo_arguments,
        _demo_run,
    ),
    Command(
        "infer",
        "panoptic segmentation of images, a video or a bag with a model (COCO panoptic output)",
        _infer_arguments,
        _infer_run,
    ),
    Command(
        "build-engine",
        "build a TensorRT engine from an ONNX model (on the target machine)",
        _build_engine_arguments,
        _build_engine_run,
    ),
    Command(
        "check-onnx",
        "list an ONNX model's operators and flag what TensorRT 10 rejects or handles poorly",
        _check_onnx_arguments,
        _check_onnx_run,
    ),
    Command(
        "synth",
        "render synthetic driving scenes or sequences with panoptic ground truth",
        _synth_arguments,
        _synth_run,
    ),
    Command(
        "eval",
        "PQ/SQ/RQ (all, things, stuff) and mIoU of predictions against ground truth",
        _eval_arguments,
        _eval_run,
    ),
    Command(
        "train",
        "train the compact center-offset network on the synthetic world and export it to ONNX",
        _train_arguments,
        _train_run,
    ),
    Command(
        "export",
        "export a transformers checkpoint (Mask2Former, MaskFormer, OneFormer) or a PyTorch network to "
        "ONNX with its model spec",
        _export_arguments,
        _export_run,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panoptic-ros",
        description="Panoptic perception for ROS 2 robots, without ROS: tools and pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.run(args))
    except PanopticRosError as err:
        print(f"panoptic-ros {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"panoptic-ros {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
