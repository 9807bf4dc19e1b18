"""Run the benchmarks (``make bench``): every ``benchmarks/bench_*.py`` module's ``main``.

Each benchmark prints a markdown table of ratios against a reference measured in the same run
(absolute times only where a GPU is present); paste the tables into docs/BENCHMARKS.md with the
date, machine and command. ``python -m benchmarks.run fusion`` runs only the modules whose names
contain ``fusion``; arguments after ``--`` go to each module.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks.common import machine


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra = args[args.index("--") + 1 :] if "--" in args else []
    selectors = args[: args.index("--")] if "--" in args else args
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    names = [n for n in names if not selectors or any(s in n for s in selectors)]
    print(f"# benchmarks on {machine()}\n")
    status = 0
    for name in names:
        print(f"## {name}\n")
        status |= int(importlib.import_module(f"benchmarks.{name}").main(extra) or 0)
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
