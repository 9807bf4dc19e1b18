"""The pipeline runs every decoder family: an exported mask-classification model (tiny random
Mask2Former) through the pipeline and ``panoptic-ros infer``, and detection + semantic models as one
network or as two (a companion), each against its fusion called directly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from panoptic_ros.cli import main
from panoptic_ros.core.preprocess import Preprocessor, Transform, restore
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.detection_semantic import (
    Detections,
    DetectionSemanticParams,
    fuse_detection_semantic,
)
from panoptic_ros.fusion.families import FAMILIES
from panoptic_ros.fusion.mask_classification import MaskClassificationParams, fuse_mask_classification
from panoptic_ros.models.module_export import export_module
from panoptic_ros.models.spec import load_spec
from panoptic_ros.runtime.companions import reframe
from panoptic_ros.runtime.pipeline import PanopticPipeline
from tests.models import tiny_networks

pytestmark = pytest.mark.slow


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(120, 180), (64, 96), (90, 200)]
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(count)]


def expected_panoptic(
    fused_panoptic: torch.Tensor, class_to_id: np.ndarray, transform: Transform
) -> torch.Tensor:
    """Model class indices -> category ids, at the source frame's size (what the pipeline promises)."""
    lut = torch.as_tensor(class_to_id)
    classes = torch.div(fused_panoptic.clamp(min=0), 1000, rounding_mode="floor")
    mapped = torch.where(fused_panoptic < 0, -1, lut[classes] * 1000 + fused_panoptic.clamp(min=0) % 1000)
    return restore(mapped, transform)


@pytest.fixture(scope="module")
def mask2former() -> Path:
    pytest.importorskip("transformers", reason="exporting the tiny Mask2Former needs transformers")
    from tests.models.tiny_transformers import exported

    return exported("mask2former").onnx


def test_every_family_has_a_fusion() -> None:
    assert set(FAMILIES) == {"center-offset", "mask-classification", "detection-semantic"}


@pytest.mark.parametrize("overrides", [{}, {"object_threshold": 0.0, "overlap_threshold": 0.0}])
def test_mask_classification_model_through_the_pipeline(
    mask2former: Path, overrides: dict[str, float]
) -> None:
    spec = load_spec(mask2former)
    images = frames(3)
    with PanopticPipeline(mask2former, backend="onnxruntime", device="cpu", fusion=overrides) as pipeline:
        assert isinstance(pipeline.params, MaskClassificationParams)
        outputs = pipeline(images)
    session = ort.InferenceSession(str(mask2former), providers=["CPUExecutionProvider"])
    batch, transforms = Preprocessor(spec.input, torch.device("cpu"))(images)
    class_logits, mask_logits = session.run(None, {"pixel_values": batch.numpy()})
    things = [i for i, c in enumerate(spec.label_set.categories) if c.is_thing]
    params = MaskClassificationParams.from_spec({**spec.fusion, **overrides})
    segments = 0
    for i, (out, transform) in enumerate(zip(outputs, transforms, strict=True)):
        fused = fuse_mask_classification(
            torch.from_numpy(class_logits[i]),
            torch.from_numpy(mask_logits[i]),
            things,
            params,
            output_size=(64, 96),
        )
        expected = expected_panoptic(fused.panoptic, spec.label_set.class_to_id, transform)
        assert out.camera_size == images[i].shape[:2] and out.panoptic.shape == (64, 96)
        assert torch.equal(out.in_camera(out.panoptic), expected)
        segments += out.segments.ids.numel()
    if overrides:
        assert segments > 0, "with all queries allowed the random model must paint something"


def test_params_can_be_replaced_at_run_time(mask2former: Path) -> None:
    """The node swaps ``pipeline.params`` for new thresholds (``type(params).from_spec``)."""
    with PanopticPipeline(mask2former, backend="onnxruntime", device="cpu") as pipeline:
        loose = type(pipeline.params).from_spec(
            {**pipeline.spec.fusion, "object_threshold": 0.0, "overlap_threshold": 0.0}
        )
        strict = type(pipeline.params).from_spec({**pipeline.spec.fusion, "object_threshold": 0.9999})
        pipeline.params = strict
        none = pipeline(frames(1))[0]
        pipeline.params = loose
        some = pipeline(frames(1))[0]
    assert none.segments.ids.numel() == 0 and bool((none.panoptic < 0).all())
    assert some.segments.ids.numel() > 0


def test_infer_command_runs_an_exported_mask_classification_model(mask2former: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(frames(3)):
        cv2.imwrite(str(images / f"frame{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "pred"
    assert (
        main(
            [
                "infer",
                "--model",
                str(mask2former),
                "--input",
                str(images),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    predictions = json.loads((out / "panoptic.json").read_text())
    assert [a["file_name"] for a in predictions["annotations"]] == ["frame0.png", "frame1.png", "frame2.png"]
    spec = load_spec(mask2former)
    with PanopticPipeline(mask2former, backend="onnxruntime", device="cpu") as pipeline:
        expected = pipeline(frames(3))
    for annotation, frame_out in zip(predictions["annotations"], expected, strict=True):
        categories = sorted(s["category_id"] for s in annotation["segments_info"])
        assert categories == sorted(
            int(c) for c in frame_out.segments.ids.div(1000, rounding_mode="floor").tolist()
        )
        for segment in annotation["segments_info"]:
            assert segment["category_id"] in {c.id for c in spec.label_set.categories}
    assert len(list((out / "overlay").iterdir())) == 3


@pytest.fixture(scope="module")
def detection_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One network with both heads, and a pair: an instance model with a semantic companion at a
    different input size."""
    root = tmp_path_factory.mktemp("detection")
    export_module(
        tiny_networks.TinyDetectionSemantic(), tiny_networks.detection_semantic_spec(), root / "both.onnx"
    )
    semantic_spec = tiny_networks.detection_semantic_spec(
        roles=("semantic",), height=32, width=64, name="semantic"
    )
    export_module(tiny_networks.TinySemantic(32, 64), semantic_spec, root / "semantic.onnx")
    instances = tiny_networks.detection_semantic_spec(
        roles=("boxes", "scores", "classes", "masks"),
        companions={"semantic": "semantic.onnx"},
        name="instances",
    )
    export_module(tiny_networks.TinyDetections(), instances, root / "instances.onnx")
    no_semantic = tiny_networks.detection_semantic_spec(roles=("boxes", "scores", "classes", "masks"))
    export_module(tiny_networks.TinyDetections(), no_semantic, root / "lonely.onnx")
    return root


def run_onnx(path: Path, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    spec = load_spec(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(spec.outputs.values())
    values = session.run(names, {spec.input.name: batch.numpy()})
    return {role: torch.from_numpy(v) for role, v in zip(spec.outputs, values, strict=True)}


def fuse_frame(roles: dict[str, torch.Tensor], i: int, params: DetectionSemanticParams) -> torch.Tensor:
    detections = Detections(roles["boxes"][i], roles["scores"][i], roles["classes"][i], roles["masks"][i])
    fused = fuse_detection_semantic(
        detections, roles["semantic"][i], [0, 1], params, output_size=(64, 96), num_classes=4
    )
    return fused.panoptic


def test_detection_semantic_model_through_the_pipeline(detection_models: Path) -> None:
    path = detection_models / "both.onnx"
    spec = load_spec(path)
    images = frames(3, seed=4)
    with PanopticPipeline(path, backend="onnxruntime", device="cpu") as pipeline:
        outputs = pipeline(images)
    batch, transforms = Preprocessor(spec.input, torch.device("cpu"))(images)
    roles = run_onnx(path, batch)
    params = DetectionSemanticParams.from_spec(spec.fusion)
    for i, (out, transform) in enumerate(zip(outputs, transforms, strict=True)):
        expected = expected_panoptic(fuse_frame(roles, i, params), spec.label_set.class_to_id, transform)
        assert torch.equal(out.in_camera(out.panoptic), expected)
        ids = set(out.segments.ids.tolist())
        assert {1, 1001, 2000, 3000} <= ids  # person, car, road and sky


def test_two_networks_on_the_same_frames(detection_models: Path) -> None:
    """An instance model whose spec names a semantic companion with another input size."""
    images = frames(3, seed=5)
    for resize in ("resize", "letterbox"):
        with PanopticPipeline(
            detection_models / "instances.onnx", backend="onnxruntime", device="cpu", resize=resize
        ) as pipeline:
            outputs = pipeline(images)
            # the companion fits each frame by its own channel order too
            orders = ["bgr", "rgb", "bgr"]
            given = [
                np.ascontiguousarray(im[..., ::-1]) if o == "bgr" else im
                for im, o in zip(images, orders, strict=True)
            ]
            mixed = pipeline(given, order=orders)  # type: ignore[arg-type]
            for a, b in zip(outputs, mixed, strict=True):
                assert torch.equal(a.panoptic, b.panoptic) and torch.equal(a.segments.ids, b.segments.ids)
            with pytest.raises(ConfigError, match="3 frames: give one each"):
                pipeline(given, order=["bgr", "rgb"])  # type: ignore[arg-type]
        main_spec = load_spec(detection_models / "instances.onnx")
        companion = load_spec(detection_models / "semantic.onnx")
        batch, transforms = Preprocessor(main_spec.input, torch.device("cpu"), mode=resize)(images)
        roles = run_onnx(detection_models / "instances.onnx", batch)
        sem_batch, sem_transforms = Preprocessor(companion.input, torch.device("cpu"), mode=resize)(images)
        semantic = run_onnx(detection_models / "semantic.onnx", sem_batch)["semantic"]
        roles["semantic"] = torch.stack(
            [reframe(semantic[i], sem_transforms[i], (32, 64), transforms[i], (64, 96)) for i in range(3)]
        )
        params = DetectionSemanticParams.from_spec(main_spec.fusion)
        for i, out in enumerate(outputs):
            expected = expected_panoptic(
                fuse_frame(roles, i, params), main_spec.label_set.class_to_id, transforms[i]
            )
            assert torch.equal(out.in_camera(out.panoptic), expected)
            assert 3000 in out.segments.ids.tolist()


def test_missing_roles_are_reported_when_the_model_loads(detection_models: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs output roles \['semantic'\].*companions"):
        PanopticPipeline(detection_models / "lonely.onnx", backend="onnxruntime", device="cpu")


def test_reframe_moves_an_output_between_letterboxed_inputs() -> None:
    # a frame of 40 x 80 letterboxed into 40 x 40 (rows 10..29) and stretched into 20 x 60
    source = Transform(40, 80, 10, 0, 20, 40)
    target = Transform(40, 80, 0, 0, 20, 60)
    labels = torch.full((40, 40), 9, dtype=torch.int64)
    labels[10:30, :20] = 1
    labels[10:30, 20:] = 2
    moved = reframe(labels, source, (40, 40), target, (20, 60))
    assert moved.dtype == torch.int64 and moved.shape == (20, 60)
    assert moved[:, :30].eq(1).all() and moved[:, 30:].eq(2).all()
    logits = torch.zeros(2, 20, 20)  # the same at half resolution, as float logits
    logits[0, 5:15, :10] = 1.0
    moved = reframe(logits, source, (40, 40), target, (20, 60))
    assert moved.shape == (2, 20, 60) and moved[0, :, :25].gt(0.9).all() and moved[0, :, 35:].lt(0.1).all()


def test_category_tables_and_arithmetic_give_the_same_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fused ids become category ids by lookup tables, or by arithmetic where tables would be large."""
    from panoptic_ros.data.synthetic import generate
    from panoptic_ros.resources import default_model
    from panoptic_ros.runtime import categories

    images = [next(generate(1, seed=12)).image]
    with PanopticPipeline(default_model(), backend="onnxruntime", device="cpu") as pipeline:
        (tables,) = pipeline(images)
        monkeypatch.setattr(categories, "MAX_CATEGORY_TABLE", 0)
        (arithmetic,) = pipeline(images)
    assert torch.equal(tables.panoptic, arithmetic.panoptic)
    assert torch.equal(tables.semantic, arithmetic.semantic)
    categories = set(tables.semantic.unique().tolist())
    assert len(categories) >= 3, "a street scene has several categories"
    assert categories <= {c.id for c in pipeline.label_set.categories} | {pipeline.label_set.void_semantic}
    painted = tables.panoptic >= 0
    category_of_id = torch.div(tables.panoptic[painted], 1000, rounding_mode="floor")
    assert torch.equal(category_of_id, tables.semantic[painted])
