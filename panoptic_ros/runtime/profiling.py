"""Labels for the PyTorch profiler that cost nothing while no profiler runs.

The frame path names its stages (``panoptic::fusion``, ``panoptic::tracking``, ...) so that
``torch.profiler`` attributes every op to one (``benchmarks/bench_launches.py`` counts them per stage).
Entering :func:`torch.profiler.record_function` costs about 5 us even with no profiler running, and
more inside a frame, where the interpreter's code and data are cold after the large per-pixel loops:
four labels a frame were a few percent of the CPU's after-network time. :func:`stage_label` enters one
only while a profiler is recording.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch
import torch.autograd.profiler as autograd_profiler

_NOTHING = contextlib.nullcontext()


def profiler_running() -> bool:
    """Whether a PyTorch profiler (``torch.profiler.profile`` or the autograd one) is recording now."""
    # the flag both profilers set while they record (read at each call: it changes)
    return bool(getattr(autograd_profiler, "_is_profiler_enabled", True))


def stage_label(name: str) -> AbstractContextManager[object]:
    """``record_function(name)`` while a profiler records, else a context that does nothing."""
    return torch.profiler.record_function(name) if profiler_running() else _NOTHING
