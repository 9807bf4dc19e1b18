"""The TensorRT backend: clear errors everywhere; engine build, inference and caching where TensorRT runs.

The tests marked ``tensorrt`` need TensorRT and a CUDA GPU (a Jetson, or a desktop with NVIDIA's
packages); elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from panoptic_ros.apps.build_engine import build_engine_command
from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.engine_cache import (
    engine_sidecar_path,
    load_engine_spec,
    read_sidecar,
    write_engine,
)
from panoptic_ros.backends.engine_key import EngineKey, sha256_file
from panoptic_ros.backends.tensorrt_backend import TensorRTBackend
from panoptic_ros.backends.trt_builder import build_engine
from panoptic_ros.backends.trt_common import import_tensorrt, tensorrt_available
from panoptic_ros.models.export import export_onnx
from panoptic_ros.models.spec import ModelSpec
from panoptic_ros.models.train import TrainConfig, network, synthetic_model_spec

TRT_MISSING = tensorrt_available()
requires_tensorrt = pytest.mark.skipif(
    TRT_MISSING is not None, reason=f"needs TensorRT and a CUDA GPU: {TRT_MISSING}"
)


# -- without TensorRT -------------------------------------------------------------------------------


def test_cpu_device_is_refused_with_a_way_out(tmp_path: Path) -> None:
    spec = synthetic_model_spec(TrainConfig(width=8))
    with pytest.raises(BackendError, match=r"runs on a CUDA GPU, not on cpu.*--backend onnxruntime"):
        TensorRTBackend(tmp_path / "m.onnx", spec, torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this PyTorch sees a CUDA GPU")
def test_cuda_device_without_a_gpu_is_refused(tmp_path: Path) -> None:
    spec = synthetic_model_spec(TrainConfig(width=8))
    with pytest.raises(BackendError, match=r"sees none.*use --backend onnxruntime or torch"):
        TensorRTBackend(tmp_path / "m.onnx", spec, torch.device("cuda"))


@pytest.mark.skipif(TRT_MISSING != "TensorRT is not installed", reason="TensorRT is installed here")
def test_missing_tensorrt_says_what_to_use_instead(tmp_path: Path) -> None:
    message = r"TensorRT is not installed.*use --backend onnxruntime or torch; TensorRT comes with JetPack"
    with pytest.raises(BackendError, match=message):
        import_tensorrt()
    spec = synthetic_model_spec(TrainConfig(width=8))
    with pytest.raises(BackendError, match=message):
        build_engine(tmp_path / "m.onnx", None, spec)
    assert tensorrt_available() == "TensorRT is not installed"


# -- with TensorRT ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelSpec]:
    torch.manual_seed(0)
    model = network(TrainConfig(width=8)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    spec = synthetic_model_spec(TrainConfig(width=8))
    spec = replace(spec, input=replace(spec.input, height=64, width=128, max_batch=3))
    path = export_onnx(model, spec, tmp_path_factory.mktemp("exported") / "small.onnx")
    return path, spec


@pytest.fixture
def model(exported: tuple[Path, ModelSpec], tmp_path: Path) -> tuple[Path, ModelSpec]:
    """A private copy of the ONNX file, so each test starts with an empty engine cache."""
    source, spec = exported
    folder = tmp_path / "engines"
    folder.mkdir()
    path = folder / source.name
    shutil.copy(source, path)
    return path, spec


def onnxruntime_outputs(path: Path, spec: ModelSpec, x: torch.Tensor) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(spec.outputs.values())
    return dict(zip(names, session.run(names, {spec.input.name: x.cpu().numpy()}), strict=True))


def engines_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.engine"))


@pytest.mark.parametrize(("precision", "tolerance"), [("fp16", 3e-2), ("fp32", 1e-3)])
@pytest.mark.tensorrt
@requires_tensorrt
def test_engine_infers_like_onnxruntime(
    model: tuple[Path, ModelSpec], precision: str, tolerance: float
) -> None:
    path, spec = model
    messages: list[str] = []
    device = torch.device("cuda")
    with TensorRTBackend(path, spec, device, precision=precision, progress=messages.append) as backend:  # type: ignore[arg-type]
        assert (
            backend.rebuilt
            and any("building" in m for m in messages)
            and any("parsing" in m for m in messages)
        )
        [engine] = engines_in(path.parent)
        assert (
            backend.engine_path == engine
            and engine.name.startswith("small.")
            and engine_sidecar_path(engine).is_file()
        )
        assert load_engine_spec(engine) == spec
        assert [i.name for i in backend.inputs] == ["image"] and backend.inputs[0].shape == (None, 3, 64, 128)
        assert [o.name for o in backend.outputs] == list(spec.outputs.values())
        torch.manual_seed(1)
        for batch in (2, 1, 3, 2):  # shape changes and back
            x = torch.randn(batch, 3, 64, 128, device=device)
            got = backend.infer({"image": x})
            expected = onnxruntime_outputs(path, spec, x)
            for name, value in expected.items():
                tensor = got[name]
                assert tensor.device.type == "cuda" and tensor.shape == value.shape
                scale = max(1.0, float(np.abs(value).max()))
                worst = float(np.abs(tensor.float().cpu().numpy() - value).max())
                assert worst <= tolerance * scale, f"{precision} {name} batch {batch}: {worst}"
        with pytest.raises(BackendError, match=r"rejected shape .*'image'"):
            backend.infer({"image": torch.zeros(4, 3, 64, 128, device=device)})
        with pytest.raises(BackendError, match="is on cpu"):
            backend.infer({"image": torch.zeros(1, 3, 64, 128)})
        with pytest.raises(BackendError, match=r"torch\.int64"):
            backend.infer({"image": torch.zeros(1, 3, 64, 128, dtype=torch.int64, device=device)})
        half = backend.infer({"image": torch.zeros(1, 3, 64, 128, dtype=torch.float16, device=device)})
        assert half["semantic"].dtype == backend.outputs[0].dtype  # converted to the engine's input type
        backend.warmup()
    with pytest.raises(BackendError, match="closed"):
        backend.infer({"image": torch.zeros(1, 3, 64, 128, device=device)})


@pytest.mark.tensorrt
@requires_tensorrt
def test_cached_engine_is_reused_and_rebuilt_when_the_key_changes(model: tuple[Path, ModelSpec]) -> None:
    path, spec = model
    device = torch.device("cuda")
    with TensorRTBackend(path, spec, device, precision="fp16") as first:
        assert first.rebuilt
        engine = first.engine_path
    built_at = engine.stat().st_mtime_ns
    messages: list[str] = []
    with TensorRTBackend(path, spec, device, precision="fp16", progress=messages.append) as second:
        assert not second.rebuilt and second.engine_path == engine and messages == []
        assert second.record is not None and second.record.key.batch_profile == (1, 3, 3)
    assert engine.stat().st_mtime_ns == built_at
    # another batch profile is another key: a second engine next to the first
    with TensorRTBackend(path, spec, device, precision="fp16", max_batch=2) as smaller:
        assert smaller.rebuilt and smaller.engine_path != engine
        assert read_sidecar(smaller.engine_path).key.batch_profile == (1, 2, 2)
    assert len(engines_in(path.parent)) == 2
    # the ONNX file changes (re-exported): its hash changes, so the engine is rebuilt under a new name
    proto = onnx.load(str(path))
    proto.producer_version = proto.producer_version + "-reexported"
    onnx.save(proto, str(path))
    with TensorRTBackend(path, spec, device, precision="fp16") as changed:
        assert changed.rebuilt and changed.engine_path not in (engine, smaller.engine_path)
        assert read_sidecar(changed.engine_path).key.onnx_sha256 == sha256_file(path)


@pytest.mark.tensorrt
@requires_tensorrt
def test_engine_given_directly_rebuilds_or_errors_on_a_key_mismatch(
    model: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    path, spec = model
    device = torch.device("cuda")
    with TensorRTBackend(path, spec, device) as backend:
        engine = backend.engine_path
    # pretend the engine came from another TensorRT version
    sidecar = engine_sidecar_path(engine)
    data = json.loads(sidecar.read_text())
    data["key"]["tensorrt_version"] = "9.9.9"
    sidecar.write_text(json.dumps(data))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(engine, shipped / engine.name)
    shutil.copy(sidecar, shipped / sidecar.name)
    with pytest.raises(BackendError, match=r"TensorRT version 9\.9\.9 != .*supply the ONNX file"):
        TensorRTBackend(shipped / engine.name, spec, device)
    # next to its ONNX file, the same engine is rebuilt
    with TensorRTBackend(engine, spec, device) as rebuilt:
        assert rebuilt.rebuilt
        assert read_sidecar(rebuilt.engine_path).key.tensorrt_version == str(import_tensorrt().__version__)


@pytest.mark.tensorrt
@requires_tensorrt
def test_deserialization_failure_is_recovered_by_a_rebuild(
    model: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    path, spec = model
    device = torch.device("cuda")
    with TensorRTBackend(path, spec, device) as backend:
        engine, key = backend.engine_path, backend.record.key if backend.record else None
    assert isinstance(key, EngineKey)
    # a corrupt engine whose sidecar matches it (so only TensorRT can tell)
    write_engine(engine, b"\x00not an engine" * 64, key, spec, onnx_name=path.name)
    with TensorRTBackend(path, spec, device) as recovered:
        assert recovered.rebuilt and recovered.engine_path == engine
        out = recovered.infer({"image": torch.zeros(1, 3, 64, 128, device=device)})
        assert out["semantic"].shape == (1, 8, 64, 128)
    write_engine(engine, b"\x00not an engine" * 64, key, spec, onnx_name=path.name)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(engine, lonely / engine.name)
    shutil.copy(engine_sidecar_path(engine), lonely / engine_sidecar_path(engine).name)
    with pytest.raises(BackendError, match=r"could not deserialize.*supply the ONNX file"):
        TensorRTBackend(lonely / engine.name, spec, device)


@pytest.mark.tensorrt
@requires_tensorrt
def test_build_engine_command_prints_phases_and_writes_where_asked(
    model: tuple[Path, ModelSpec], tmp_path: Path
) -> None:
    path, _ = model
    lines: list[str] = []
    out = tmp_path / "out" / "small.fp16.engine"
    result = build_engine_command(path, out, "fp16", None, 2, echo=lines.append)
    assert result.engine_path == out and out.is_file() and engine_sidecar_path(out).is_file()
    text = "\n".join(lines)
    for phase in ("checking", "parsing", "building", "serializing", "done"):
        assert phase in text
    assert read_sidecar(out).key.batch_profile == (1, 2, 2)
    assert any((tmp_path / "out").glob("*.timing.cache"))
    with TensorRTBackend(out, load_engine_spec(out), torch.device("cuda")) as backend:
        assert not backend.rebuilt and backend.max_batch == 2
    with pytest.raises(BackendError, match="spec sidecar belongs"):
        build_engine_command(path, path.with_suffix(".engine"), "fp16", None, 2, echo=lines.append)


@pytest.mark.tensorrt
@requires_tensorrt
def test_int8_engine_from_calibration_images(model: tuple[Path, ModelSpec], tmp_path: Path) -> None:
    path, spec = model
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for k in range(10):
        cv2.imwrite(str(calib / f"{k:03d}.png"), rng.integers(0, 256, (48, 96, 3), dtype=np.uint8))
    lines: list[str] = []
    result = build_engine_command(path, None, "int8", calib, None, calib_batch=4, echo=lines.append)
    key = result.record.key
    assert key.precision == "int8" and result.engine_path.parent == path.parent
    if result.precision_used == "int8":
        [cache] = path.parent.glob("*.int8.calib.cache")
        assert key.calibration_sha256 == sha256_file(cache)
        assert any("calibrating" in line for line in lines)
    with TensorRTBackend(path, spec, torch.device("cuda"), precision="int8") as backend:
        assert not backend.rebuilt  # found the engine and the calibration cache
        x = torch.randn(2, 3, 64, 128, device="cuda")
        out = backend.infer({"image": x})
        expected = onnxruntime_outputs(path, spec, x)["semantic"]
        got = out["semantic"].float().cpu().numpy()
        assert np.isfinite(got).all()
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.8
