"""Helpers shared by the benchmark scripts: device synchronization, timing, machine description."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(device: torch.device, fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up, in ms, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo, else what platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"


def machine() -> str:
    """One line naming the CPU, threads, GPU and software versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()}, {torch.get_num_threads()} threads, {gpu}; torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


#: Printed (and the benchmark exits 2) when ``--device cuda`` finds no CUDA device.
NO_CUDA = "no CUDA device available: nothing measured"


def benchmark_devices(choice: str) -> list[torch.device]:
    """The devices a ``--device all|cpu|cuda`` choice selects (CUDA only where available). An
    explicit ``cuda`` without a CUDA device selects none and prints :data:`NO_CUDA`, so a benchmark
    never ends silently with no figure (its caller then exits 2)."""
    devices = []
    if choice in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if choice in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        print(NO_CUDA)
    return devices
