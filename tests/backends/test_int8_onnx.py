"""INT8 companions: made from the real shipped model with ONNX Runtime's quantization tools, found and
checked by the real ONNX Runtime backend."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from panoptic_ros.apps.quantize import synthetic_frames
from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.calibration import CalibrationError
from panoptic_ros.backends.engine_key import sha256_file
from panoptic_ros.backends.int8_onnx import (
    PROVENANCE_KEY,
    companion_path,
    current_companion,
    float_convolutions,
    quantize_int8,
    read_provenance,
)
from panoptic_ros.backends.registry import create_backend
from panoptic_ros.core.preprocess import Preprocessor
from panoptic_ros.data.synthetic import generate
from panoptic_ros.models.spec import load_spec
from panoptic_ros.resources import default_model

SPEC_KEY = "panoptic_ros.spec"


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped model with a companion made from 8 synthetic training frames."""
    folder = tmp_path_factory.mktemp("int8")
    model = folder / "model.onnx"
    shutil.copyfile(default_model(), model)
    quantize_int8(model, synthetic_frames(8), calibration="8 synthetic frames")
    return model


def test_companion_name() -> None:
    assert companion_path(Path("/a/b/panoptic_synthetic.onnx")) == Path("/a/b/panoptic_synthetic.int8.onnx")


def test_float_convolutions_of_the_shipped_model() -> None:
    """The last convolution before each output, and the center and offset heads whole."""
    graph = onnx.load(str(default_model())).graph
    kept = float_convolutions(graph)
    by_name = {node.name: node for node in graph.node}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def outputs_fed(value: str) -> set[str]:
        found = {value} if value in {o.name for o in graph.output} else set()
        for node in consumers.get(value, []):
            for out in node.output:
                found |= outputs_fed(out)
        return found

    convs = [node for node in graph.node if node.op_type == "Conv"]
    # the shipped network: 33 convolutions; the semantic classifier (1x1), the center head (3x3, 1x1)
    # and the offset head (3x3, 1x1) are the last five
    assert kept == [node.name for node in convs[-5:]]
    fed = [outputs_fed(by_name[name].output[0]) for name in kept]
    assert fed == [{"semantic"}, {"center"}, {"center"}, {"offset"}, {"offset"}]
    semantic_classifier = by_name[kept[0]]
    assert not any(c.op_type == "Conv" for c in consumers[semantic_classifier.output[0]])
    # the semantic head's other convolutions (at stride 2, the costly ones) stay INT8
    semantic_int8 = [n for n in convs if outputs_fed(n.output[0]) == {"semantic"} and n.name not in kept]
    assert len(semantic_int8) == 3
    # the shared backbone and decoder stay INT8: most convolutions are quantized
    assert len(kept) < len(convs) / 4


def test_companion_keeps_the_spec_and_records_its_origin(quantized: Path) -> None:
    companion = companion_path(quantized)
    before, after = _metadata(quantized), _metadata(companion)
    assert after[SPEC_KEY] == before[SPEC_KEY]
    assert load_spec(companion) == load_spec(quantized)
    provenance = read_provenance(companion)
    assert provenance is not None
    assert provenance.float_sha256 == sha256_file(quantized)
    assert provenance.frames == 8 and provenance.calibration == "8 synthetic frames"
    assert provenance.float_nodes == tuple(float_convolutions(onnx.load(str(quantized)).graph))
    ops = {node.op_type for node in onnx.load(str(companion)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert read_provenance(quantized) is None
    assert companion.stat().st_size < quantized.stat().st_size / 2


def _held_out_batch(model: Path) -> torch.Tensor:
    frames = [s.image for s in generate(3, seed=1000)]
    batch, _ = Preprocessor(load_spec(model).input, torch.device("cpu"))(frames, order="rgb")
    return batch


def test_backend_runs_the_companion_and_agrees_with_the_float_network(quantized: Path) -> None:
    auto = create_backend("onnxruntime", quantized, device="cpu")
    as_float = create_backend("onnxruntime", quantized, device="cpu", options={"precision": "fp32"})
    required = create_backend("onnxruntime", quantized, device="cpu", options={"precision": "int8"})
    try:
        assert auto.session_path == required.session_path == companion_path(quantized)
        assert as_float.session_path == quantized
        assert auto.describe() == "onnxruntime int8 on cpu"
        assert as_float.describe() == "onnxruntime fp32 on cpu"
        inputs = {load_spec(quantized).input.name: _held_out_batch(quantized)}
        a, b = as_float.infer(inputs), auto.infer(inputs)
        assert a.keys() == b.keys()
        assert not torch.equal(a["semantic"], b["semantic"])  # it is another network
        agree = (a["semantic"].argmax(1) == b["semantic"].argmax(1)).float().mean().item()
        assert agree >= 0.99, agree
        assert (a["center"] - b["center"]).abs().max().item() < 0.2
        assert (a["offset"] - b["offset"]).abs().mean().item() < 1.0
    finally:
        for backend in (auto, as_float, required):
            backend.close()


def test_a_stale_companion_is_never_run(
    quantized: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "model.onnx"
    proto = onnx.load(str(quantized))
    proto.doc_string = "retrained"  # another float file: its SHA-256 differs
    onnx.save(proto, str(model))
    shutil.copyfile(companion_path(quantized), companion_path(model))
    check = current_companion(model)
    assert check.path is None and "another version" in check.problem
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.backends.onnxruntime_backend"):
        backend = create_backend("onnxruntime", model, device="cpu")
    try:
        assert backend.session_path == model
        assert "another version" in caplog.text and "panoptic-ros quantize" in caplog.text
    finally:
        backend.close()
    with pytest.raises(BackendError, match=r"another version.*panoptic-ros quantize"):
        create_backend("onnxruntime", model, device="cpu", options={"precision": "int8"})


def test_int8_without_a_companion_says_how_to_make_one(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copyfile(default_model(), model)
    assert current_companion(model) == (None, "")
    backend = create_backend("onnxruntime", model, device="cpu")
    try:
        assert backend.session_path == model and backend.describe() == "onnxruntime fp32 on cpu"
    finally:
        backend.close()
    with pytest.raises(BackendError, match=r"no INT8 companion \(model.int8.onnx\).*panoptic-ros quantize"):
        create_backend("onnxruntime", model, device="cpu", options={"precision": "int8"})
    with pytest.raises(BackendError, match="must be one of auto, fp32, int8"):
        create_backend("onnxruntime", model, device="cpu", options={"precision": "fp16"})


def test_a_file_without_provenance_is_no_companion(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copyfile(default_model(), model)
    shutil.copyfile(default_model(), companion_path(model))
    check = current_companion(model)
    assert check.path is None and PROVENANCE_KEY in check.problem


def test_no_calibration_frames_is_an_error(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copyfile(default_model(), model)
    with pytest.raises(CalibrationError, match="no calibration frames"):
        quantize_int8(model, iter(()), calibration="nothing")
    assert not companion_path(model).exists()


def test_the_shipped_companion_was_made_from_the_shipped_model() -> None:
    """`make model` retrains and re-quantizes; a model committed without its companion fails here."""
    check = current_companion(default_model())
    assert check.path == companion_path(default_model()), check.problem
    provenance = read_provenance(check.path)
    assert provenance is not None and "synthetic" in provenance.calibration


def test_cli_quantizes_from_a_folder_of_images(tmp_path: Path) -> None:
    from panoptic_ros.cli import main

    model = tmp_path / "model.onnx"
    shutil.copyfile(default_model(), model)
    images = tmp_path / "images"
    images.mkdir()
    for k, sample in enumerate(generate(4, seed=7)):
        cv2.imwrite(str(images / f"{k}.png"), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
    assert main(["quantize", str(model), "--calib", str(images), "--max-images", "3"]) == 0
    provenance = read_provenance(companion_path(model))
    assert provenance is not None and provenance.frames == 3 and str(images) in provenance.calibration
    assert current_companion(model).path == companion_path(model)
    assert np.isfinite(companion_path(model).stat().st_size)


def test_torch_runs_fp32_only() -> None:
    with pytest.raises(BackendError, match="torch backend runs fp32, not int8"):
        create_backend("torch", default_model(), device="cpu", options={"precision": "int8"})
    backend = create_backend("torch", default_model(), device="cpu", options={"precision": "fp32"})
    backend.close()


def test_float_convolutions_renamed_by_the_optimizer_are_an_error() -> None:
    from panoptic_ros.backends.int8_onnx import _check_names_kept

    kept = float_convolutions(onnx.load(str(default_model())).graph)
    _check_names_kept(default_model(), kept)  # the shipped graph has them all
    with pytest.raises(BackendError, match=r"renamed or fused the convolutions \['no_such_conv'\]"):
        _check_names_kept(default_model(), [*kept, "no_such_conv"])
