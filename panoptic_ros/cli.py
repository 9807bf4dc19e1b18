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
from typing import NamedTuple

from panoptic_ros import __version__
from panoptic_ros.errors import PanopticRosError

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
        print(
            f"  [{index:3d}] id {c.id:3d}  {kind}  #{bytes(c.color).hex()}  {c.name}"
        )
    return 0


# --------------------------------------------------------------------------------------------------
# bag-info / decode


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


# --------------------------------------------------------------------------------------------------
# demo


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--frames", type=int, default=30, help="frames per camera (default 30)")
    parser.add_argument(
        "--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="bag storage format"
    )


def _demo_run(args: argparse.Namespace) -> int:
    from panoptic_ros.demo import run_demo

    return run_demo(args.out, frames=args.frames, storage=args.storage)


COMMANDS: tuple[Command, ...] = (
    Command("labels", "list the shipped label sets, or print one", _labels_arguments, _labels_run),
    Command("bag-info", "list the image topics of a rosbag2 file", _bag_info_arguments, _bag_info_run),
    Command(
        "decode",
        "decode every camera frame of a bag to PNG, counting malformed ones",
        _decode_arguments,
        _decode_run,
    ),
    Command(
        "demo", "write a multi-camera bag and run it through the decoding path", _demo_arguments, _demo_run
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
