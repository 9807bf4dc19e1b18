"""The ``panoptic-ros`` command line (no ROS needed): one tree of commands.

Each command is a :class:`~panoptic_ros.cli.common.Command` (name, help, argument adder, runner),
declared next to its kind: data (``data_commands``: labels, synth, eval, decode, bag info), running the
engine or the node (``run_commands``: infer, demo, bag process / play / record), models
(``model_commands``: train, export, build-engine, check-onnx). ``bag`` is a group of the same tree.
Old spellings stay as aliases (:data:`ALIASES`). :func:`main` turns
:class:`~panoptic_ros.errors.PanopticRosError` into a one-line message and exit status 2, so users see
what to fix instead of a traceback. Nothing in the package imports the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from panoptic_ros import __version__
from panoptic_ros.cli import data_commands, model_commands, run_commands
from panoptic_ros.cli.common import Command
from panoptic_ros.errors import PanopticRosError
from panoptic_ros.runtime.memory import keep_freed_memory

log = logging.getLogger("panoptic_ros")

COMMANDS: tuple[Command, ...] = (
    *data_commands.COMMANDS,
    *run_commands.COMMANDS,
    Command(
        "bag",
        "bag tools: info, process, play, record (synth and eval: see synth BAG / eval BAG)",
        None,
        None,
        subcommands=(*data_commands.BAG_COMMANDS, *run_commands.BAG_COMMANDS),
    ),
    *model_commands.COMMANDS,
)

#: Old spellings -> the command they stand for (the first words of the command line are replaced).
ALIASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("bag-info",): ("bag", "info"),
    ("bag", "synth"): ("synth",),
    ("bag", "eval"): ("eval",),
}


def expand_aliases(argv: Sequence[str]) -> list[str]:
    """``argv`` with an old spelling at its start replaced by the command it stands for (options
    before the command, like ``-v``, stay where they are)."""
    args = list(argv)
    start = 0
    while start < len(args) and args[start].startswith("-"):
        start += 1
    for old, new in ALIASES.items():
        if tuple(args[start : start + len(old)]) == old:
            return args[:start] + list(new) + args[start + len(old) :]
    return args


def _add(sub: argparse._SubParsersAction, command: Command, path: str = "") -> None:
    name = f"{path} {command.name}".strip()
    parser = sub.add_parser(command.name, help=command.help, description=command.help)
    if command.subcommands:
        group = parser.add_subparsers(dest=name.replace(" ", "_"), metavar="SUBCOMMAND", required=True)
        for child in command.subcommands:
            _add(group, child, name)
        return
    if command.add_arguments is not None:
        command.add_arguments(parser)
    parser.set_defaults(run=command.run, command_name=name)


def build_parser() -> argparse.ArgumentParser:
    aliases = ", ".join(f"'{' '.join(old)}' = '{' '.join(new)}'" for old, new in ALIASES.items())
    parser = argparse.ArgumentParser(
        prog="panoptic-ros",
        description="Panoptic perception for ROS 2 robots, without ROS: tools and pipeline.",
        epilog=f"old spellings still accepted: {aliases}",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        _add(sub, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(expand_aliases(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    keep_freed_memory()  # frames' images and messages reuse memory instead of faulting it in
    try:
        return int(args.run(args))
    except PanopticRosError as err:
        print(f"panoptic-ros {args.command_name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"panoptic-ros {args.command_name}: interrupted", file=sys.stderr)
        return 130
