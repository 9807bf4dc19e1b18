"""The model spec: everything the backends and fusion need to know about a model, besides weights.

A spec travels with its model: inside the ONNX file (``metadata_props`` key :data:`METADATA_KEY`,
JSON) and as a JSON sidecar next to a built TensorRT engine (which cannot carry metadata). Example::

    {
      "format": "panoptic_ros.model_spec/1",
      "name": "panoptic_synthetic",
      "family": "center-offset",
      "input": {"name": "image", "height": 192, "width": 384, "color_order": "rgb",
                "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "max_batch": 8},
      "outputs": {"semantic": "semantic", "center": "center", "offset": "offset"},
      "label_set": {"name": "synthetic", "categories": [...]},
      "fusion": {"center_threshold": 0.1, "nms_kernel": 7, "top_k": 200, "stuff_area": 64},
      "architecture": {"module": "panoptic_ros.models.center_offset_net:CompactPanopticNet",
                       "kwargs": {"num_classes": 8, "width": 32}, "fused_batchnorm": true}
    }

``input.mean``/``std`` apply to 0..255 pixel values in ``color_order``; the network sees
``(pixel - mean) / std`` as ``N x 3 x height x width`` float32. ``outputs`` maps each role the
decoder family needs to the model's output name. ``fusion`` overrides the family's default
thresholds. ``architecture`` (optional) lets the PyTorch backend rebuild the module.
``companions`` (optional) maps roles to *other* model files (paths relative to this one) that run
on the same frames and provide them, e.g. ``{"semantic": "segformer.onnx"}`` for an instance model
next to a semantic model; each companion has its own spec (input size, normalization) whose
``outputs`` name the role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.params import json_object
from panoptic_ros.errors import PanopticRosError
from panoptic_ros.fusion.families import FAMILIES

SPEC_FORMAT = "panoptic_ros.model_spec/1"
METADATA_KEY = "panoptic_ros.spec"


class ModelSpecError(PanopticRosError, ValueError):
    """A model spec is missing or invalid; the message says which field and what to do."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    height: int
    width: int
    color_order: str = "rgb"
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    max_batch: int = 8

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ModelSpecError(f"input size {self.height} x {self.width} must be positive")
        if self.color_order not in ("rgb", "bgr"):
            raise ModelSpecError(f"input.color_order={self.color_order!r} must be 'rgb' or 'bgr'")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ModelSpecError(f"input.mean={self.mean} / input.std={self.std} must be 3 values, std > 0")
        if self.max_batch < 1:
            raise ModelSpecError(f"input.max_batch={self.max_batch} must be >= 1")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    input: InputSpec
    outputs: dict[str, str]
    label_set: LabelSet
    fusion: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    companions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # keep the free-form parts in their JSON form, so a spec equals itself after a round trip
        for name in ("fusion", "architecture", "provenance"):
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, json.loads(json.dumps(value)))
                except (TypeError, ValueError) as err:
                    raise ModelSpecError(f"{name} must be plain JSON data: {err}") from err
        if self.family not in FAMILIES:
            raise ModelSpecError(f"family={self.family!r} is not one of {sorted(FAMILIES)}")
        # the roles a family needs are checked where the companions are known (runtime.pipeline)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": SPEC_FORMAT,
            "name": self.name,
            "family": self.family,
            "input": asdict(self.input),
            "outputs": dict(self.outputs),
            "label_set": self.label_set.to_dict(),
            "fusion": dict(self.fusion),
        }
        if self.architecture is not None:
            data["architecture"] = self.architecture
        if self.provenance:
            data["provenance"] = self.provenance
        if self.companions:
            data["companions"] = dict(self.companions)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<spec>") -> ModelSpec:
        if data.get("format") != SPEC_FORMAT:
            raise ModelSpecError(f"{source}: format={data.get('format')!r}, expected {SPEC_FORMAT!r}")
        try:
            inp = dict(data["input"])
            for key in ("mean", "std"):
                if key in inp:
                    inp[key] = tuple(float(v) for v in inp[key])
            return cls(
                name=str(data["name"]),
                family=str(data["family"]),
                input=InputSpec(**inp),
                outputs={str(k): str(v) for k, v in dict(data["outputs"]).items()},
                label_set=LabelSet.from_dict(data["label_set"], source=f"{source} label_set"),
                fusion=dict(data.get("fusion", {})),
                architecture=data.get("architecture"),
                provenance=dict(data.get("provenance", {})),
                companions={str(k): str(v) for k, v in dict(data.get("companions", {})).items()},
            )
        except ModelSpecError as err:
            raise ModelSpecError(f"{source}: {err}") from err
        except PanopticRosError as err:
            raise ModelSpecError(f"{source}: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise ModelSpecError(f"{source}: invalid model spec ({type(err).__name__}: {err})") from err

    @classmethod
    def from_json(cls, text: str, *, source: str = "<spec>") -> ModelSpec:
        return cls.from_dict(json_object(text, f"{source}: the model spec", ModelSpecError), source=source)


def sidecar_path(model: Path) -> Path:
    """The JSON sidecar of a model or engine file: ``model.onnx`` -> ``model.json``."""
    return model.with_suffix(".json")


def load_spec(model: str | Path) -> ModelSpec:
    """The spec of a model file: from its JSON sidecar if there is one, else from the ONNX metadata.

    Raises:
        ModelSpecError: the file is missing, has no spec, or the spec is invalid; the message says how
            to give the model a spec.
    """
    path = Path(model)
    if not path.is_file():
        raise ModelSpecError(f"model file {path} does not exist")
    sidecar = sidecar_path(path)
    if sidecar.is_file() and sidecar != path:
        return ModelSpec.from_json(sidecar.read_text(encoding="utf-8"), source=str(sidecar))
    if path.suffix == ".json":
        return ModelSpec.from_json(path.read_text(encoding="utf-8"), source=str(path))
    if path.suffix != ".onnx":
        raise ModelSpecError(f"{path}: no spec sidecar {sidecar.name} next to it, and it is not an ONNX file")
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, OSError and others for broken files
        raise ModelSpecError(f"{path} is not a readable ONNX file ({type(err).__name__}: {err})") from err
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelSpec.from_json(prop.value, source=f"{path} metadata")
    raise ModelSpecError(
        f"{path} carries no panoptic_ros model spec (ONNX metadata key {METADATA_KEY!r}) and has no "
        f"{sidecar.name} sidecar; write a spec by hand (see docs/models.md) or export the model with "
        "'panoptic-ros export'"
    )


def embed_spec(onnx_path: Path, spec: ModelSpec) -> None:
    """Write ``spec`` into the ONNX file's metadata (replacing an older one), in place."""
    import onnx

    proto = onnx.load(str(onnx_path))
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = spec.to_json()
    onnx.save(proto, str(onnx_path))
