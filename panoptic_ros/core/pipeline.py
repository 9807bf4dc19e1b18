"""The per-frame pipeline without ROS: frames in, panoptic maps and segment tables out.

``frames -> preprocess (device) -> backend.infer -> fusion (device) -> category ids -> source size``.
Everything stays on the inference device; callers download only what they publish or write. Each
stage is timed (:class:`StageTimes`), synchronizing the device only when timing is asked for.

The fusion is chosen by the spec's decoder family (:data:`FAMILY_FUSIONS`): one small strategy per
family maps the named network outputs of one frame to a :class:`FusedFrame` (panoptic ids over the
model's class indices, at the model input size, plus the segment list). A model whose spec names
``companions`` runs them on the same frames and hands their outputs to the fusion under their roles,
brought into the main model's input frame.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.backends.base import Backend
from panoptic_ros.backends.registry import create_backend, model_spec
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.preprocess import Preprocessor, ResizeMode, Transform, restore
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import CenterOffsetParams, SegmentStats, fuse_center_offset
from panoptic_ros.fusion.detection_semantic import (
    Detections,
    DetectionSemanticParams,
    fuse_detection_semantic,
)
from panoptic_ros.fusion.mask_classification import MaskClassificationParams, fuse_mask_classification
from panoptic_ros.fusion.segments import segment_geometry
from panoptic_ros.models.spec import ModelSpec


class SegmentTable(NamedTuple):
    """One row per segment of a frame (all on the device).

    ``ids`` [S] int64 panoptic id (``category_id * label_divisor + n``; ``n = 0`` for stuff),
    ``category_ids`` [S], ``is_thing`` [S] bool, ``areas`` [S], ``bboxes`` [S, 4] (x, y, width,
    height), ``centroids`` [S, 2] (x, y), ``scores`` [S] float32.
    """

    ids: torch.Tensor
    category_ids: torch.Tensor
    is_thing: torch.Tensor
    areas: torch.Tensor
    bboxes: torch.Tensor
    centroids: torch.Tensor
    scores: torch.Tensor


class FrameOutput(NamedTuple):
    """A frame's panoptic result at the source frame's resolution, on the device.

    ``panoptic`` [H, W] int64 ``category_id * label_divisor + n`` (-1 void); ``semantic`` [H, W]
    int64 category id of each pixel's segment (the label set's void value where void);
    ``instance`` [H, W] int32 thing number ``n`` (0 for stuff and void); ``segments`` its table.
    """

    panoptic: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    segments: SegmentTable
    transform: Transform


@dataclass
class StageTimes:
    """Accumulated wall time per stage (seconds) and the number of frames."""

    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def per_frame_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(self.frames, 1) for k, v in self.seconds.items()}


#: Largest panoptic id relabeled through a lookup table (else sorted): 4 Mi entries of int64.
_MAX_LUT_ID = 1 << 22


def _compact_ids(panoptic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sorted ids present in an ``[H, W]`` panoptic map (``>= 0``) and the map of their indices
    (``S`` for void). Ids are ``category * divisor + n``, small enough for a counting pass and a
    lookup table, which is O(H W) where ``torch.unique`` sorts every pixel."""
    flat = panoptic.reshape(-1)
    top = int(flat.max()) if flat.numel() else -1
    if top < _MAX_LUT_ID:
        counts = torch.bincount(flat.clamp(min=-1) + 1, minlength=top + 2)[1:]
        ids = torch.nonzero(counts).squeeze(1)
        n = ids.numel()
        lut = torch.full((top + 2,), n, dtype=torch.int64, device=panoptic.device)
        lut[ids + 1] = torch.arange(n, device=panoptic.device)
        return ids, lut[flat.clamp(min=-1) + 1].view(panoptic.shape)
    valid = flat >= 0
    ids, inverse = torch.unique(flat[valid], return_inverse=True)
    index = torch.full_like(flat, ids.numel())
    index[valid] = inverse
    return ids, index.view(panoptic.shape)


def segment_table(
    panoptic: torch.Tensor,
    label_divisor: int,
    is_thing_lut: torch.Tensor,
    *,
    score_ids: torch.Tensor | None = None,
    score_values: torch.Tensor | None = None,
) -> SegmentTable:
    """Area, box, centroid of every segment of an ``H x W`` panoptic map, by scatter on its device.

    Scores come from ``score_ids``/``score_values`` (sorted panoptic ids and their scores) when given,
    else 1.0.
    """
    device = panoptic.device

    ids, segment_of_pixel = _compact_ids(panoptic)
    n = ids.numel()
    geometry = segment_geometry(segment_of_pixel, n)
    areas = geometry.areas
    categories = torch.div(ids, label_divisor, rounding_mode="floor")
    is_thing = is_thing_lut[categories.clamp(max=is_thing_lut.numel() - 1)] & (ids % label_divisor > 0)
    out_scores = torch.ones(n, device=device)
    if score_ids is not None and score_values is not None and score_ids.numel():
        pos = torch.searchsorted(score_ids, ids).clamp(max=score_ids.numel() - 1)
        found = score_ids[pos] == ids
        out_scores = torch.where(found, score_values[pos], out_scores)
    return SegmentTable(
        ids=ids,
        category_ids=categories,
        is_thing=is_thing,
        areas=areas,
        bboxes=geometry.bboxes,
        centroids=geometry.centroids.float(),
        scores=out_scores.float(),
    )


class FusedFrame(NamedTuple):
    """What every family's fusion gives the pipeline for one frame (at the model input size).

    ``panoptic`` [H, W] int64 ``class_index * label_divisor + n`` (model class indices), -1 void;
    ``segments`` its segment list (ids in the same numbering, and scores).
    """

    panoptic: torch.Tensor
    segments: SegmentStats


class FamilyFusion(ABC):
    """The fusion of one decoder family: which output roles it reads and how it fuses a frame.

    Subclasses set :attr:`family`, :attr:`params_type` (a frozen dataclass with ``from_spec`` and
    ``label_divisor``), :attr:`required` (roles that must be present) and :attr:`alternatives`
    (role groups of which one must be complete), and implement :meth:`fuse`.
    """

    family: ClassVar[str]
    params_type: ClassVar[type[Any]]
    required: ClassVar[tuple[str, ...]] = ()
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(self, spec: ModelSpec, device: torch.device) -> None:
        self.spec = spec
        self.size = (spec.input.height, spec.input.width)
        self.num_classes = len(spec.label_set)
        self.thing_classes = tuple(i for i, c in enumerate(spec.label_set.categories) if c.is_thing)

    def check_roles(self, roles: Sequence[str], model: str) -> None:
        """Raise :class:`ConfigError` naming the roles the model (with its companions) lacks."""
        missing = [role for role in self.required if role not in roles]
        if self.alternatives and not any(all(r in roles for r in group) for group in self.alternatives):
            missing.append(" or ".join("+".join(group) for group in self.alternatives))
        if missing:
            raise ConfigError(
                f"{model}: the {self.family} family needs output roles {missing}; map them in the "
                "spec's 'outputs' (role -> output name) or provide them with 'companions' "
                "(see docs/models.md)"
            )

    @abstractmethod
    def fuse(self, outputs: Mapping[str, torch.Tensor], index: int, params: Any) -> FusedFrame:
        """Fuse frame ``index`` of the batched outputs (role -> ``[N, ...]`` tensor)."""


class CenterOffsetFusion(FamilyFusion):
    family = "center-offset"
    params_type = CenterOffsetParams
    required = ("semantic", "center", "offset")

    def fuse(self, outputs: Mapping[str, torch.Tensor], index: int, params: Any) -> FusedFrame:
        fused = fuse_center_offset(
            outputs["semantic"][index],
            outputs["center"][index],
            outputs["offset"][index],
            self.thing_classes,
            params,
            num_classes=self.num_classes,
        )
        return FusedFrame(fused.panoptic, fused.segments)


class MaskClassificationFusion(FamilyFusion):
    family = "mask-classification"
    params_type = MaskClassificationParams
    required = ("class_logits", "mask_logits")

    def fuse(self, outputs: Mapping[str, torch.Tensor], index: int, params: Any) -> FusedFrame:
        class_logits = outputs["class_logits"][index]
        if class_logits.shape[-1] != self.num_classes + 1:
            raise ConfigError(
                f"class logits have {class_logits.shape[-1]} columns; the label set has {self.num_classes} "
                "classes plus 'no object'"
            )
        fused = fuse_mask_classification(
            class_logits, outputs["mask_logits"][index], self.thing_classes, params, output_size=self.size
        )
        return FusedFrame(fused.panoptic, fused.segments)


class DetectionSemanticFusion(FamilyFusion):
    family = "detection-semantic"
    params_type = DetectionSemanticParams
    required = ("boxes", "scores", "classes", "semantic")
    alternatives = (("masks",), ("prototypes", "coefficients"))

    def fuse(self, outputs: Mapping[str, torch.Tensor], index: int, params: Any) -> FusedFrame:
        def frame(role: str) -> torch.Tensor | None:
            return outputs[role][index] if role in outputs else None

        detections = Detections(
            boxes=outputs["boxes"][index],
            scores=outputs["scores"][index],
            classes=outputs["classes"][index],
            masks=frame("masks"),
            prototypes=frame("prototypes"),
            coefficients=frame("coefficients"),
        )
        fused = fuse_detection_semantic(
            detections,
            outputs["semantic"][index],
            self.thing_classes,
            params,
            output_size=self.size,
            num_classes=self.num_classes,
        )
        return FusedFrame(fused.panoptic, fused.segments)


#: decoder family -> its fusion strategy
FAMILY_FUSIONS: dict[str, type[FamilyFusion]] = {
    cls.family: cls for cls in (CenterOffsetFusion, MaskClassificationFusion, DetectionSemanticFusion)
}


@dataclass
class _Companion:
    """A second network on the same frames: its backend, preprocessing and the roles it provides."""

    spec: ModelSpec
    backend: Backend
    preprocess: Preprocessor
    roles: dict[str, str]  # role -> its output name


def reframe(
    tensor: torch.Tensor,
    source: Transform,
    source_size: tuple[int, int],
    target: Transform,
    target_size: tuple[int, int],
) -> torch.Tensor:
    """Bring a frame's output (``[C, h, w]`` float or ``[h, w]`` integer), computed on an input of
    ``source_size`` where the frame sat at ``source``, into the frame of an input of ``target_size``
    where it sits at ``target``, at that input's resolution (bilinear for floats, nearest for
    integers; outside the frame: zeros).
    """
    integer = not tensor.is_floating_point()
    image = tensor.float()[None] if tensor.dim() == 3 else tensor.float()[None, None]
    scale_y = image.shape[-2] / source_size[0]
    scale_x = image.shape[-1] / source_size[1]
    top, left = round(source.top * scale_y), round(source.left * scale_x)
    height = max(round(source.height * scale_y), 1)
    width = max(round(source.width * scale_x), 1)
    content = image[..., top : top + height, left : left + width]
    mode = "nearest" if integer else "bilinear"
    extra = {} if integer else {"align_corners": False}
    content = F.interpolate(content, size=(target.height, target.width), mode=mode, **extra)
    out = content.new_zeros((*content.shape[:-2], *target_size))
    out[..., target.top : target.top + target.height, target.left : target.left + target.width] = content
    out = out[0] if tensor.dim() == 3 else out[0, 0]
    return out.to(tensor.dtype) if integer else out


class PanopticPipeline:
    """Loads a model (spec + backend) and turns batches of frames into :class:`FrameOutput`.

    Args:
        model: an ONNX model with a spec (or a sidecar).
        backend: ``auto``, ``onnxruntime``, ``torch`` (``tensorrt`` where installed).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        resize: how frames are fitted to the model input (``resize`` stretches, ``letterbox`` pads).
        fusion: overrides of the spec's fusion thresholds.
        timing: synchronize and time each stage (see :attr:`times`).
        backend_options: keyword options of the backend (see ``create_backend``).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        backend: str = "auto",
        device: str = "auto",
        resize: ResizeMode = "resize",
        fusion: Mapping[str, Any] | None = None,
        timing: bool = False,
        backend_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model_path = Path(model)
        self.spec: ModelSpec = model_spec(self.model_path)
        fusion_type = FAMILY_FUSIONS.get(self.spec.family)
        if fusion_type is None:
            raise ConfigError(
                f"{self.model_path.name}: no fusion for the {self.spec.family!r} family; "
                f"supported: {', '.join(sorted(FAMILY_FUSIONS))}"
            )
        self.params = fusion_type.params_type.from_spec({**self.spec.fusion, **(fusion or {})})
        self.backend = create_backend(
            backend, self.model_path, device=device, spec=self.spec, options=backend_options
        )
        self.device = self.backend.device
        self.fusion: FamilyFusion = fusion_type(self.spec, self.device)
        self.label_set: LabelSet = self.spec.label_set
        self.preprocess = Preprocessor(self.spec.input, self.device, mode=resize)
        self._companions: list[_Companion] = []
        try:
            for role, relative in self.spec.companions.items():
                self._companions.append(
                    self._companion(role, relative, backend=backend, resize=resize, options=backend_options)
                )
            roles = [*self.spec.outputs, *(r for c in self._companions for r in c.roles)]
            self.fusion.check_roles(roles, self.model_path.name)
        except BaseException:
            self.close()
            raise
        self._class_to_id = torch.as_tensor(self.label_set.class_to_id, device=self.device)
        self._is_thing_lut = torch.as_tensor(self.label_set.is_thing_lut, device=self.device)
        self._void_semantic = self.label_set.void_semantic
        self.timing = timing
        self.times = StageTimes()

    def _companion(
        self, role: str, relative: str, *, backend: str, resize: ResizeMode, options: Mapping[str, Any] | None
    ) -> _Companion:
        path = self.model_path.parent / relative
        spec = model_spec(path)
        if role not in spec.outputs:
            raise ConfigError(
                f"{self.model_path.name}: companion {relative} for role {role!r} has no output for that role "
                f"in its spec (it maps {sorted(spec.outputs)})"
            )
        companion_backend = create_backend(backend, path, device=str(self.device), spec=spec, options=options)
        return _Companion(
            spec=spec,
            backend=companion_backend,
            preprocess=Preprocessor(spec.input, self.device, mode=resize),
            roles={role: spec.outputs[role]},
        )

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        if not self.timing:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.add(name, time.perf_counter() - start)

    def __call__(
        self, frames: Sequence[np.ndarray], *, order: Literal["rgb", "bgr"] = "rgb"
    ) -> list[FrameOutput]:
        """Process frames (``H x W x 3`` uint8 in ``order``, any sizes) as one batch."""
        outputs: list[FrameOutput] = []
        max_batch = self.spec.input.max_batch
        for start in range(0, len(frames), max_batch):
            outputs.extend(self._batch(frames[start : start + max_batch], order))
        return outputs

    def _batch(self, frames: Sequence[np.ndarray], order: Literal["rgb", "bgr"]) -> list[FrameOutput]:
        with self._stage("preprocess"):
            batch, transforms = self.preprocess(frames, order=order)
        with self._stage("inference"):
            out = self.backend.infer({self.spec.input.name: batch})
            roles = {role: out[name] for role, name in self.spec.outputs.items()}
            for companion in self._companions:
                roles.update(self._run_companion(companion, frames, order, transforms))
        results = []
        for i, transform in enumerate(transforms):
            with self._stage("fusion"):
                fused = self.fusion.fuse(roles, i, self.params)
            with self._stage("postprocess"):
                results.append(self._to_categories(fused, transform))
        self.times.frames += len(frames)
        return results

    def _run_companion(
        self,
        companion: _Companion,
        frames: Sequence[np.ndarray],
        order: Literal["rgb", "bgr"],
        transforms: Sequence[Transform],
    ) -> dict[str, torch.Tensor]:
        """The companion's role outputs for the batch, in the main model's input frame."""
        batch, own = companion.preprocess(frames, order=order)
        out = companion.backend.infer({companion.spec.input.name: batch})
        source_size = (companion.spec.input.height, companion.spec.input.width)
        target_size = (self.spec.input.height, self.spec.input.width)
        result = {}
        for role, name in companion.roles.items():
            tensor = out[name]
            if own == list(transforms) and source_size == target_size:
                result[role] = tensor
                continue
            result[role] = torch.stack(
                [
                    reframe(tensor[i], own[i], source_size, transforms[i], target_size)
                    for i in range(len(frames))
                ]
            )
        return result

    def _to_categories(self, fused: FusedFrame, transform: Transform) -> FrameOutput:
        div = self.params.label_divisor
        void = fused.panoptic < 0
        classes = torch.div(fused.panoptic.clamp(min=0), div, rounding_mode="floor")
        panoptic = torch.where(void, -1, self._class_to_id[classes] * div + fused.panoptic.clamp(min=0) % div)
        panoptic = restore(panoptic, transform)
        seg = fused.segments
        seg_classes = torch.div(seg.ids.clamp(min=0), div, rounding_mode="floor")
        score_ids = self._class_to_id[seg_classes] * div + seg.ids % div
        order = torch.argsort(score_ids)
        table = segment_table(
            panoptic, div, self._is_thing_lut, score_ids=score_ids[order], score_values=seg.scores[order]
        )
        void = panoptic < 0
        semantic = torch.where(void, self._void_semantic, torch.div(panoptic, div, rounding_mode="floor"))
        instance = torch.where(void, 0, panoptic % div).to(torch.int32)
        return FrameOutput(
            panoptic=panoptic, semantic=semantic, instance=instance, segments=table, transform=transform
        )

    def close(self) -> None:
        for companion in getattr(self, "_companions", []):
            companion.backend.close()
        if hasattr(self, "backend"):
            self.backend.close()

    def __enter__(self) -> PanopticPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
