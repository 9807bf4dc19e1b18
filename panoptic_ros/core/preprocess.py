"""Preprocessing on the inference device, and the inverse mapping of label maps.

Frames arrive as ``H x W x 3`` uint8 arrays (one per camera, any sizes). Each is uploaded once
(through a pinned host buffer when the device is CUDA), then on the device: channel order, resize
(or letterbox) to the model input, normalization, NCHW, and batching. The resize is the one the
training used: bilinear, half-pixel centers (``align_corners=False``), antialiased when shrinking.

:func:`restore` maps a label map at the model's resolution back to a camera's resolution (nearest
neighbour, after removing the letterbox padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.errors import ConfigError
from panoptic_ros.models.spec import InputSpec

ResizeMode = Literal["resize", "letterbox"]


class Transform(NamedTuple):
    """Where a source frame went in the model input: its size, and the region it occupies there
    (``top``, ``left``, ``height``, ``width``, in model pixels)."""

    source_height: int
    source_width: int
    top: int
    left: int
    height: int
    width: int


def plan(source: tuple[int, int], target: tuple[int, int], mode: ResizeMode) -> Transform:
    """The :class:`Transform` of a ``source`` (h, w) frame into a ``target`` (h, w) input."""
    sh, sw = source
    th, tw = target
    if mode == "resize":
        return Transform(sh, sw, 0, 0, th, tw)
    if mode != "letterbox":
        raise ConfigError(f"resize mode {mode!r} must be 'resize' or 'letterbox'")
    scale = min(th / sh, tw / sw)
    h, w = max(round(sh * scale), 1), max(round(sw * scale), 1)
    return Transform(sh, sw, (th - h) // 2, (tw - w) // 2, h, w)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``N x C x H x W`` float -> ``N x C x size``: bilinear, half-pixel, antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)


class Preprocessor:
    """Turns camera frames into one normalized model input batch on ``device``."""

    def __init__(self, spec: InputSpec, device: torch.device, *, mode: ResizeMode = "resize") -> None:
        self.spec = spec
        self.device = device
        self.mode = mode
        plan((1, 1), (spec.height, spec.width), mode)  # validates the mode
        self._mean = torch.tensor(spec.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}

    def upload(self, frame: np.ndarray) -> torch.Tensor:
        """One ``H x W x 3`` uint8 frame onto the device (pinned staging buffer on CUDA, reused per size)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ConfigError(f"frames must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
        if self.device.type != "cuda":
            # torch cannot wrap a read-only array (a frame viewing a message buffer): copy only then
            writable = frame if frame.flags.writeable and frame.flags.c_contiguous else np.array(frame)
            return torch.from_numpy(writable)
        staging = self._pinned.get(frame.shape)
        if staging is None:
            staging = self._pinned[frame.shape] = torch.empty(frame.shape, dtype=torch.uint8).pin_memory()
        staging.numpy()[...] = frame  # the one host copy, straight into the pinned buffer
        return staging.to(self.device, non_blocking=True)

    def __call__(
        self, frames: Sequence[np.ndarray], *, order: Literal["rgb", "bgr"] = "rgb"
    ) -> tuple[torch.Tensor, list[Transform]]:
        """``frames`` (each ``H x W x 3`` uint8 in ``order``) -> (``N x 3 x h x w`` float32, transforms)."""
        if not frames:
            raise ConfigError("no frames to preprocess")
        target = (self.spec.height, self.spec.width)
        batch = torch.empty(len(frames), 3, *target, device=self.device, dtype=torch.float32)
        transforms = []
        for i, frame in enumerate(frames):
            image = self.upload(frame).permute(2, 0, 1)[None].float()
            if order != self.spec.color_order:
                image = image.flip(1)
            t = plan(frame.shape[:2], target, self.mode)
            transforms.append(t)
            resized = resize_image(image, (t.height, t.width))
            if t.height == target[0] and t.width == target[1]:
                batch[i] = resized[0]
            else:
                batch[i] = self._mean[0]  # padding normalizes to zero
                batch[i, :, t.top : t.top + t.height, t.left : t.left + t.width] = resized[0]
        return (batch - self._mean) / self._std, transforms


def restore(labels: torch.Tensor, transform: Transform) -> torch.Tensor:
    """A label map (``... x h x w``, model resolution) back to the source frame's size, nearest."""
    cropped = labels[
        ...,
        transform.top : transform.top + transform.height,
        transform.left : transform.left + transform.width,
    ]
    size = (transform.source_height, transform.source_width)
    if tuple(cropped.shape[-2:]) == size:
        return cropped
    lead = cropped.shape[:-2]
    flat = cropped.reshape(1, -1, *cropped.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="nearest-exact").to(labels.dtype).reshape(*lead, *size)
