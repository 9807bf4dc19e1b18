"""What the ``panoptic-ros`` commands share: the command record and the arguments several commands take."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from panoptic_ros.errors import ConfigError


class Command(NamedTuple):
    """One command of the tree: its name, help line, argument adder and runner. A group (``bag``) has
    ``subcommands`` instead of a runner of its own."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None
    run: Callable[[argparse.Namespace], int] | None
    subcommands: tuple[Command, ...] = ()


def model_arguments(parser: argparse.ArgumentParser, *, backend_options: bool = False) -> None:
    """``--model``, ``--backend``, ``--device`` (and ``--backend-option`` when asked for)."""
    parser.add_argument("--model", type=Path, help="ONNX model with a spec (default: the shipped model)")
    parser.add_argument("--backend", default="auto", help="auto (default), onnxruntime or torch")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    if backend_options:
        parser.add_argument(
            "--backend-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a backend option, e.g. compile=true or cuda_graphs=true (torch), precision=fp16 (tensorrt)",
        )
        parser.add_argument(
            "--cuda-graph",
            action="store_true",
            help="run the network, the fusion and the label maps of each batch as one CUDA graph "
            "(CUDA, torch backend, center-offset models)",
        )


def storage_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help=help_text)


def json_argument(parser: argparse.ArgumentParser, what: str = "the results") -> None:
    parser.add_argument("--json", type=Path, help=f"also write {what} as JSON here")


def write_json(path: Path | None, text: str) -> None:
    """Write ``text`` (JSON) to ``path`` when given, creating its folder."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def size(text: str) -> tuple[int, int]:
    """``HxW`` -> ``(height, width)`` (an argparse type)."""
    height, sep, width = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError(text)
        return int(height), int(width)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 192x384") from err


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
