"""The decoder families: which network outputs each one reads, its thresholds, and how it fuses a frame.

One strategy class per family (DESIGN.md, "decoder families") is the single place that declares the
family's output roles (:attr:`FamilyFusion.required`, :attr:`FamilyFusion.alternatives`), its
threshold record (:attr:`FamilyFusion.params_type`) and the threshold that stands for "confidence" in
``vision_msgs/LabelInfo`` (:meth:`FamilyFusion.score_threshold`). The model spec checks a family's
name against :data:`FAMILIES`; the pipeline checks a model's roles with :meth:`FamilyFusion.check_roles`.

A strategy maps the named, batched network outputs of one frame to a :class:`FusedFrame`: panoptic
ids over the model's class indices at the model input size, and the segment list measured in the
camera frame the map is resampled into (:class:`~panoptic_ros.core.segments.PixelFrame`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import CenterOffsetParams, SegmentStats, fuse_center_offset
from panoptic_ros.fusion.center_offset_fixed import DEFAULT_MAX_CENTERS, fuse_center_offset_fixed
from panoptic_ros.fusion.detection_semantic import (
    Detections,
    DetectionSemanticParams,
    fuse_detection_semantic,
)
from panoptic_ros.fusion.mask_classification import MaskClassificationParams, fuse_mask_classification


class FusedFrame(NamedTuple):
    """What every family's fusion gives for one frame.

    ``panoptic`` [h, w] int64 ``class_index * label_divisor + n`` (model class indices) at the model
    input size, -1 void; ``instance`` [h, w] int32 ``k + 1`` on the pixels of the thing in segment row
    ``k`` (things come first, so thing numbers are unique within the frame), 0 elsewhere;
    ``segments`` the segment list (ids in the panoptic numbering, scores, and the geometry in the
    camera frame; with fixed shapes, padding rows of area 0 follow the segments); ``dropped`` with
    fixed shapes, a ``[]`` int64 count of centers left out for lack of slots, else None.
    """

    panoptic: torch.Tensor
    instance: torch.Tensor
    segments: SegmentStats
    dropped: torch.Tensor | None = None


class FamilyFusion(ABC):
    """The fusion of one decoder family.

    Subclasses set :attr:`family`, :attr:`params_type` (a frozen dataclass with ``from_spec`` and
    ``label_divisor``), :attr:`required` (roles that must be present), :attr:`alternatives` (role
    groups of which one must be complete) and :attr:`confidence` (the threshold field reported as
    LabelInfo's threshold), and implement :meth:`fuse`.

    A family that can fuse with fixed shapes (no device sync, shapes independent of the data: what a
    CUDA graph needs) sets :attr:`has_fixed_shapes`; :attr:`fixed_shapes` asks for it.

    Args:
        label_set: the model's label set (class index order).
        size: ``(height, width)`` of the model input, the size fused maps come out at.
        fixed_shapes: fuse with fixed shapes where the family can (others ignore it).
        device: where the outputs will be fused (:meth:`prepare` readies it; CPU when None).
    """

    family: ClassVar[str]
    params_type: ClassVar[type[Any]]
    required: ClassVar[tuple[str, ...]] = ()
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = ()
    confidence: ClassVar[str]
    has_fixed_shapes: ClassVar[bool] = False

    def __init__(
        self,
        label_set: LabelSet,
        size: tuple[int, int],
        *,
        fixed_shapes: bool = False,
        device: torch.device | None = None,
    ) -> None:
        self.size = size
        self.fixed_shapes = fixed_shapes and self.has_fixed_shapes
        self.num_classes = len(label_set)
        self.thing_classes = tuple(i for i, c in enumerate(label_set.categories) if c.is_thing)
        self.prepare(torch.device("cpu") if device is None else device)

    def prepare(self, device: torch.device) -> None:
        """Make ready what fusing on ``device`` needs before the first frame (nothing by default)."""
        del device

    @classmethod
    def check_roles(cls, roles: Sequence[str], model: str) -> None:
        """Raise :class:`ConfigError` naming the roles the model (with its companions) lacks."""
        missing = [role for role in cls.required if role not in roles]
        if cls.alternatives and not any(all(r in roles for r in group) for group in cls.alternatives):
            missing.append(" or ".join("+".join(group) for group in cls.alternatives))
        if missing:
            raise ConfigError(
                f"{model}: the {cls.family} family needs output roles {missing}; map them in the "
                "spec's 'outputs' (role -> output name) or provide them with 'companions' "
                "(see docs/models.md)"
            )

    @classmethod
    def params(cls, defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Any:
        """The validated thresholds: the spec's ``defaults`` overridden by ``overrides``. Keys that are
        not fields of this family's record (another family's thresholds, still declared on a node that
        served another model before) are ignored in ``overrides``.

        Raises:
            ConfigError: the record refuses a value (the message names it).
        """
        known = {f.name for f in dataclasses.fields(cls.params_type)}
        mine = {k: v for k, v in (overrides or {}).items() if k in known}
        return cls.params_type.from_spec({**defaults, **mine})

    @classmethod
    def score_threshold(cls, params: Any) -> float:
        """The confidence threshold in force, as ``vision_msgs/LabelInfo.threshold`` reports it."""
        return float(getattr(params, cls.confidence))

    @abstractmethod
    def fuse(
        self, outputs: Mapping[str, torch.Tensor], index: int, params: Any, frame: PixelFrame | None
    ) -> FusedFrame:
        """Fuse frame ``index`` of the batched outputs (role -> ``[N, ...]`` tensor)."""


class CenterOffsetFusion(FamilyFusion):
    """Panoptic-DeepLab: semantic logits, center heatmap and center offsets."""

    family = "center-offset"
    params_type = CenterOffsetParams
    required = ("semantic", "center", "offset")
    confidence = "center_threshold"
    has_fixed_shapes = True
    #: center slots of the fixed-shape fusion when ``top_k`` is None
    max_centers = DEFAULT_MAX_CENTERS

    def prepare(self, device: torch.device) -> None:
        """On the CPU, compile the fusion's loops (or load them from numba's cache) now, not on the
        first frame (:mod:`panoptic_ros.fusion.center_offset_cpu`)."""
        if device.type == "cpu" and not self.fixed_shapes:
            from panoptic_ros.fusion.center_offset_cpu import compile_kernels

            compile_kernels()

    def fuse(
        self, outputs: Mapping[str, torch.Tensor], index: int, params: Any, frame: PixelFrame | None
    ) -> FusedFrame:
        frame_outputs = (outputs["semantic"][index], outputs["center"][index], outputs["offset"][index])
        if self.fixed_shapes:
            fixed = fuse_center_offset_fixed(
                *frame_outputs,
                self.thing_classes,
                params,
                num_classes=self.num_classes,
                max_centers=self.max_centers,
                frame=frame,
            )
            return FusedFrame(fixed.panoptic, fixed.instance, fixed.segments, fixed.centers.dropped)
        fused = fuse_center_offset(
            *frame_outputs, self.thing_classes, params, num_classes=self.num_classes, frame=frame
        )
        return FusedFrame(fused.panoptic, fused.instance, fused.segments)


class MaskClassificationFusion(FamilyFusion):
    """MaskFormer, Mask2Former, OneFormer: class logits and mask logits per query."""

    family = "mask-classification"
    params_type = MaskClassificationParams
    required = ("class_logits", "mask_logits")
    confidence = "object_threshold"

    def fuse(
        self, outputs: Mapping[str, torch.Tensor], index: int, params: Any, frame: PixelFrame | None
    ) -> FusedFrame:
        class_logits = outputs["class_logits"][index]
        if class_logits.shape[-1] != self.num_classes + 1:
            raise ConfigError(
                f"class logits have {class_logits.shape[-1]} columns; the label set has {self.num_classes} "
                "classes plus 'no object'"
            )
        fused = fuse_mask_classification(
            class_logits,
            outputs["mask_logits"][index],
            self.thing_classes,
            params,
            output_size=self.size,
            frame=frame,
        )
        return FusedFrame(fused.panoptic, fused.instance, fused.segments)


class DetectionSemanticFusion(FamilyFusion):
    """Panoptic FPN, EfficientPS, an instance model next to a semantic model: boxes, scores, classes,
    masks (or YOLO prototypes and coefficients) and semantic logits."""

    family = "detection-semantic"
    params_type = DetectionSemanticParams
    required = ("boxes", "scores", "classes", "semantic")
    alternatives = (("masks",), ("prototypes", "coefficients"))
    confidence = "score_threshold"

    def fuse(
        self, outputs: Mapping[str, torch.Tensor], index: int, params: Any, frame: PixelFrame | None
    ) -> FusedFrame:
        def frame_of(role: str) -> torch.Tensor | None:
            return outputs[role][index] if role in outputs else None

        detections = Detections(
            boxes=outputs["boxes"][index],
            scores=outputs["scores"][index],
            classes=outputs["classes"][index],
            masks=frame_of("masks"),
            prototypes=frame_of("prototypes"),
            coefficients=frame_of("coefficients"),
        )
        fused = fuse_detection_semantic(
            detections,
            outputs["semantic"][index],
            self.thing_classes,
            params,
            output_size=self.size,
            num_classes=self.num_classes,
            frame=frame,
        )
        return FusedFrame(fused.panoptic, fused.instance, fused.segments)


#: decoder family name -> its fusion strategy
FAMILIES: dict[str, type[FamilyFusion]] = {
    cls.family: cls for cls in (CenterOffsetFusion, MaskClassificationFusion, DetectionSemanticFusion)
}


def family_fusion(family: str, model: str = "the model") -> type[FamilyFusion]:
    """The strategy of a decoder family.

    Raises:
        ConfigError: no fusion for that family (the message lists the supported ones).
    """
    fusion = FAMILIES.get(family)
    if fusion is None:
        raise ConfigError(
            f"{model}: no fusion for the {family!r} family; supported: {', '.join(sorted(FAMILIES))}"
        )
    return fusion
