"""``panoptic-ros`` commands that make and check models: train, export, build-engine, quantize, check-onnx."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from panoptic_ros.cli.common import Command
from panoptic_ros.errors import ConfigError
from panoptic_ros.resources import default_model


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
    from panoptic_ros.apps.build_engine import build_engine_command

    if args.calib is not None and args.precision != "int8":
        raise ConfigError("--calib is only used with --int8")
    result = build_engine_command(
        args.onnx or default_model(), args.out, args.precision, args.calib, args.max_batch
    )
    print(f"engine {result.engine_path} ({result.precision_used}, {result.seconds:.0f} s)")
    return 0


def _quantize_arguments(parser: argparse.ArgumentParser) -> None:
    from panoptic_ros.backends.int8_onnx import DEFAULT_CALIBRATION_FRAMES

    parser.add_argument("model", type=Path, nargs="?", help="float ONNX model (default: the shipped model)")
    parser.add_argument(
        "--calib",
        required=True,
        help="calibration frames: a folder of images, a rosbag2 folder, or 'synthetic' (the synthetic "
        "world the shipped model was trained on)",
    )
    parser.add_argument(
        "--out", type=Path, help="companion file (default: M.int8.onnx next to M.onnx, where it is used)"
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=DEFAULT_CALIBRATION_FRAMES,
        help=f"calibration frames to use (default {DEFAULT_CALIBRATION_FRAMES})",
    )
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame of the source (bags)")


def _quantize_run(args: argparse.Namespace) -> int:
    from panoptic_ros.apps.quantize import quantize_command

    if args.max_images < 1 or args.stride < 1:
        raise ConfigError(f"--max-images {args.max_images} and --stride {args.stride} must be >= 1")
    quantize_command(
        args.model or default_model(), args.calib, args.out, max_images=args.max_images, stride=args.stride
    )
    return 0


def _check_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, nargs="?", help="ONNX file (default: the shipped model)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _check_onnx_run(args: argparse.Namespace) -> int:
    from panoptic_ros.models.onnx_check import check_onnx

    report = check_onnx(args.model or default_model())
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1


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
        "--semantic-stride",
        type=int,
        choices=(2, 4),
        default=defaults.semantic_stride,
        help=f"semantic head output stride (default {defaults.semantic_stride}; 4: the first model)",
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
        semantic_stride=args.semantic_stride,
        seed=args.seed,
        threads=args.threads,
    )
    model = train(cfg, args.work_dir, resume=not args.no_resume)
    path = export_onnx(model, synthetic_model_spec(cfg), args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) with its model spec")
    return 0


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
    from panoptic_ros.models.hf_export import export_transformers
    from panoptic_ros.models.module_export import export_module
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
    Command(
        "build-engine",
        "build a TensorRT engine from an ONNX model (on the target machine)",
        _build_engine_arguments,
        _build_engine_run,
    ),
    Command(
        "quantize",
        "make a model's INT8 companion (M.int8.onnx), which ONNX Runtime runs on the CPU in about half the "
        "time",
        _quantize_arguments,
        _quantize_run,
    ),
    Command(
        "check-onnx",
        "list an ONNX model's operators and flag what TensorRT 10 rejects or handles poorly",
        _check_onnx_arguments,
        _check_onnx_run,
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
