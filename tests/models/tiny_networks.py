"""Tiny PyTorch networks of the detection-semantic family, for export and pipeline tests.

:class:`TinyDetections` is an instance head (three detections with fixed boxes, scores from the
image's brightness, masks at a quarter of the input), :class:`TinySemantic` a semantic head (stuff
above / below the middle, a "car" patch), :class:`TinyDetectionSemantic` both in one network.
Classes: 0 person and 1 car (things), 2 road and 3 sky (stuff).
"""

from __future__ import annotations

import torch
from torch import nn

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.models.spec import InputSpec, ModelSpec

HEIGHT, WIDTH = 64, 96
LABELS = LabelSet(
    name="tiny",
    categories=(
        Category(0, "person", True, (220, 20, 60)),
        Category(1, "car", True, (0, 0, 142)),
        Category(2, "road", False, (128, 64, 128)),
        Category(3, "sky", False, (70, 130, 180)),
    ),
)


class TinyDetections(nn.Module):
    """``image [N, 3, H, W]`` -> boxes ``[N, 3, 4]`` (xyxy), scores ``[N, 3]``, classes ``[N, 3]``,
    masks ``[N, 3, H/4, W/4]`` (logits)."""

    def __init__(self, height: int = HEIGHT, width: int = WIDTH) -> None:
        super().__init__()
        boxes = torch.tensor([[8, 8, 40, 40], [24, 16, 72, 48], [60, 36, 92, 60]], dtype=torch.float32)
        self.register_buffer("boxes", boxes * torch.tensor([width / 96, height / 64] * 2))
        self.register_buffer("bias", torch.tensor([2.0, 1.0, 0.5]))
        self.register_buffer("classes", torch.tensor([0.0, 1.0, 0.0]))
        masks = torch.full((3, height // 4, width // 4), -6.0)
        for k, (x0, y0, x1, y1) in enumerate((self.boxes / 4).round().long().tolist()):
            masks[k, y0:y1, x0:x1] = 6.0
        self.register_buffer("masks", masks)
        self.pool = nn.AvgPool2d(4)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = image.shape[0]
        brightness = image.mean(dim=(1, 2, 3))
        scores = torch.sigmoid(self.bias[None, :] + brightness[:, None])
        texture = self.pool(image.mean(dim=1, keepdim=True))  # [N, 1, H/4, W/4]
        masks = self.masks[None] + texture
        return (
            self.boxes[None].expand(batch, -1, -1),
            scores,
            self.classes[None].expand(batch, -1),
            masks,
        )


class TinySemantic(nn.Module):
    """``image`` -> semantic logits ``[N, 4, H/4, W/4]``: sky above the middle, road below, a car
    patch at the bottom right."""

    def __init__(self, height: int = HEIGHT, width: int = WIDTH) -> None:
        super().__init__()
        h, w = height // 4, width // 4
        logits = torch.zeros(4, h, w)
        logits[3, : h // 2] = 4.0
        logits[2, h // 2 :] = 4.0
        logits[1, -3:, -4:] = 8.0
        self.register_buffer("logits", logits)
        self.pool = nn.AvgPool2d(4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits[None] + 0.1 * self.pool(image[:, :1])


class TinyDetectionSemantic(nn.Module):
    """Both heads in one network (the order of :func:`detection_semantic_spec`'s outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.detections = TinyDetections()
        self.semantic = TinySemantic()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (*self.detections(image), self.semantic(image))


def build_detection_semantic() -> nn.Module:
    """Factory for ``panoptic-ros export --module tests.models.tiny_networks:build_detection_semantic``."""
    return TinyDetectionSemantic().eval()


def detection_semantic_spec(
    *,
    roles: tuple[str, ...] = ("boxes", "scores", "classes", "masks", "semantic"),
    height: int = HEIGHT,
    width: int = WIDTH,
    companions: dict[str, str] | None = None,
    name: str = "tiny_detection_semantic",
) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="detection-semantic",
        input=InputSpec(name="image", height=height, width=width, max_batch=2),
        outputs={role: f"out_{role}" for role in roles},
        label_set=LABELS,
        fusion={"stuff_area": 16, "score_threshold": 0.5, "overlap_threshold": 0.5},
        companions=companions or {},
    )
