"""Export of transformers checkpoints (tiny random Mask2Former / MaskFormer / OneFormer, no download)
and of PyTorch modules: the spec, ONNX Runtime against PyTorch, fusion against transformers, the CLI."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from panoptic_ros.cli import main
from panoptic_ros.fusion.mask_classification import (
    MaskClassificationParams,
    fuse_mask_classification,
    transformers_result,
)
from panoptic_ros.models.export import ExportError
from panoptic_ros.models.hf_export import (
    PanopticHead,
    input_spec,
    load_checkpoint,
    resolve_label_set,
    task_tokens,
)
from panoptic_ros.models.module_export import export_module
from panoptic_ros.models.onnx_check import check_onnx
from panoptic_ros.models.spec import InputSpec, ModelSpec, load_spec
from tests.models import tiny_networks
from tests.models.tiny_transformers import (
    NUM_LABELS,
    NUM_QUERIES,
    THING_IDS,
    Exported,
    exported,
    save_checkpoint,
)

transformers = pytest.importorskip("transformers", reason="exporting checkpoints needs transformers 4.57")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["mask2former", "maskformer", "oneformer"])
def model(request: pytest.FixtureRequest) -> Exported:
    return exported(request.param)


def torch_head(model: Exported) -> PanopticHead:
    network, config, _ = load_checkpoint(str(model.checkpoint))
    tokens = task_tokens(str(model.checkpoint), config) if config.model_type == "oneformer" else None
    return PanopticHead(network, tokens).eval()


def test_spec_describes_the_checkpoint(model: Exported) -> None:
    spec = load_spec(model.onnx)
    model_type = spec.provenance["model_type"]
    assert spec.family == "mask-classification"
    assert spec.outputs == {"class_logits": "class_logits", "mask_logits": "mask_logits"}
    assert (spec.input.name, spec.input.height, spec.input.width) == ("pixel_values", 64, 96)
    assert spec.input.mean == pytest.approx((123.675, 116.28, 103.53))
    assert spec.input.std == pytest.approx((58.395, 57.12, 57.375))
    assert [c.name for c in spec.label_set.categories] == ["person", "car", "road", "sky", "building"]
    assert [c.is_thing for c in spec.label_set.categories] == [i in THING_IDS for i in range(NUM_LABELS)]
    assert MaskClassificationParams.from_spec(spec.fusion) == MaskClassificationParams()
    assert spec.provenance["exporter"] == ("dynamo" if model_type == "mask2former" else "torchscript")
    assert spec.provenance["num_queries"] == NUM_QUERIES
    expected_source = "the checkpoint's class_info_file" if model_type == "oneformer" else "--thing-ids"
    assert spec.provenance["label_source"] == expected_source


def test_onnx_runtime_matches_pytorch(model: Exported) -> None:
    head = torch_head(model)
    session = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 2):
        x = torch.randn(batch, 3, 64, 96, generator=gen)
        class_logits, mask_logits = session.run(["class_logits", "mask_logits"], {"pixel_values": x.numpy()})
        with torch.no_grad():
            expected = head(x)
        assert class_logits.shape == (batch, NUM_QUERIES, NUM_LABELS + 1)
        assert mask_logits.shape == (batch, NUM_QUERIES, 16, 24)
        for got, want in ((class_logits, expected[0]), (mask_logits, expected[1])):
            scale = float(want.abs().max())
            assert np.abs(got - want.numpy()).max() <= 1e-4 * max(scale, 1.0)


def test_fusion_of_the_exported_outputs_equals_transformers(model: Exported, tmp_path: Path) -> None:
    spec = load_spec(model.onnx)
    model_type = spec.provenance["model_type"]
    session = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    class_logits, mask_logits = (torch.from_numpy(a) for a in session.run(None, {"pixel_values": x.numpy()}))
    if model_type == "mask2former":
        processor = transformers.Mask2FormerImageProcessor()
    elif model_type == "maskformer":
        processor = transformers.MaskFormerImageProcessor()
    else:
        processor = transformers.OneFormerImageProcessor.from_pretrained(model.checkpoint)
    stuff = {i for i, c in enumerate(spec.label_set.categories) if not c.is_thing}
    things = [i for i, c in enumerate(spec.label_set.categories) if c.is_thing]
    compared = 0
    for overlap in (0.8, 0.0):
        params = MaskClassificationParams.transformers(model_type, overlap_threshold=overlap)
        for i in range(2):
            one = types.SimpleNamespace(
                class_queries_logits=class_logits[i : i + 1], masks_queries_logits=mask_logits[i : i + 1]
            )
            expected = processor.post_process_panoptic_segmentation(
                one, overlap_mask_area_threshold=overlap, label_ids_to_fuse=stuff, target_sizes=[(64, 96)]
            )[0]
            out = fuse_mask_classification(
                class_logits[i], mask_logits[i], things, params, output_size=(64, 96)
            )
            got = transformers_result(out, (64, 96))
            assert got["segments_info"] == expected["segments_info"]
            assert torch.equal(got["segmentation"], expected["segmentation"])
            compared += len(expected["segments_info"])
    assert compared > 0


def test_check_onnx_finds_nothing_tensorrt_rejects(model: Exported) -> None:
    report = check_onnx(model.onnx)
    assert report.ok, report.table()


def names_config(names: list[str]) -> types.SimpleNamespace:
    return types.SimpleNamespace(id2label=dict(enumerate(names)), num_labels=len(names))


def test_label_set_sources(tmp_path: Path) -> None:
    from panoptic_ros.core.labels import load_label_set

    cityscapes = load_label_set("cityscapes")
    names = [c.name for c in cityscapes.categories]
    found, source = resolve_label_set(names_config(names), {}, checkpoint="x/cityscapes-panoptic")
    assert found == cityscapes and "cityscapes" in source
    found, source = resolve_label_set(names_config(["a", "b", "c"]), {}, checkpoint="x", thing_ids=[2])
    assert [c.is_thing for c in found.categories] == [False, False, True] and source == "--thing-ids"
    with pytest.raises(ExportError, match=r"--thing-ids \[3\] are not class indices 0..2"):
        resolve_label_set(names_config(["a", "b", "c"]), {}, checkpoint="x", thing_ids=[3])
    with pytest.raises(ExportError, match="has 19 categories but the checkpoint predicts 3"):
        resolve_label_set(names_config(["a", "b", "c"]), {}, checkpoint="x", label_set="cityscapes")
    with pytest.raises(ExportError, match="does not say which are things; pass --thing-ids"):
        resolve_label_set(names_config(["a", "b", "c"]), {}, checkpoint="x")
    (tmp_path / "info.json").write_text(
        json.dumps({"0": {"name": "a", "isthing": 1}, "1": {"name": "b", "isthing": 0}})
    )
    found, source = resolve_label_set(
        names_config(["a", "b"]), {"class_info_file": "info.json"}, checkpoint=str(tmp_path)
    )
    assert [c.is_thing for c in found.categories] == [True, False] and "class_info_file" in source


def test_input_spec_from_the_image_processor() -> None:
    assert (input_spec({"size": {"height": 384, "width": 384}}).height, 384) == (384, 384)
    shortest = input_spec({"size": {"shortest_edge": 800, "longest_edge": 1333}})
    assert (shortest.height, shortest.width) == (800, 1088)
    plain = input_spec({"do_normalize": False, "do_rescale": False})
    assert plain.mean == (0.0, 0.0, 0.0) and plain.std == (1.0, 1.0, 1.0)
    assert input_spec({}, height=128, width=256).mean == pytest.approx((123.675, 116.28, 103.53))
    with pytest.raises(ExportError, match="multiples of 32"):
        input_spec({}, height=100, width=128)


class DataDependent(nn.Module):
    """torch.export cannot trace a branch on a tensor's value; the TorchScript tracer can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.conv(image)
        if out.mean() > -1e9:
            out = out * 2
        return out


class BakedBatch(nn.Module):
    """A trace that bakes in the example's batch of 2: right at batch 2, wrong at batch 1."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(int(image.shape[0]), dtype=image.dtype).view(-1, 1, 1, 1)  # a Python int
        return image[:, :1] + offsets


def small_spec(outputs: dict[str, str]) -> ModelSpec:
    return ModelSpec(
        name="small",
        family="detection-semantic",
        input=InputSpec(name="image", height=32, width=32, max_batch=2),
        outputs=outputs,
        label_set=tiny_networks.LABELS,
    )


def test_exporter_falls_back_to_torchscript_and_checks_every_batch(tmp_path: Path) -> None:
    spec = small_spec({"semantic": "semantic"})
    report = export_module(DataDependent(), spec, tmp_path / "fallback.onnx")
    assert report.exporter == "torchscript" and load_spec(report.path).provenance["exporter"] == "torchscript"
    with pytest.raises(ExportError, match="dynamo"):
        export_module(DataDependent(), spec, tmp_path / "dynamo.onnx", exporter="dynamo")
    with pytest.raises(ExportError, match="batch 1"):
        export_module(BakedBatch(), spec, tmp_path / "baked.onnx", exporter="torchscript")
    assert not (tmp_path / "baked.onnx").exists()


def test_unsupported_or_missing_checkpoints_are_reported(tmp_path: Path) -> None:
    transformers.SwinConfig().save_pretrained(tmp_path / "swin")
    with pytest.raises(ExportError, match="'swin' is not a mask-classification model"):
        load_checkpoint(str(tmp_path / "swin"))
    with pytest.raises(ExportError, match="cannot read a transformers config"):
        load_checkpoint(str(tmp_path / "missing"))


def test_cli_exports_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    maskformer = exported("maskformer").checkpoint
    out = tmp_path / "m.onnx"
    argv = ["export", "--checkpoint", str(maskformer), "--out", str(out), "--exporter", "torchscript"]
    assert main([*argv, "--thing-ids", "0,1", "--fusion-mode", "transformers", "--max-batch", "1"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "5 classes (2 things)" in printed and "findings for TensorRT" in printed
    spec = load_spec(out)
    assert spec.input.max_batch == 1
    assert MaskClassificationParams.from_spec(spec.fusion) == MaskClassificationParams.transformers(
        "maskformer"
    )
    assert main([*argv]) == 2  # the tiny config does not say which classes are things
    assert "pass --thing-ids" in capsys.readouterr().err


def test_cli_exports_a_pytorch_module_with_a_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tiny_networks.detection_semantic_spec()
    (tmp_path / "spec.json").write_text(spec.to_json())
    out = tmp_path / "ds.onnx"
    argv = ["export", "--module", "tests.models.tiny_networks:build_detection_semantic", "--out", str(out)]
    assert main([*argv, "--spec", str(tmp_path / "spec.json")]) == 0
    assert load_spec(out).family == "detection-semantic"
    assert "detection-semantic" in capsys.readouterr().out
    assert main(argv) == 2  # --module without --spec
    assert "--module needs --spec" in capsys.readouterr().err


def test_oneformer_checkpoint_without_metadata_needs_thing_ids(tmp_path: Path) -> None:
    from panoptic_ros.models.hf_export import export_transformers

    folder = save_checkpoint("oneformer", tmp_path / "oneformer", with_metadata=False)
    with pytest.raises(ExportError, match="pass --thing-ids"):
        export_transformers(str(folder), tmp_path / "o.onnx", exporter="torchscript")
