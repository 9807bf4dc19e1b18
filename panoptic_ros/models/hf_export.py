"""Export transformers Mask2Former, MaskFormer and OneFormer checkpoints to ONNX with a model spec.

``panoptic-ros export --checkpoint DIR_OR_HUB_ID --out M.onnx`` loads the checkpoint with
``transformers`` (a local folder written by ``save_pretrained``, or a hub id on a machine that can
download), wraps the network so that it maps ``pixel_values`` (``N x 3 x H x W``, normalized as the
checkpoint's image processor does) to ``class_logits`` (``N x Q x (K + 1)``) and ``mask_logits``
(``N x Q x H/4 x W/4``), exports it with a dynamic batch dimension, checks the file with ONNX
Runtime against PyTorch at batch 1 and 2, and embeds a mask-classification model spec:

* **label set**: class names from the config's ``id2label``; which classes are things comes from,
  in order: ``--label-set`` (a shipped set such as ``coco_panoptic`` or a YAML path, which also gives
  ids and colors), ``--thing-ids``, the checkpoint's own metadata (OneFormer's ``class_info_file``
  with ``isthing`` flags), or a shipped label set whose names equal ``id2label`` in order (COCO
  panoptic and Cityscapes checkpoints). Otherwise the export stops and asks for one of the options.
* **input**: size (default: the processor's fixed size, else its shortest edge x 4/3 of it, both
  rounded to multiples of 32), RGB, mean/std converted to 0..255 pixel units.
* **fusion**: Mask2Former's rules and thresholds (``--fusion-mode mask2former``, the default), or
  those of transformers' ``post_process_panoptic_segmentation`` (``--fusion-mode transformers``).

OneFormer also takes a task prompt: the tokens of "the task is panoptic" (from the checkpoint's
tokenizer) are baked into the graph as a constant.

The exporter is ``torch.onnx.export(dynamo=True)`` first; models that ``torch.export`` cannot trace
(OneFormer's pixel decoder reads tensor shapes as data) fall back to the TorchScript exporter. Either
result must pass the ONNX Runtime check at batch 1 and 2, which catches a trace that baked in the
example's batch size.

This module owns what is specific to transformers: loading the checkpoint, the label set, input
and fusion settings of its spec, the OneFormer task prompt and the wrapping
:class:`PanopticHead`. Exporting the wrapped module and the ONNX Runtime check are the generic
:func:`~panoptic_ros.models.module_export.export_module`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from panoptic_ros.core.labels import Category, LabelSet, load_label_set, shipped_label_sets
from panoptic_ros.errors import LabelSetError
from panoptic_ros.fusion.mask_classification import MaskClassificationParams
from panoptic_ros.models.export import ExportError
from panoptic_ros.models.module_export import Exporter, ExportReport, export_module
from panoptic_ros.models.spec import InputSpec, ModelSpec

log = logging.getLogger(__name__)

#: transformers model type -> the class with the panoptic head
MODEL_CLASSES: dict[str, str] = {
    "mask2former": "Mask2FormerForUniversalSegmentation",
    "maskformer": "MaskFormerForInstanceSegmentation",
    "oneformer": "OneFormerForUniversalSegmentation",
}

OUTPUT_NAMES = ("class_logits", "mask_logits")
INPUT_NAME = "pixel_values"
SIZE_MULTIPLE = 32

FusionModeName = Literal["mask2former", "transformers"]


class PanopticHead(nn.Module):
    """``pixel_values`` -> ``(class_logits, mask_logits)`` of a transformers mask-classification model.

    For OneFormer the task tokens (``[1, T]`` int64) are a buffer expanded to the batch.
    """

    def __init__(self, model: nn.Module, task_tokens: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.task_tokens: torch.Tensor | None
        if task_tokens is not None:
            self.register_buffer("task_tokens", task_tokens.reshape(1, -1).long(), persistent=False)
        else:
            self.task_tokens = None

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task_tokens is not None:
            tasks = self.task_tokens.expand(pixel_values.shape[0], -1)
            out = self.model(pixel_values=pixel_values, task_inputs=tasks)
        else:
            out = self.model(pixel_values=pixel_values)
        return out.class_queries_logits, out.masks_queries_logits


# --------------------------------------------------------------------------------------------------
# reading the checkpoint


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ExportError(
            "exporting a transformers checkpoint needs the 'transformers' package "
            "(pip install 'transformers==4.57.*' scipy pillow)"
        ) from err
    return transformers


def load_checkpoint(checkpoint: str) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The model (eval mode, CPU), its config and its image processor settings (a dict; empty
    when the checkpoint has none). ``checkpoint`` is a folder or a hub id."""
    transformers = _transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(checkpoint)
    except (OSError, ValueError) as err:
        raise ExportError(
            f"cannot read a transformers config from {checkpoint!r}: {err}. Give a folder written by "
            "save_pretrained, or a hub id on a machine that can download"
        ) from err
    model_type = getattr(config, "model_type", "")
    if model_type not in MODEL_CLASSES:
        raise ExportError(
            f"{checkpoint}: model type {model_type!r} is not a mask-classification model this exporter "
            f"knows ({', '.join(MODEL_CLASSES)}); for other networks use --module with a spec"
        )
    cls = getattr(transformers, MODEL_CLASSES[model_type])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(checkpoint)
    except (OSError, ValueError, RuntimeError) as err:
        raise ExportError(f"cannot load the {model_type} weights from {checkpoint!r}: {err}") from err
    try:
        processor, _ = transformers.ImageProcessingMixin.get_image_processor_dict(checkpoint)
    except (OSError, ValueError):
        log.warning("%s has no image processor config; assuming ImageNet normalization", checkpoint)
        processor = {}
    return model.eval(), config, dict(processor)


def class_names(config: Any) -> list[str]:
    """The K class names of a config, in class-index order (``id2label``)."""
    id2label = {int(k): str(v) for k, v in dict(getattr(config, "id2label", {}) or {}).items()}
    count = int(getattr(config, "num_labels", len(id2label)))
    if sorted(id2label) != list(range(count)):
        raise ExportError(
            f"the config's id2label does not name classes 0..{count - 1}: {sorted(id2label)[:10]}"
        )
    return [id2label[k] for k in range(count)]


def _normalized(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def _palette(index: int) -> tuple[int, int, int]:
    """A distinct, deterministic color per class index."""
    generator = np.random.default_rng(index * 7919 + 17)
    return tuple(int(v) for v in generator.integers(32, 256, size=3))  # type: ignore[return-value]


def resolve_label_set(
    config: Any,
    processor: dict[str, Any],
    *,
    checkpoint: str,
    label_set: str | None = None,
    thing_ids: Sequence[int] | None = None,
) -> tuple[LabelSet, str]:
    """The label set of a checkpoint and where its thing/stuff split came from (see the module doc).

    Raises:
        ExportError: the split cannot be found, or an explicit label set does not fit.
    """
    names = class_names(config)
    count = len(names)
    name = str(Path(checkpoint).name or checkpoint).replace("/", "_")
    if label_set is not None:
        try:
            chosen = load_label_set(label_set)
        except LabelSetError as err:
            raise ExportError(str(err)) from err
        if len(chosen) != count:
            raise ExportError(
                f"--label-set {label_set} has {len(chosen)} categories but the checkpoint predicts "
                f"{count} classes"
            )
        return chosen, f"--label-set {label_set}"
    if thing_ids is not None:
        things = {int(i) for i in thing_ids}
        outside = sorted(i for i in things if not 0 <= i < count)
        if outside:
            raise ExportError(f"--thing-ids {outside} are not class indices 0..{count - 1}")
        return _label_set(name, names, things), "--thing-ids"
    metadata = _class_info(processor, checkpoint)
    if metadata is not None:
        return _label_set(name, names, metadata), "the checkpoint's class_info_file"
    for shipped in shipped_label_sets():
        candidate = load_label_set(shipped)
        if len(candidate) == count and all(
            _normalized(c.name) == _normalized(n) for c, n in zip(candidate.categories, names, strict=True)
        ):
            return candidate, f"the shipped label set {shipped!r} (same class names)"
    raise ExportError(
        f"{checkpoint}: the config names {count} classes ({', '.join(names[:5])}, ...) but does not say "
        "which are things; pass --thing-ids with the thing class indices, or --label-set with a label "
        "set of the same classes (see docs/models.md)"
    )


def _label_set(name: str, names: Sequence[str], things: set[int]) -> LabelSet:
    seen: dict[str, int] = {}
    categories = []
    for index, label in enumerate(names):
        unique = label if label not in seen else f"{label} ({index})"
        seen[unique] = index
        categories.append(Category(id=index, name=unique, is_thing=index in things, color=_palette(index)))
    return LabelSet(name=name, categories=tuple(categories))


def _class_info(processor: dict[str, Any], checkpoint: str) -> set[int] | None:
    """Thing class indices from a processor's ``class_info_file`` (OneFormer), when it can be found
    next to the checkpoint, in the processor's ``repo_path`` folder, or downloaded."""
    filename = processor.get("class_info_file")
    if not filename:
        return None
    places = [Path(checkpoint) / filename]
    repo = processor.get("repo_path")
    if repo:
        places.append(Path(repo) / filename)
    path = next((p for p in places if p.is_file()), None)
    if path is None and repo:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(repo, filename, repo_type="dataset"))
        except Exception as err:  # offline, missing repo: the metadata is optional
            log.info("class_info_file %s not available (%s)", filename, err)
            return None
    if path is None:
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return {int(key) for key, value in info.items() if value.get("isthing")}
    except (OSError, ValueError, AttributeError) as err:
        raise ExportError(f"{path}: not a class_info_file ({err})") from err


def input_spec(
    processor: dict[str, Any], *, height: int | None = None, width: int | None = None, max_batch: int = 4
) -> InputSpec:
    """The network input of a processor config: size (see the module docstring), RGB, mean/std in
    0..255 pixel units (``mean / rescale_factor`` when the processor rescales first)."""
    size = processor.get("size") or {}
    if height is None or width is None:
        if isinstance(size, dict) and "height" in size and "width" in size:
            default = (int(size["height"]), int(size["width"]))
        else:
            edge = int(size.get("shortest_edge", 384)) if isinstance(size, dict) else int(size)
            default = (edge, round(edge * 4 / 3))
        height = height or _round_up(default[0])
        width = width or _round_up(default[1])
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ExportError(f"input size {height} x {width} must be multiples of {SIZE_MULTIPLE}")
    rescale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    mean = processor.get("image_mean", [0.485, 0.456, 0.406])
    std = processor.get("image_std", [0.229, 0.224, 0.225])
    if not processor.get("do_normalize", True):
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    return InputSpec(
        name=INPUT_NAME,
        height=height,
        width=width,
        color_order="rgb",
        mean=tuple(float(m) / rescale for m in mean),  # type: ignore[arg-type]
        std=tuple(float(s) / rescale for s in std),  # type: ignore[arg-type]
        max_batch=max_batch,
    )


def _round_up(value: int) -> int:
    return max(SIZE_MULTIPLE, -(-value // SIZE_MULTIPLE) * SIZE_MULTIPLE)


def task_tokens(checkpoint: str, config: Any) -> torch.Tensor:
    """OneFormer's task input: the tokens of "the task is panoptic", padded to ``task_seq_len``."""
    transformers = _transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    except (OSError, ValueError) as err:
        raise ExportError(
            f"{checkpoint}: OneFormer needs its tokenizer for the task prompt, and none loads ({err})"
        ) from err
    length = int(getattr(config, "task_seq_len", 77))
    ids = tokenizer("the task is panoptic", padding="max_length", max_length=length, truncation=True)[
        "input_ids"
    ]
    return torch.tensor(ids, dtype=torch.int64)


def fusion_defaults(model_type: str, mode: FusionModeName) -> dict[str, Any]:
    """The spec's fusion thresholds: Mask2Former's rules, or transformers' post-processing."""
    if mode == "transformers":
        params = MaskClassificationParams.transformers(model_type)
    elif mode == "mask2former":
        params = MaskClassificationParams()
    else:
        raise ExportError(f"--fusion-mode {mode!r} must be mask2former or transformers")
    values = asdict(params)
    values.pop("label_divisor")
    return values


# --------------------------------------------------------------------------------------------------
# export


def export_transformers(
    checkpoint: str,
    out: Path,
    *,
    height: int | None = None,
    width: int | None = None,
    max_batch: int = 4,
    label_set: str | None = None,
    thing_ids: Sequence[int] | None = None,
    fusion_mode: FusionModeName = "mask2former",
    exporter: Exporter = "auto",
    name: str | None = None,
) -> ExportReport:
    """Export a transformers checkpoint (folder or hub id) to ``out`` (see the module docstring).

    Raises:
        ExportError: the checkpoint cannot be read, its label split is unknown, the export fails, or
            ONNX Runtime does not reproduce PyTorch.
    """
    if max_batch < 1:
        raise ExportError(f"max batch {max_batch} must be at least 1")
    model, config, processor = load_checkpoint(checkpoint)
    labels, label_source = resolve_label_set(
        config, processor, checkpoint=checkpoint, label_set=label_set, thing_ids=thing_ids
    )
    inp = input_spec(processor, height=height, width=width, max_batch=max_batch)
    tokens = task_tokens(checkpoint, config) if config.model_type == "oneformer" else None
    head = PanopticHead(model, tokens).eval()
    spec = ModelSpec(
        name=name or str(Path(checkpoint).name or checkpoint).replace("/", "_"),
        family="mask-classification",
        input=inp,
        outputs={role: role for role in OUTPUT_NAMES},
        label_set=labels,
        fusion=fusion_defaults(config.model_type, fusion_mode),
        provenance={
            "source": str(checkpoint),
            "model_type": config.model_type,
            "transformers": _transformers().__version__,
            "num_queries": int(getattr(config, "num_queries", 0)),
            "label_source": label_source,
        },
    )
    return export_module(head, spec, out, exporter=exporter)
