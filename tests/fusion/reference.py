"""A deliberately straightforward center-offset fusion: the test oracle and the benchmark baseline.

It follows Panoptic-DeepLab's published post-processing step by step, the way the widely used
PyTorch code does it: the distance from every pixel to every center at once (``K x H*W``), a Python
loop over instances with ``torch.mode`` and boolean masks, a loop over stuff classes, and a loop
over segments for the statistics. It is slow and memory hungry on purpose; use
:mod:`panoptic_ros.fusion.center_offset` for real work.

:func:`synthetic_center_offset_outputs` builds realistic network outputs (Gaussian center blobs,
offsets toward the centers plus noise, noisy semantic logits with stuff and thing regions) for the
tests and the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, VOID_PANOPTIC

CITYSCAPES_THING_CLASSES: tuple[int, ...] = (11, 12, 13, 14, 15, 16, 17, 18)
"""Thing train ids of the 19 Cityscapes classes (person, rider, car, truck, bus, train, motorcycle,
bicycle); 0-10 are stuff."""


class ReferenceOutput(NamedTuple):
    """Result of :func:`reference_fusion`.

    Attributes:
        semantic: ``[H, W]`` int64 semantic argmax.
        panoptic: ``[H, W]`` int64 panoptic ids, -1 void.
        instance: ``[H, W]`` int64 ``center index + 1`` on thing pixels, 0 elsewhere (before merging).
        centers: ``[K, 2]`` int64 ``(y, x)``.
    """

    semantic: torch.Tensor
    panoptic: torch.Tensor
    instance: torch.Tensor
    centers: torch.Tensor


class ReferenceSegment(NamedTuple):
    """Statistics of one segment as plain Python values."""

    id: int
    category: int
    is_thing: bool
    area: int
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    score: float


def reference_find_centers(
    center_heatmap: torch.Tensor,
    *,
    center_threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
) -> torch.Tensor:
    """``[1, H, W]`` or ``[H, W]`` heatmap -> ``[K, 2]`` int64 ``(y, x)`` centers, row-major."""
    heat = center_heatmap.reshape(1, 1, *center_heatmap.shape[-2:])
    heat = F.threshold(heat, center_threshold, -1.0)
    pooled = F.max_pool2d(heat, kernel_size=nms_kernel, stride=1, padding=nms_kernel // 2)
    heat[heat != pooled] = -1
    heat = heat.squeeze()
    if heat.dim() != 2:
        heat = heat.reshape(center_heatmap.shape[-2:])
    if top_k is None:
        return torch.nonzero(heat > 0)
    flat = torch.flatten(heat)
    scores, _ = torch.topk(flat, min(top_k, flat.numel()))
    return torch.nonzero(heat > scores[-1].clamp(min=0))


def reference_group_pixels(centers: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``[K, 2]`` centers and ``[2, H, W]`` offsets -> ``[H, W]`` int64 nearest center index + 1,
    computed for every pixel against every center at once."""
    height, width = offsets.shape[1:]
    y_coord = torch.arange(height, dtype=torch.float32, device=offsets.device)[:, None].expand(height, width)
    x_coord = torch.arange(width, dtype=torch.float32, device=offsets.device)[None, :].expand(height, width)
    coord = torch.stack((y_coord, x_coord))
    location = (coord + offsets.float()).reshape(2, height * width).T[None]  # [1, HW, 2]
    distance = torch.norm(centers[:, None, :] - location, dim=-1)  # [K, HW]
    return torch.argmin(distance, dim=0).reshape(height, width) + 1


def reference_merge(
    semantic: torch.Tensor,
    instance: torch.Tensor,
    thing_classes: Sequence[int],
    *,
    stuff_area: int = 2048,
    label_divisor: int = DEFAULT_LABEL_DIVISOR,
) -> torch.Tensor:
    """Panoptic map from a semantic map and a raw instance map, one instance and one class at a time."""
    panoptic = torch.full_like(semantic, VOID_PANOPTIC)
    thing_seg = torch.zeros_like(semantic, dtype=torch.bool)
    for thing_class in thing_classes:
        thing_seg |= semantic == thing_class
    is_thing = (instance > 0) & thing_seg
    numbers: dict[int, int] = {}
    for instance_id in torch.unique(instance).tolist():
        if instance_id == 0:
            continue
        mask = (instance == instance_id) & is_thing
        if torch.nonzero(mask).size(0) == 0:
            continue
        class_id = int(torch.mode(semantic[mask].view(-1)).values)
        numbers[class_id] = numbers.get(class_id, 0) + 1
        panoptic[mask] = class_id * label_divisor + numbers[class_id]
    for class_id in torch.unique(semantic).tolist():
        if class_id in thing_classes:
            continue
        mask = (semantic == class_id) & (instance == 0)
        if torch.nonzero(mask).size(0) >= stuff_area:
            panoptic[mask] = class_id * label_divisor
    return panoptic


def reference_fusion(
    semantic: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_classes: Sequence[int],
    *,
    center_threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
    stuff_area: int = 2048,
    label_divisor: int = DEFAULT_LABEL_DIVISOR,
) -> ReferenceOutput:
    """The whole published post-processing: ``semantic`` is ``[C, H, W]`` logits or ``[H, W]`` ids."""
    semantic_map = semantic.argmax(dim=0) if semantic.is_floating_point() else semantic.long()
    thing_seg = torch.zeros_like(semantic_map)
    for thing_class in thing_classes:
        thing_seg[semantic_map == thing_class] = 1
    centers = reference_find_centers(
        center_heatmap.clone(), center_threshold=center_threshold, nms_kernel=nms_kernel, top_k=top_k
    )
    if centers.size(0) == 0:
        instance = torch.zeros_like(semantic_map)
    else:
        instance = thing_seg * reference_group_pixels(centers, offsets)
    panoptic = reference_merge(
        semantic_map, instance, list(thing_classes), stuff_area=stuff_area, label_divisor=label_divisor
    )
    return ReferenceOutput(semantic_map, panoptic, instance, centers)


def reference_segment_stats(
    output: ReferenceOutput,
    center_heatmap: torch.Tensor,
    thing_classes: Sequence[int],
    *,
    semantic_logits: torch.Tensor | None = None,
    label_divisor: int = DEFAULT_LABEL_DIVISOR,
) -> dict[int, ReferenceSegment]:
    """Per-segment statistics of a :class:`ReferenceOutput`, one segment at a time, keyed by id.

    Score: mean softmax probability of the segment's class over its pixels (1 without logits),
    times the heatmap value at the center of a thing's instance.
    """
    heat = center_heatmap.reshape(center_heatmap.shape[-2:]).float()
    probabilities = None if semantic_logits is None else torch.softmax(semantic_logits.float(), dim=0)
    segments: dict[int, ReferenceSegment] = {}
    for segment_id in torch.unique(output.panoptic).tolist():
        if segment_id == VOID_PANOPTIC:
            continue
        mask = output.panoptic == segment_id
        category = segment_id // label_divisor
        ys, xs = torch.nonzero(mask, as_tuple=True)
        score = 1.0 if probabilities is None else float(probabilities[category][mask].double().mean())
        is_thing = category in thing_classes
        if is_thing:
            center = output.centers[int(output.instance[mask][0]) - 1]
            score *= float(heat[center[0], center[1]])
        segments[segment_id] = ReferenceSegment(
            id=segment_id,
            category=category,
            is_thing=is_thing,
            area=int(mask.sum()),
            bbox=(
                int(xs.min()),
                int(ys.min()),
                int(xs.max()) - int(xs.min()) + 1,
                int(ys.max()) - int(ys.min()) + 1,
            ),
            centroid=(float(xs.double().mean()), float(ys.double().mean())),
            score=score,
        )
    return segments


class SyntheticOutputs(NamedTuple):
    """Network outputs of one image (CPU tensors).

    Attributes:
        semantic_logits: ``[C, H, W]`` float32.
        center_heatmap: ``[1, H, W]`` float32 in ``[0, 1]``.
        offsets: ``[2, H, W]`` float32 (dy, dx).
        thing_classes: thing class indices.
        num_instances: instances painted (some may be hidden by later ones).
    """

    semantic_logits: torch.Tensor
    center_heatmap: torch.Tensor
    offsets: torch.Tensor
    thing_classes: tuple[int, ...]
    num_instances: int


def synthetic_center_offset_outputs(
    height: int,
    width: int,
    *,
    num_instances: int = 50,
    num_classes: int = 19,
    thing_classes: Sequence[int] = CITYSCAPES_THING_CLASSES,
    seed: int = 0,
    offset_noise: float = 0.7,
    logit_noise: float = 1.0,
    confusion: float = 0.15,
    heat_noise: float = 0.03,
    quantize: bool = False,
) -> SyntheticOutputs:
    """Realistic center-offset network outputs, seeded.

    Stuff fills horizontal bands and random rectangles; each instance is an ellipse of a random
    thing class with a Gaussian center blob, offsets pointing to its center plus Gaussian noise, and
    a fraction ``confusion`` of its pixels voting for another thing class. ``quantize`` rounds the
    heatmap to multiples of 0.05 and the offsets to whole pixels, which creates plateaus and exact
    distance ties.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=generator))

    things = tuple(thing_classes)
    stuff = [c for c in range(num_classes) if c not in things]
    labels = torch.empty(height, width, dtype=torch.int64)
    cuts = sorted(randint(0, height + 1) for _ in range(2))
    bands = [stuff[randint(0, len(stuff))] for _ in range(3)]
    labels[: cuts[0]] = bands[0]
    labels[cuts[0] : cuts[1]] = bands[1]
    labels[cuts[1] :] = bands[2]
    for _ in range(8):
        h, w = randint(1, max(2, height // 3)), randint(1, max(2, width // 3))
        y, x = randint(0, height), randint(0, width)
        labels[y : y + h, x : x + w] = stuff[randint(0, len(stuff))]

    heat = torch.rand(height, width, generator=generator) * heat_noise
    offsets = torch.randn(2, height, width, generator=generator) * 2.0
    confused = torch.zeros(height, width, dtype=torch.int64) - 1
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    for _ in range(num_instances):
        category = things[randint(0, len(things))]
        ry = max(1.5, uniform(0.01, 0.08) * height)
        rx = max(1.5, uniform(0.01, 0.06) * width)
        cy, cx = uniform(0, height - 1), uniform(0, width - 1)
        y0, y1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
        x0, x1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
        dy = cy - rows[y0:y1]
        dx = cx - cols[:, x0:x1]
        inside = (dy / ry) ** 2 + (dx / rx) ** 2 <= 1.0
        labels[y0:y1, x0:x1][inside] = category
        noise = torch.randn(2, y1 - y0, x1 - x0, generator=generator) * offset_noise
        window = offsets[:, y0:y1, x0:x1]
        window[0][inside] = (dy.expand_as(inside) + noise[0])[inside]
        window[1][inside] = (dx.expand_as(inside) + noise[1])[inside]
        other = things[randint(0, len(things))]
        flip = inside & (torch.rand(inside.shape, generator=generator) < confusion)
        confused[y0:y1, x0:x1][flip] = other
        sigma = max(1.0, min(8.0, min(ry, rx) / 2))
        peak = uniform(0.3, 1.0)
        fy, fx = int(cy), int(cx)
        span = math.ceil(3 * sigma)
        by0, by1 = max(0, fy - span), min(height, fy + span + 1)
        bx0, bx1 = max(0, fx - span), min(width, fx + span + 1)
        blob = peak * torch.exp(
            -((rows[by0:by1] - cy) ** 2 + (cols[:, bx0:bx1] - cx) ** 2) / (2 * sigma * sigma)
        )
        heat[by0:by1, bx0:bx1] = torch.maximum(heat[by0:by1, bx0:bx1], blob)

    logits = torch.randn(num_classes, height, width, generator=generator) * logit_noise
    logits.scatter_add_(0, labels[None], torch.full((1, height, width), 3.0))
    flipped = confused >= 0
    logits.scatter_add_(0, confused.clamp(min=0)[None], (flipped.float() * 4.0)[None])
    heat = heat.clamp(0.0, 1.0)
    if quantize:
        heat = torch.round(heat * 20) / 20
        offsets = torch.round(offsets)
    return SyntheticOutputs(logits, heat[None].contiguous(), offsets.contiguous(), things, num_instances)
