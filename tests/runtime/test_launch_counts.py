"""Launch-bound work after the network does not grow with the number of things: the same number of
top-level PyTorch ops and host reads per frame for a scene with few things and a mosaic with many
(``benchmarks/bench_launches.py`` prints the counts; on a GPU each op is a kernel launch and each host
read a synchronisation)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_launches import measure, scenes
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine


@pytest.mark.parametrize("fixed_shapes", [False, True], ids=["data-dependent", "fixed-shapes"])
def test_ops_and_host_reads_per_frame_do_not_grow_with_things(fixed_shapes: bool) -> None:
    engine = FrameEngine.open(default_model(), backend="onnxruntime", device="cpu", fixed_shapes=fixed_shapes)
    few_things, few_ops, few_reads = measure(engine, scenes(1))
    many_things, many_ops, many_reads = measure(engine, scenes(3))
    engine.close()
    assert many_things >= few_things + 15, (few_things, many_things)
    assert few_ops == many_ops, (few_ops, many_ops)
    assert few_reads == many_reads, (few_reads, many_reads)
    stages = ("panoptic::fusion", "panoptic::postprocess", "panoptic::tracking")
    assert all(few_ops[s] > 0 for s in stages), "every device stage's ops are counted under its label"
    assert few_ops["panoptic::outputs"] == 0, "the outputs are made on the host from the frame's download"
    reads = sum(few_reads.values())
    if fixed_shapes:
        # what CUDA runs: the frame's download (table + maps) and the tracker's statistics, nothing else
        assert reads == few_reads.get("cpu") == 2, few_reads
        # 247 ops on 2026-12-04 before the merge, centers, grouping and the tracker's statistics were
        # cut to 191
        assert sum(few_ops.values()) <= 205, few_ops
    else:
        # the CPU's default: the fusion and the tracker's statistics are compiled loops over host
        # arrays, and the frame's parts are viewed, not downloaded: no tensor is read back. Most of
        # its ops launch no kernel: a tensor viewed as a numpy array counts 4 (detach, resolve_conj,
        # ...), and the segment table's 6 columns are viewed so (151 ops in all, 2026-12-03)
        assert reads == 0, few_reads
        assert sum(few_ops.values()) <= 160, few_ops


def test_the_counter_sees_host_reads_and_restores_torch() -> None:
    from benchmarks.counting import count_host_reads

    original = torch.Tensor.cpu
    with count_host_reads() as counts:
        x = torch.arange(6)
        x.nonzero()
        x[x > 2].sum().item()
        x.cpu()
    assert counts == {"nonzero": 1, "mask_index": 1, "item": 1, "cpu": 1}
    assert torch.Tensor.cpu is original
