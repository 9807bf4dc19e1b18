"""Run the benchmarks (``make bench``): every ``benchmarks/bench_*.py`` module's ``main``.

Each benchmark prints a markdown table of ratios against a reference measured in the same run
(absolute times only where a GPU is present); paste the tables into docs/BENCHMARKS.md with the
date, machine and command. ``python -m benchmarks.run fusion`` runs only the modules whose names
contain ``fusion``; arguments after ``--`` go to each module.
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    return f"{cpu}, {threads} threads, {gpu}; torch {torch.__version__}, Python {platform.python_version()}"


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
