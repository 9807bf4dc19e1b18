"""Training of the compact network (``panoptic-ros train``, ``make model``) in miniature: a few steps of
a narrow network on a few rendered scenes, checkpoints and resuming, bfloat16 autocast, the export."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from panoptic_ros.cli import main
from panoptic_ros.models.spec import load_spec
from panoptic_ros.models.train import TrainConfig, bf16_supported, train

TINY = replace(TrainConfig(), steps=3, batch=2, images=3, width=8, warmup=1, checkpoint_every=2)


def _history(work: Path) -> list[dict[str, float]]:
    return json.loads((work / "history.json").read_text())


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bfloat16"])
def test_a_few_steps_learn_something_finite(tmp_path: Path, bf16: bool) -> None:
    if bf16 and not bf16_supported():
        pytest.skip("this CPU has no native bfloat16 (AVX-512 BF16 / AMX); the float32 case runs")
    model = train(replace(TINY, bf16=bf16), tmp_path)
    assert not model.training
    history = _history(tmp_path)
    assert [h["step"] for h in history] == [1, 2, 3]
    assert all(math.isfinite(h["loss"]) for h in history)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps float32 weights
    assert (tmp_path / "checkpoint.pt").is_file()


def test_resumes_from_its_checkpoint_and_ignores_another_configs(tmp_path: Path) -> None:
    cfg = replace(TINY, bf16=False)
    first = train(cfg, tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    # the same run again (threads do not change what it computes) finds its work done at step 3
    threads = torch.get_num_threads()
    again = train(replace(cfg, threads=1), tmp_path)
    assert torch.get_num_threads() == threads  # the run's thread count is not left behind
    assert _history(tmp_path) == []
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # another configuration (here the step count, which shapes the learning-rate schedule) starts over
    train(replace(cfg, steps=2), tmp_path)
    assert [h["step"] for h in _history(tmp_path)] == [1, 2]


def test_cli_writes_a_model_whose_spec_builds_its_architecture(tmp_path: Path) -> None:
    out = tmp_path / "tiny.onnx"
    args = ["train", "--steps", "2", "--images", "2", "--batch", "2", "--width", "8"]
    assert main([*args, "--semantic-stride", "4", "--work-dir", str(tmp_path / "w"), "--out", str(out)]) == 0
    spec = load_spec(out)
    assert spec.architecture["kwargs"] == {"num_classes": 8, "width": 8, "semantic_stride": 4}
    assert spec.fusion["center_threshold"] == 0.3
    assert spec.provenance["config"]["steps"] == 2
