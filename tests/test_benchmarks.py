"""The GPU figures are one command away: asked for CUDA where there is none, every benchmark that
measures on a device says so and exits 2, never ending silently without a figure; so does the
one-call device check (``scripts/device_check.sh``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import run
from benchmarks.common import NO_CUDA

REPO = Path(__file__).resolve().parents[1]

#: The benchmarks that take ``--device`` (selectors of ``python -m benchmarks.run``).
DEVICE_BENCHMARKS = ("bench_engine", "bench_fusion", "bench_grouping", "bench_mask_fusion", "bench_node",
                     "bench_tracking")  # fmt: skip


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA device is present: --device cuda measures on it"
)
def test_cuda_without_a_cuda_device_is_said_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    status = run.main([*DEVICE_BENCHMARKS, "--", "--device", "cuda"])
    out = capsys.readouterr().out
    assert status == 2
    for name in DEVICE_BENCHMARKS:
        section = out.split(f"## {name}\n", 1)[1].split("## ", 1)[0]
        assert NO_CUDA in section, f"{name} printed no word about the missing CUDA device:\n{section}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would run")
def test_the_device_check_without_a_cuda_device_checks_nothing_and_fails(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "device_check.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA device here: nothing checked" in done.stderr
    environment = (tmp_path / "environment.txt").read_text()
    assert "cuda False" in environment
    assert not (tmp_path / "gpu_tests.log").exists()
