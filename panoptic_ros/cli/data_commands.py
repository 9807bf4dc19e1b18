"""``panoptic-ros`` commands over data: labels, synth, eval, decode, bag info.

``synth`` and ``eval`` each do their job in both formats: COCO panoptic folders (``--out`` /
``--gt --pred``) or a rosbag2 folder (a positional ``BAG``); ``bag synth`` and ``bag eval`` are the
old spellings of the bag forms (see :data:`panoptic_ros.cli.ALIASES`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from panoptic_ros.cli.common import Command, json_argument, size, storage_argument, write_json
from panoptic_ros.errors import ConfigError

# ---- labels


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


# ---- synth


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    from panoptic_ros.data.bag_synth import SynthBagConfig

    d = SynthBagConfig()
    parser.add_argument(
        "bag",
        nargs="?",
        type=Path,
        help="write a new rosbag2 folder here: cameras with depth, camera_info and ground truth "
        "(without it: COCO panoptic folders under --out)",
    )
    coco = parser.add_argument_group("COCO panoptic folders (--out)")
    coco.add_argument("--out", type=Path, help="output folder (COCO panoptic format)")
    coco.add_argument("--count", type=int, help="number of images, or of sequences")
    coco.add_argument("--width", type=int, help="image width (default: the shipped model's input width)")
    coco.add_argument("--height", type=int, help="image height (default: the shipped model's input height)")
    coco.add_argument(
        "--sequence-length",
        type=int,
        help="write COUNT sequences of this many frames, one folder each (things keep their ids)",
    )
    coco.add_argument(
        "--returns",
        type=float,
        default=0.0,
        help="sequences: chance that a thing leaving the frame comes back, 3 to 30 frames later (default 0)",
    )
    coco.add_argument(
        "--occluders",
        type=int,
        default=0,
        help="sequences: trunks in front of the camera that hide what passes behind them (default 0)",
    )
    coco.add_argument(
        "--overwrite", action="store_true", help="write into a folder that already has a dataset"
    )
    bag = parser.add_argument_group("a bag (BAG)")
    bag.add_argument("--cameras", type=int, default=d.cameras, help=f"cameras /cam0.. (default {d.cameras})")
    bag.add_argument(
        "--sequences", type=int, default=d.sequences, help=f"sequences per camera (default {d.sequences})"
    )
    bag.add_argument("--frames", type=int, default=d.frames, help=f"frames per sequence (default {d.frames})")
    bag.add_argument(
        "--size", type=size, default=d.size, help=f"image size HxW (default {d.size[0]}x{d.size[1]})"
    )
    bag.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of rgb8")
    storage_argument(bag, "bag storage (default sqlite3)")
    parser.add_argument(
        "--seed",
        type=int,
        help=f"world seed (required for COCO folders; bags default to {d.seed}); the shipped model was "
        "trained on seed 0, so evaluate on others",
    )


def _synth_run(args: argparse.Namespace) -> int:
    if args.bag is not None:
        if args.out is not None:
            raise ConfigError("give either BAG (a rosbag2 folder) or --out (COCO panoptic folders), not both")
        return _synth_bag(args)
    if args.out is None or args.count is None or args.seed is None:
        raise ConfigError("COCO panoptic folders need --out, --count and --seed (or give BAG to write a bag)")
    from panoptic_ros.data.synthetic import DEFAULT_SIZE, export_coco

    if args.count < 1 or (args.sequence_length is not None and args.sequence_length < 1):
        raise ConfigError("--count and --sequence-length must be at least 1")
    if not 0.0 <= args.returns <= 1.0 or args.occluders < 0:
        raise ConfigError(
            f"--returns {args.returns} must lie in [0, 1] and --occluders {args.occluders} be >= 0"
        )
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
        returns=args.returns,
        occluders=args.occluders,
    )
    print(f"wrote {len(folders)} COCO panoptic folder(s) under {args.out}")
    return 0


def _synth_bag(args: argparse.Namespace) -> int:
    from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag

    seed = {} if args.seed is None else {"seed": args.seed}
    config = SynthBagConfig(
        cameras=args.cameras,
        sequences=args.sequences,
        frames=args.frames,
        size=args.size,
        compressed=args.compressed,
        storage=args.storage,
        **seed,
    )
    report = write_synthetic_bag(args.bag, config)
    print(
        f"wrote {report.messages} messages on {len(report.counts)} topics into {report.path} "
        f"(cameras: {', '.join(report.image_topics)})"
    )
    return 0


# ---- eval


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bag",
        nargs="?",
        type=Path,
        help="a bag with panoptic outputs and ground truth (bag process): PQ, STQ and VPQ by stamp "
        "(without it: COCO panoptic folders --gt / --pred)",
    )
    folders = parser.add_argument_group("COCO panoptic folders")
    folders.add_argument("--gt", type=Path, help="ground-truth COCO panoptic folder")
    folders.add_argument("--pred", type=Path, help="predicted COCO panoptic folder")
    folders.add_argument(
        "--per-class", action="store_true", help="print PQ/SQ/RQ per class (with --video: per sequence)"
    )
    folders.add_argument(
        "--video",
        action="store_true",
        help="video metrics over folders of sequences: STQ, AQ, SQ, VPQ, ID switches, fragmentations",
    )
    video = parser.add_argument_group("video metrics (--video, or BAG)")
    video.add_argument(
        "--stq-variant",
        choices=("reference", "void-ignored"),
        default="reference",
        help="reference (default): STQ as deeplab2's STQuality computes it; void-ignored: predictions on "
        "void ground truth are left out of AQ and predicted void adds no class to SQ",
    )
    video.add_argument(
        "--vpq-frame-step",
        type=int,
        choices=(1, 5),
        default=1,
        help="video frames between consecutive evaluated frames: VPQ window k holds k/step + 1 frames "
        "(default 1: every frame annotated; 5: Cityscapes-VPS folders, as VPSNet's eval_vpq.py)",
    )
    parser.add_argument(
        "--labels", help="with BAG: label set name or .yaml (default: the bag's panoptic/categories message)"
    )
    json_argument(parser)


def _eval_run(args: argparse.Namespace) -> int:
    if args.bag is not None:
        if args.gt is not None or args.pred is not None:
            raise ConfigError("give either BAG or --gt and --pred, not both")
        from panoptic_ros.apps.bag_eval import evaluate_bag
        from panoptic_ros.core.labels import load_label_set

        report = evaluate_bag(
            args.bag,
            load_label_set(args.labels) if args.labels else None,
            variant=args.stq_variant,
            frame_step=args.vpq_frame_step,
        )
        print(report.table())
        write_json(args.json, report.to_json())
        return 0 if report.matched else 1
    if args.gt is None or args.pred is None:
        raise ConfigError("give --gt and --pred (COCO panoptic folders), or BAG")
    from panoptic_ros.metrics import evaluate_folders, evaluate_video_folders

    if args.video:
        result = evaluate_video_folders(
            args.gt, args.pred, progress=True, variant=args.stq_variant, frame_step=args.vpq_frame_step
        )
        print(result.table(per_sequence=args.per_class))
    else:
        result = evaluate_folders(args.gt, args.pred)
        print(result.table(per_class=args.per_class))
    write_json(args.json, result.to_json())
    return 0


# ---- decode / bag info


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="rosbag2 folder with camera topics")
    parser.add_argument("--out", required=True, type=Path, help="folder for the decoded frames (PNG)")
    parser.add_argument("--topic", action="append", help="only this image topic (repeatable)")
    parser.add_argument("--every", type=int, default=1, help="write every N-th frame per topic (default 1)")


def _decode_run(args: argparse.Namespace) -> int:
    from panoptic_ros.apps.demo import decode_bag

    report = decode_bag(args.input, args.out, topics=args.topic, every=args.every)
    print(report.table())
    return 0 if report.decoded else 1


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


COMMANDS: tuple[Command, ...] = (
    Command("labels", "list the shipped label sets, or print one", _labels_arguments, _labels_run),
    Command(
        "synth",
        "render synthetic driving scenes or sequences with panoptic ground truth: COCO panoptic folders, "
        "or a multi-camera bag with depth and camera_info",
        _synth_arguments,
        _synth_run,
    ),
    Command(
        "eval",
        "PQ/SQ/RQ and mIoU (or STQ and VPQ with --video) of COCO panoptic predictions, or PQ, STQ and VPQ "
        "of a bag's outputs against its ground truth",
        _eval_arguments,
        _eval_run,
    ),
    Command(
        "decode",
        "decode every camera frame of a bag to PNG, counting malformed ones",
        _decode_arguments,
        _decode_run,
    ),
)
BAG_COMMANDS: tuple[Command, ...] = (
    Command("info", "list every topic of a bag with its type and message count", _info_arguments, _info_run),
)
