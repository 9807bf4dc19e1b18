"""Preprocessing on the inference device, and the inverse mapping of label maps (pure tensor work).

Frames arrive as ``H x W x 3`` uint8 arrays (one per camera, any sizes). Each is uploaded once
(through a pinned host buffer when the device is CUDA), then on the device: resize (or letterbox) to
the model input, channel order, normalization, NCHW, and batching. The resize is the one the
training used: bilinear, half-pixel centers (``align_corners=False``), antialiased when shrinking; on
the CPU it runs on the 8-bit frame (several times faster at camera sizes, within half a level).

:func:`restore` maps a label map at the model's resolution back to a camera's resolution (nearest
neighbour, after removing the letterbox padding); :func:`pixel_frame` describes that mapping so that
fusion can measure segments directly in the camera frame (:mod:`panoptic_ros.core.segments`).

The model's input geometry comes in as any object with the fields of :class:`InputGeometry` (the
model spec's ``input``), so this module depends on nothing above ``core``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.core.encodings import ColorOrder
from panoptic_ros.core.segments import AxisMap, PixelFrame
from panoptic_ros.errors import ConfigError

ResizeMode = Literal["resize", "letterbox"]
#: The channel order of a batch's frames: one for all, or one per frame.
Orders = ColorOrder | Sequence[ColorOrder]


class InputGeometry(Protocol):
    """What preprocessing reads of a model's input (``ModelSpec.input``)."""

    height: int
    width: int
    color_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


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
    """``N x C x H x W`` -> ``N x C x size``: bilinear, half-pixel, antialiased when shrinking. A uint8
    image is resized in 8 bits (PyTorch's fast CPU path, channels-last): within half a level of the
    float resize, rounded."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)


class Preprocessor:
    """Turns camera frames into one normalized model input batch on ``device``."""

    def __init__(self, spec: InputGeometry, device: torch.device, *, mode: ResizeMode = "resize") -> None:
        self.spec = spec
        self.device = device
        self.mode = mode
        plan((1, 1), (spec.height, spec.width), mode)  # validates the mode
        self._mean = torch.tensor(spec.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        # pinned staging buffer per frame size, with the event of its last copy to the device
        self._pinned: dict[tuple[int, ...], tuple[torch.Tensor, torch.cuda.Event]] = {}

    @staticmethod
    def orders(order: Orders, count: int) -> list[ColorOrder]:
        """The channel order of each of ``count`` frames, from one order for all or one each.

        Raises:
            ConfigError: a list of another length, or an order other than ``rgb`` and ``bgr``.
        """
        orders = [order] * count if isinstance(order, str) else list(order)
        if len(orders) != count:
            raise ConfigError(
                f"{len(orders)} channel orders for {count} frames: give one each, or one for all"
            )
        if any(o not in ("rgb", "bgr") for o in orders):
            raise ConfigError(f"give 'rgb' or 'bgr' for all {count} frames or one each, got {order!r}")
        return orders  # type: ignore[return-value]

    def upload(self, frame: np.ndarray) -> torch.Tensor:
        """One ``H x W x 3`` uint8 frame onto the device (pinned staging buffer on CUDA, reused per size)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ConfigError(f"frames must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
        if self.device.type != "cuda":
            # torch cannot wrap a read-only array (a frame viewing a message buffer): copy only then
            writable = frame if frame.flags.writeable and frame.flags.c_contiguous else np.array(frame)
            return torch.from_numpy(writable)
        entry = self._pinned.get(frame.shape)
        if entry is None:
            staging = torch.empty(frame.shape, dtype=torch.uint8).pin_memory()
            entry = self._pinned[frame.shape] = (staging, torch.cuda.Event())
        else:
            entry[1].synchronize()  # the buffer's previous copy (another camera of this size) is done
        staging, copied = entry
        staging.numpy()[...] = frame  # the one host copy, straight into the pinned buffer
        uploaded = staging.to(self.device, non_blocking=True)
        copied.record(torch.cuda.current_stream(self.device))
        return uploaded

    def __call__(
        self, frames: Sequence[np.ndarray], *, order: Orders = "rgb"
    ) -> tuple[torch.Tensor, list[Transform]]:
        """``frames`` (each ``H x W x 3`` uint8 in ``order``: one for all or one per frame) ->
        (``N x 3 x h x w`` float32, transforms)."""
        return self.batch([self.upload(frame) for frame in frames], order=order)

    def batch(
        self, images: Sequence[torch.Tensor], *, order: Orders = "rgb"
    ) -> tuple[torch.Tensor, list[Transform]]:
        """Uploaded frames (each ``H x W x 3`` uint8 on the device, in ``order``: one for all or one
        per frame) -> (``N x 3 x h x w`` float32 normalized model input, where each frame went)."""
        fitted, transforms = self.fit(images, order=order)
        return self.normalize(fitted), transforms

    def fit(
        self, images: Sequence[torch.Tensor], *, order: Orders = "rgb"
    ) -> tuple[torch.Tensor, list[Transform]]:
        """The frames (channels in ``order``: one for all or one per frame) fitted to the model input,
        before normalization: ``N x 3 x h x w`` float32 values 0..255 in the model's channel order
        (letterbox padding holds the mean; a frame in the other order is swapped after the resize, at
        the model's size), and where each frame went. :meth:`normalize` makes the network's input of
        it."""
        if not images:
            raise ConfigError("no frames to preprocess")
        orders = self.orders(order, len(images))
        target = (self.spec.height, self.spec.width)
        batch = torch.empty(len(images), 3, *target, device=self.device, dtype=torch.float32)
        transforms = []
        for i, (uploaded, frame_order) in enumerate(zip(images, orders, strict=True)):
            image = uploaded.permute(2, 0, 1)[None]
            if self.device.type != "cpu":
                image = image.float()  # the CPU resizes the 8-bit frame (its fast path), then converts
            t = plan(tuple(uploaded.shape[:2]), target, self.mode)
            transforms.append(t)
            resized = resize_image(image, (t.height, t.width)).float()
            if frame_order != self.spec.color_order:
                resized = resized.flip(1)  # after the resize: fewer pixels to move
            if t.height == target[0] and t.width == target[1]:
                batch[i] = resized[0]
            else:
                batch[i] = self._mean[0]  # padding normalizes to zero
                batch[i, :, t.top : t.top + t.height, t.left : t.left + t.width] = resized[0]
        return batch, transforms

    def normalize(self, fitted: torch.Tensor) -> torch.Tensor:
        """The network's input from :meth:`fit`'s batch (mean and standard deviation of the spec)."""
        return (fitted - self._mean) / self._std


def pixel_frame(transform: Transform, model_size: tuple[int, int], device: torch.device) -> PixelFrame:
    """How the pixels of a ``model_size`` map land in the source frame of ``transform`` (nearest,
    half-pixel centers, letterbox padding dropped). Cached: a camera's transform rarely changes."""
    return _pixel_frame(transform, tuple(model_size), torch.device(device))


@functools.lru_cache(maxsize=64)
def _pixel_frame(transform: Transform, model_size: tuple[int, int], device: torch.device) -> PixelFrame:
    rows = AxisMap.nearest(model_size[0], transform.top, transform.height, transform.source_height, device)
    cols = AxisMap.nearest(model_size[1], transform.left, transform.width, transform.source_width, device)
    return PixelFrame.of(rows, cols)


def restore(labels: torch.Tensor, transform: Transform) -> torch.Tensor:
    """A label map (``... x h x w``, model resolution) back to the source frame's size, nearest."""
    return pixel_frame(transform, tuple(labels.shape[-2:]), labels.device).resample(labels)
