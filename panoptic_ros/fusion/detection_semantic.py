"""Detection + semantic panoptic fusion (Panoptic FPN, EfficientPS, YOLO-seg next to a semantic model).

Inputs, per image (D detections after the detector's own NMS, C semantic classes; coordinates in
pixels of the ``H x W`` output, which is the model input in the pipeline):

* ``boxes`` ``[D, 4]`` float (``xyxy`` corners, or ``cxcywh`` center and size), ``scores`` ``[D]``,
  ``classes`` ``[D]`` (class indices of the label set, int or float);
* instance masks in one of three forms (``DetectionSemanticParams.mask_format``):
  ``image`` — ``[D, h, w]`` masks covering the whole image at any resolution (resized bilinearly);
  ``box`` — ``[D, m, m]`` masks covering each box (Mask R-CNN / Panoptic FPN heads), pasted into
  their boxes with bilinear sampling and zeros outside (as detectron2's ``paste_masks_in_image``);
  ``prototypes`` — ``prototypes`` ``[P, h, w]`` and ``coefficients`` ``[D, P]`` (YOLO-seg): mask
  logits ``coefficients @ prototypes``, resized to the image and cut to each box;
  masks are logits (``mask_activation="sigmoid"``) or probabilities (``"none"``); a pixel belongs
  to a mask when the probability is ``>= mask_threshold``;
* ``semantic``: ``[C, h, w]`` logits at any resolution (resized bilinearly), or an ``[h, w]``
  integer map (resized by nearest neighbour).

The fusion is Panoptic FPN's / EfficientPS's heuristic (detectron2's
``combine_semantic_and_instance_outputs``), vectorized:

1. Detections with ``score >= score_threshold`` and a thing class are kept, in order of decreasing
   score (ties: lower index first).
2. They are pasted in that order: a detection is dropped when its mask is empty or when more than
   ``overlap_threshold`` of its mask is already taken by detections pasted before it
   (``taken / area > overlap_threshold``); otherwise it takes its still-free pixels.
3. The remaining pixels get the semantic class where it is a stuff class; a stuff class with fewer
   than ``stuff_area`` such pixels becomes void, and so do free pixels of a thing class.

Step 2 is sequential by nature (each decision depends on the earlier ones). Here it is a fixed
point: starting from "all kept", each round recomputes every detection's taken area from the
previous round's decisions, on the pixels covered by two or more masks only. Decision ``k`` only
depends on detections before it, so round ``r`` settles at least the first ``r`` of them and the
fixed point is exactly the sequential result; the rounds (one device sync each) are as many as the
longest chain of overlapping detections, plus one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, VOID_PANOPTIC
from panoptic_ros.core.params import check_choice, check_int, check_number, from_mapping
from panoptic_ros.core.segments import PixelFrame, histogram, segment_geometry
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import (
    FusionInputError,
    SegmentStats,
    semantic_argmax,
    thing_class_mask,
)

MASK_FORMATS = ("image", "box", "prototypes")
BOX_FORMATS = ("xyxy", "cxcywh")
MASK_ACTIVATIONS = ("sigmoid", "none")


@dataclass(frozen=True)
class DetectionSemanticParams:
    """Thresholds and input conventions of detection + semantic fusion (Panoptic FPN's defaults).

    Attributes:
        score_threshold: detections with a lower score are dropped.
        overlap_threshold: a detection is dropped when more than this fraction of its mask is
            already taken by higher-scoring detections.
        stuff_area: a stuff class needs at least this many free pixels, else they become void.
        mask_threshold: a mask probability at or above it is "in".
        mask_format: ``image``, ``box`` or ``prototypes`` (see the module docstring).
        mask_activation: ``sigmoid`` when masks are logits, ``none`` when probabilities.
        box_format: ``xyxy`` or ``cxcywh``.
        label_divisor: panoptic id = class * label_divisor + instance number.
    """

    score_threshold: float = 0.5
    overlap_threshold: float = 0.5
    stuff_area: int = 4096
    mask_threshold: float = 0.5
    mask_format: str = "image"
    mask_activation: str = "sigmoid"
    box_format: str = "xyxy"
    label_divisor: int = DEFAULT_LABEL_DIVISOR

    def __post_init__(self) -> None:
        for name in ("score_threshold", "overlap_threshold", "mask_threshold"):
            check_number(name, getattr(self, name))
        check_choice("mask_format", self.mask_format, MASK_FORMATS)
        check_choice("mask_activation", self.mask_activation, MASK_ACTIVATIONS)
        check_choice("box_format", self.box_format, BOX_FORMATS)
        check_int("stuff_area", self.stuff_area, minimum=0)
        check_int("label_divisor", self.label_divisor, minimum=1)

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> DetectionSemanticParams:
        """Defaults overridden by the fusion thresholds of a model spec.

        Raises:
            ConfigError: a key is not a field (the message lists the valid ones) or a value is bad.
        """
        return from_mapping(cls, spec, "detection-semantic fusion")


class Detections(NamedTuple):
    """One image's instance-head outputs (D detections, after the detector's NMS).

    Attributes:
        boxes: ``[D, 4]`` float in output pixels (``DetectionSemanticParams.box_format``).
        scores: ``[D]`` float confidence.
        classes: ``[D]`` class indices of the label set (int, or float holding integers).
        masks: ``[D, h, w]`` masks (``image`` / ``box`` formats), or None.
        prototypes: ``[P, h, w]`` mask prototypes (``prototypes`` format), or None.
        coefficients: ``[D, P]`` prototype coefficients (``prototypes`` format), or None.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    masks: torch.Tensor | None = None
    prototypes: torch.Tensor | None = None
    coefficients: torch.Tensor | None = None


class DetectionSemanticOutput(NamedTuple):
    """Result of :func:`fuse_detection_semantic`; every tensor is on the input's device.

    Attributes:
        panoptic: ``[H, W]`` int64 ``class * label_divisor + n`` for the n-th pasted thing of a class
            (in score order), ``class * label_divisor`` for stuff, -1 for void.
        instance: ``[H, W]`` int32 thing segment number ``1..T``, 0 for stuff and void.
        semantic: ``[H, W]`` int64 the semantic map at the output size.
        segments: things first (paste order), then stuff (class order); thing segment ``i`` is
            ``instance == i + 1``. Scores: the detection score; for stuff the mean semantic
            probability of the class over its pixels (1 for an integer semantic map).
        detections: ``[T]`` int64 index (into the D inputs) of each thing segment's detection.
    """

    panoptic: torch.Tensor
    instance: torch.Tensor
    semantic: torch.Tensor
    segments: SegmentStats
    detections: torch.Tensor


def _boxes_xyxy(boxes: torch.Tensor, box_format: str) -> torch.Tensor:
    boxes = boxes.float()
    if box_format == "cxcywh":
        center, size = boxes[:, :2], boxes[:, 2:]
        return torch.cat((center - size / 2, center + size / 2), dim=1)
    return boxes


def _resize(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def _axis_weights(low: torch.Tensor, high: torch.Tensor, length: int, cells: int) -> torch.Tensor:
    """``[D, length, cells]`` bilinear weights that sample a ``cells``-long mask spanning
    ``[low, high)`` (per detection) at the centers of ``length`` output pixels, zero outside."""
    device = low.device
    centers = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    extent = (high - low).clamp(min=1e-6)
    position = (centers[None, :] - low[:, None]) / extent[:, None] * cells - 0.5  # [D, length]
    base = torch.floor(position)
    frac = position - base
    index = torch.arange(cells, device=device, dtype=torch.float32)
    weights = (index[None, None, :] == base[:, :, None]) * (1 - frac)[:, :, None]
    return weights + (index[None, None, :] == base[:, :, None] + 1) * frac[:, :, None]


def instance_masks(
    masks: torch.Tensor | None,
    boxes: torch.Tensor,
    size: tuple[int, int],
    params: DetectionSemanticParams,
    *,
    prototypes: torch.Tensor | None = None,
    coefficients: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[D, H, W]`` bool instance masks at the output size from any of the three mask formats.

    Args:
        masks: ``[D, h, w]`` (``image`` / ``box`` formats), or None for ``prototypes``.
        boxes: ``[D, 4]`` xyxy boxes in output pixels (used by ``box`` and ``prototypes``).
        size: ``(H, W)``.
        params: mask format, activation and threshold.
        prototypes: ``[P, h, w]`` (``prototypes`` format).
        coefficients: ``[D, P]`` (``prototypes`` format).
    """
    height, width = size
    num = boxes.shape[0]
    sigmoid = params.mask_activation == "sigmoid"
    if params.mask_format == "prototypes":
        if prototypes is None or coefficients is None:
            raise FusionInputError(
                "mask_format='prototypes' needs prototypes [P, h, w] and coefficients [D, P]"
            )
        if prototypes.dim() != 3 or coefficients.shape != (num, prototypes.shape[0]):
            raise FusionInputError(
                f"prototypes {tuple(prototypes.shape)} and coefficients {tuple(coefficients.shape)} must be "
                f"[P, h, w] and [{num}, P]"
            )
        logits = (coefficients.float() @ prototypes.float().reshape(prototypes.shape[0], -1)).view(
            num, *prototypes.shape[1:]
        )
        prob = _resize(logits, size)
        prob = prob.sigmoid() if sigmoid else prob
        rows = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
        cols = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
        inside_rows = (rows[None, :] >= boxes[:, 1, None]) & (rows[None, :] < boxes[:, 3, None])
        inside_cols = (cols[None, :] >= boxes[:, 0, None]) & (cols[None, :] < boxes[:, 2, None])
        return (prob >= params.mask_threshold) & inside_rows[:, :, None] & inside_cols[:, None, :]
    if masks is None or masks.dim() != 3 or masks.shape[0] != num:
        raise FusionInputError(
            f"masks must be [{num}, h, w] for mask_format={params.mask_format!r}, got "
            f"{None if masks is None else tuple(masks.shape)}"
        )
    if params.mask_format == "image":
        prob = _resize(masks.float(), size)
        prob = prob.sigmoid() if sigmoid else prob
        return prob >= params.mask_threshold
    # box: probabilities sampled bilinearly inside each box (zero outside), one matrix per axis
    prob = masks.float().sigmoid() if sigmoid else masks.float()
    weights_y = _axis_weights(boxes[:, 1], boxes[:, 3], height, masks.shape[1])  # [D, H, m_h]
    weights_x = _axis_weights(boxes[:, 0], boxes[:, 2], width, masks.shape[2])  # [D, W, m_w]
    pasted = weights_y @ prob @ weights_x.transpose(1, 2)  # [D, H, W]
    return pasted >= params.mask_threshold


def paste_order_keep(masks: torch.Tensor, overlap_threshold: float) -> torch.Tensor:
    """Which of the ``[K, H, W]`` bool masks (already in paste order) the sequential rule keeps.

    Returns ``[K]`` bool: mask k is kept when it is not empty and at most ``overlap_threshold`` of
    its area is covered by the kept masks before it (see the module docstring for the fixed point).
    """
    num = masks.shape[0]
    if num == 0:
        return torch.zeros(0, dtype=torch.bool, device=masks.device)
    flat = masks.reshape(num, -1)
    area = flat.sum(dim=1)
    overlapping = torch.nonzero(flat.sum(dim=0) > 1).squeeze(1)
    shared = flat[:, overlapping]  # [K, P]: only pixels under two or more masks can be "taken"
    kept = area > 0
    for _ in range(num + 1):
        covering = (shared & kept[:, None]).to(torch.int32)
        before = (torch.cumsum(covering, dim=0) - covering) > 0  # a kept mask earlier covers it
        taken = (shared & before).sum(dim=1)
        # detectron2 compares the Python float intersect / area with the threshold
        ratio = taken.double() / area.clamp(min=1).double()
        update = (area > 0) & ~(ratio > overlap_threshold)
        if torch.equal(update, kept):
            break
        kept = update
    return kept


def fuse_detection_semantic(
    detections: Detections,
    semantic: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: DetectionSemanticParams | None = None,
    *,
    output_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    frame: PixelFrame | None = None,
) -> DetectionSemanticOutput:
    """Panoptic FPN / EfficientPS fusion of one image's detections and semantic output.

    Args:
        detections: the instance head's outputs (see :class:`Detections`).
        semantic: ``[C, h, w]`` float logits, or an ``[h, w]`` integer class map.
        thing_classes: thing class indices, or a ``[C]`` bool mask.
        params: thresholds and formats; Panoptic FPN's defaults when None.
        output_size: ``(H, W)``; default: the semantic map's size.
        num_classes: C for an integer semantic map (default: from ``thing_classes`` and the map).
        frame: measure the segments in the camera frame the maps are resampled into (see
            :mod:`panoptic_ros.core.segments`); None: at ``output_size``.

    Returns:
        :class:`DetectionSemanticOutput`.
    """
    params = params if params is not None else DetectionSemanticParams()
    device = semantic.device
    boxes, scores, classes = detections.boxes, detections.scores, detections.classes
    num = boxes.shape[0]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape != (num,) or classes.shape != (num,):
        raise FusionInputError(
            f"boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)} and classes {tuple(classes.shape)} "
            "must be [D, 4], [D] and [D]"
        )
    if num >= params.label_divisor:
        raise ConfigError(f"{num} detections do not fit label_divisor={params.label_divisor}")
    logits = semantic.float() if semantic.is_floating_point() else None
    if logits is not None and semantic.dim() != 3:
        raise FusionInputError(f"semantic logits must be [C, h, w], got {tuple(semantic.shape)}")
    if logits is None and semantic.dim() != 2:
        raise FusionInputError(f"an integer semantic map must be [h, w], got {tuple(semantic.shape)}")
    size = output_size if output_size is not None else (int(semantic.shape[-2]), int(semantic.shape[-1]))
    if logits is not None:
        count = logits.shape[0]
        logits = _resize(logits, size)
        semantic_map = semantic_argmax(logits)
    else:
        semantic_map = semantic.long()
        if tuple(semantic_map.shape) != size:
            resized = F.interpolate(semantic_map[None, None].float(), size=size, mode="nearest")
            semantic_map = resized[0, 0].long()
        count = num_classes if num_classes is not None else _class_count(semantic_map, thing_classes)
    is_thing_class = thing_class_mask(thing_classes, count, device)

    # ---- detections: filter, score order, masks at the output size
    labels = classes.round().long() if classes.is_floating_point() else classes.long()
    valid = (labels >= 0) & (labels < count)
    keep = (scores.float() >= params.score_threshold) & valid
    keep &= is_thing_class[labels.clamp(0, count - 1)]
    candidates = torch.nonzero(keep).squeeze(1)
    order = candidates[torch.argsort(-scores.float()[candidates], stable=True)]
    xyxy = _boxes_xyxy(boxes[order], params.box_format)
    inst = instance_masks(
        detections.masks[order] if detections.masks is not None else None,
        xyxy,
        size,
        params,
        prototypes=detections.prototypes,
        coefficients=detections.coefficients[order] if detections.coefficients is not None else None,
    )
    kept = paste_order_keep(inst, params.overlap_threshold)
    pasted_order = order[kept]
    pasted = inst[kept]
    num_things = pasted_order.numel()
    index = torch.arange(num_things, device=device, dtype=torch.int32)[:, None, None]
    sentinel = torch.iinfo(torch.int32).max
    owner = torch.where(pasted, index, sentinel).amin(dim=0) if num_things else None  # first kept mask

    # ---- stuff on the free pixels
    free = owner == sentinel if owner is not None else torch.ones(size, dtype=torch.bool, device=device)
    stuff_pixel = free & ~is_thing_class[semantic_map]
    stuff_area = histogram(torch.where(stuff_pixel, semantic_map, count).reshape(-1), count + 1)[:count]
    stuff_kept = ~is_thing_class & (stuff_area >= params.stuff_area) & (stuff_area > 0)
    stuff_classes = torch.nonzero(stuff_kept).squeeze(1)

    # ---- segments: things (paste order), then stuff (class order)
    thing_labels = labels[pasted_order]
    one_hot = F.one_hot(thing_labels, count).long() if num_things else torch.zeros(0, count, device=device)
    number = torch.cumsum(one_hot, 0).gather(1, thing_labels[:, None]).squeeze(1)  # n-th of its class
    divisor = params.label_divisor
    segment_ids = torch.cat((thing_labels * divisor + number, stuff_classes * divisor))
    segment_classes = torch.cat((thing_labels, stuff_classes))
    num_segments = segment_ids.numel()
    stuff_slot = torch.full((count + 1,), num_segments, dtype=torch.int64, device=device)
    stuff_slot[stuff_classes] = num_things + torch.arange(stuff_classes.numel(), device=device)
    segment_of_pixel = torch.where(stuff_pixel, stuff_slot[semantic_map], num_segments)
    if owner is not None:
        segment_of_pixel = torch.where(free, segment_of_pixel, owner.long())
    void = torch.full((1,), VOID_PANOPTIC, dtype=torch.int64, device=device)
    panoptic = torch.cat((segment_ids, void))[segment_of_pixel]
    instance = torch.where(segment_of_pixel < num_things, segment_of_pixel + 1, 0).to(torch.int32)
    geometry = segment_geometry(segment_of_pixel, num_segments, frame)

    thing_scores = scores.float()[pasted_order]
    if logits is not None and stuff_classes.numel():
        log_prob = logits.gather(0, semantic_map[None])[0] - torch.logsumexp(logits, dim=0)
        sums = torch.zeros(num_segments + 1, dtype=torch.float64, device=device)
        sums.index_add_(0, segment_of_pixel.reshape(-1), log_prob.exp().double().reshape(-1))
        own_areas = geometry.areas if frame is None else histogram(segment_of_pixel, num_segments + 1)
        stuff_scores = (
            sums[num_things:num_segments] / own_areas[num_things:num_segments].clamp(min=1)
        ).float()
    else:
        stuff_scores = torch.ones(stuff_classes.numel(), device=device)
    segments = SegmentStats(
        ids=segment_ids,
        classes=segment_classes,
        is_thing=torch.arange(num_segments, device=device) < num_things,
        areas=geometry.areas,
        bboxes=geometry.bboxes,
        centroids=geometry.centroids,
        scores=torch.cat((thing_scores, stuff_scores)),
    )
    return DetectionSemanticOutput(
        panoptic=panoptic,
        instance=instance,
        semantic=semantic_map,
        segments=segments,
        detections=pasted_order,
    )


def _class_count(semantic_map: torch.Tensor, thing_classes: Sequence[int] | torch.Tensor) -> int:
    if isinstance(thing_classes, torch.Tensor) and thing_classes.dtype == torch.bool:
        return int(thing_classes.numel())
    things = [int(c) for c in torch.as_tensor(thing_classes).reshape(-1).tolist()]
    largest = int(semantic_map.max()) if semantic_map.numel() else -1
    return max([largest, *things]) + 1
