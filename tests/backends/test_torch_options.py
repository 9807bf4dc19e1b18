"""PyTorch backend options: torch.compile and CUDA graphs give the eager module's outputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.registry import create_backend
from panoptic_ros.models.export import export_onnx
from panoptic_ros.models.train import TrainConfig, network, synthetic_model_spec


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    spec = synthetic_model_spec(replace(TrainConfig(), width=8))
    spec = replace(spec, input=replace(spec.input, height=32, width=64, max_batch=2))
    return export_onnx(network(TrainConfig(width=8)).eval(), spec, tmp_path_factory.mktemp("m") / "m.onnx")


def _outputs(path: Path, device: str, **options: object) -> dict[str, torch.Tensor]:
    x = torch.linspace(-2, 2, 2 * 3 * 32 * 64).reshape(2, 3, 32, 64).to(device)
    with create_backend("torch", path, device=device, options=options) as backend:
        first = backend.infer({"image": x})
        second = {k: v.clone() for k, v in backend.infer({"image": x}).items()}  # a second call reuses state
    return {k: v.cpu() for k, v in second.items()} | {f"first_{k}": v.cpu() for k, v in first.items()}


@pytest.mark.slow
def test_compiled_module_matches_eager(model_path: Path) -> None:
    eager = _outputs(model_path, "cpu")
    compiled = _outputs(model_path, "cpu", compile=True)
    for name, value in eager.items():
        assert torch.allclose(value, compiled[name], atol=1e-4), name


def test_unknown_and_misplaced_options_are_refused(model_path: Path) -> None:
    with pytest.raises(BackendError, match=r"has no option \['fast'\]"):
        create_backend("torch", model_path, device="cpu", options={"fast": True})
    with pytest.raises(BackendError, match="cuda_graphs needs a CUDA device"):
        create_backend("torch", model_path, device="cpu", options={"cuda_graphs": True})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_match_eager_on_gpu(model_path: Path) -> None:
    eager = _outputs(model_path, "cuda")
    graphed = _outputs(model_path, "cuda", cuda_graphs=True)
    for name, value in eager.items():
        assert torch.allclose(value, graphed[name], atol=1e-4), name
