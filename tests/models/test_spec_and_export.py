from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from panoptic_ros.backends.registry import create_backend
from panoptic_ros.models.center_offset_net import CompactPanopticNet, fuse_batchnorm
from panoptic_ros.models.export import export_onnx
from panoptic_ros.models.spec import METADATA_KEY, ModelSpec, ModelSpecError, load_spec
from panoptic_ros.models.train import TrainConfig, network, synthetic_model_spec


@pytest.fixture(scope="module", params=[4, 2], ids=["semantic-stride-4", "semantic-stride-2"])
def small_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, CompactPanopticNet, ModelSpec]:
    torch.manual_seed(0)
    cfg = replace(TrainConfig(), width=8, semantic_stride=request.param)
    model = network(cfg).eval()
    for module in model.modules():  # make BatchNorm do something
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    spec = synthetic_model_spec(cfg)
    spec = replace(spec, input=replace(spec.input, height=64, width=128, max_batch=3))
    path = export_onnx(model, spec, tmp_path_factory.mktemp("m") / "small.onnx")
    return path, model, spec


def test_spec_round_trips_through_onnx_metadata(small_model: tuple) -> None:
    path, _, spec = small_model
    assert load_spec(path) == spec
    proto = onnx.load(str(path))
    assert any(p.key == METADATA_KEY for p in proto.metadata_props)
    assert proto.opset_import[0].version >= 17
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param, "batch dimension is dynamic"


def test_sidecar_wins_and_errors_are_actionable(small_model: tuple, tmp_path: Path) -> None:
    path, _, spec = small_model
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    with pytest.raises(ModelSpecError, match=r"no panoptic_ros model spec.*docs/models\.md"):
        load_spec(bare)
    (tmp_path / "bare.json").write_text(spec.to_json())
    assert load_spec(bare) == spec
    (tmp_path / "bare.json").write_text(json.dumps({**spec.to_dict(), "family": "yolo"}))
    with pytest.raises(ModelSpecError, match="family='yolo'"):
        load_spec(bare)
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_spec(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelSpecError, match="not a readable ONNX file"):
        load_spec(tmp_path / "junk.onnx")


@pytest.mark.parametrize("semantic_stride", [4, 2])
def test_fuse_batchnorm_keeps_the_function(semantic_stride: int) -> None:
    torch.manual_seed(1)
    model = CompactPanopticNet(5, width=8, semantic_stride=semantic_stride).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        after = fuse_batchnorm(model)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for b, a in zip(before, after, strict=True):
        assert torch.allclose(b, a, atol=1e-5)


def test_semantic_stride_is_checked_and_shapes_are_the_input_size() -> None:
    with pytest.raises(ValueError, match="semantic_stride must be 2 or 4"):
        CompactPanopticNet(5, width=8, semantic_stride=8)
    with torch.no_grad():
        model = CompactPanopticNet(5, width=8, semantic_stride=2).eval()
        semantic, center, offset = model(torch.zeros(1, 3, 32, 64))
    assert (semantic.shape, center.shape, offset.shape) == ((1, 5, 32, 64), (1, 1, 32, 64), (1, 2, 32, 64))


def test_onnxruntime_and_torch_backends_agree_on_exported_model(small_model: tuple) -> None:
    path, model, spec = small_model
    x = torch.randn(3, 3, spec.input.height, spec.input.width)
    with torch.no_grad():
        expected = model(x)
    with (
        create_backend("onnxruntime", path, device="cpu") as ort_backend,
        create_backend("torch", path, device="cpu") as torch_backend,
    ):
        for backend in (ort_backend, torch_backend):
            got = backend.infer({"image": x})
            assert list(got) == ["semantic", "center", "offset"]
            for name, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(got[name].numpy(), e.numpy(), atol=1e-4)
        assert ort_backend.inputs[0].shape == (None, 3, 64, 128)
    with pytest.raises(Exception, match="inputs"):
        create_backend("torch", path, device="cpu").infer({"wrong": x})
    with pytest.raises(Exception, match="unknown backend 'tflite'"):
        create_backend("tflite", path, device="cpu")


def test_onnxruntime_provider_selection() -> None:
    from panoptic_ros.backends.base import BackendError
    from panoptic_ros.backends.onnxruntime_backend import select_providers

    cpu = torch.device("cpu")
    assert select_providers(
        cpu, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    ) == ["CPUExecutionProvider"]
    cuda = torch.device("cuda", 1)
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = select_providers(cuda, everything, cache_dir=Path("/engines"))
    assert [p[0] if isinstance(p, tuple) else p for p in chosen] == everything
    trt_options = chosen[0][1]
    assert trt_options["device_id"] == 1 and trt_options["trt_engine_cache_path"] == "/engines"
    assert trt_options["trt_fp16_enable"] is True
    without_trt = select_providers(cuda, everything, tensorrt_provider=False)
    assert [p[0] if isinstance(p, tuple) else p for p in without_trt] == everything[1:]
    with pytest.raises(BackendError, match="no CUDA provider"):
        select_providers(cuda, ["CPUExecutionProvider"])
