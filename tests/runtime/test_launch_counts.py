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


@pytest.fixture(scope="module")
def engine() -> FrameEngine:
    return FrameEngine.open(default_model(), backend="onnxruntime", device="cpu")


def test_ops_and_host_reads_per_frame_do_not_grow_with_things(engine: FrameEngine) -> None:
    few_things, few_ops, few_reads = measure(engine, scenes(1))
    many_things, many_ops, many_reads = measure(engine, scenes(3))
    assert many_things >= few_things + 15, (few_things, many_things)
    assert few_ops == many_ops, (few_ops, many_ops)
    assert few_reads == many_reads, (few_reads, many_reads)
    assert all(count > 0 for count in few_ops.values()), "every stage's ops are counted under its label"
    assert sum(few_reads.values()) > 0, "the label maps at least are read back"


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
