"""The tracker's inputs and outputs.

Coordinates are pixels, ``x`` the column and ``y`` the row (as in ``sensor_msgs/Image``); boxes are
``(x, y, width, height)`` of the inclusive pixel extent, as in the pipeline's ``SegmentTable``.
Maps stay on the device of the input; the per-track tables are small host (numpy) arrays, because the
association runs on the host and the tables are what a node publishes.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np
import torch

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR
from panoptic_ros.core.segments import segment_geometry
from panoptic_ros.errors import PanopticRosError


class TrackerInputError(PanopticRosError, ValueError):
    """A tracker input has inconsistent shapes, dtypes or devices; the message names the field."""


class TrackState(IntEnum):
    """Track states; the values equal the ``STATE_*`` constants of ``PanopticInstance.msg``."""

    TENTATIVE = 0  # seen fewer than min_hits times; dropped at the first miss
    CONFIRMED = 1  # matched in at least min_hits frames
    LOST = 2  # not matched in this frame; kept (predicted by motion) for up to max_age frames


class TrackerInput(NamedTuple):
    """One frame's thing instances (T of them): the maps as tensors on one device; the rows (``ids`` to
    ``centroids``) as tensors on that device, or all as host (numpy) arrays where the caller has them
    on the host already (the tracker reads them there; no transfer).

    Attributes:
        instance_map: ``[H, W]`` integer; the pixels of instance ``k`` hold ``ids[k]``. Any value not in
            ``ids`` (0, -1 for void, stuff ids of a panoptic map) means "no instance".
        ids: ``[T]`` integer, unique, ``>= 0``.
        category_ids: ``[T]`` integer category of each instance.
        scores: ``[T]`` float confidence in ``[0, 1]``.
        bboxes: ``[T, 4]`` ``(x, y, width, height)`` of each instance's pixels.
        centroids: ``[T, 2]`` ``(x, y)`` mean pixel coordinate.
        stamp_ns: the frame's header stamp in nanoseconds (velocities come from stamp differences).
        image: optional ``[H, W, 3]`` image on the same device, values 0..255 (uint8 or float), one
            channel order throughout; when given (and ``TrackerParams.appearance_weight > 0``) mean
            colors inside the masks join the association cost.
        pixel_weights: optional ``[H, W]`` int64 weight of each map pixel: how many pixels of the
            frame the instances are measured in copy it (a map at the model's resolution shown in a
            larger camera frame, :attr:`~panoptic_ros.core.segments.PixelFrame.weights`).
            Areas, mask IoU and mean colors are then those of that frame. None: 1 each.
        frame_size: ``(height, width)`` of the frame boxes and centroids are in (None: the map's).
        fixed_shapes: measure the maps with shapes that do not depend on the data (no host read
            before the statistics' one transfer: what a CUDA graph or a GPU wants), by the device's
            PyTorch ops on the CPU too; False lets the CPU measure only the pixels inside an instance
            and look ids up by compiled loops and numpy.
    """

    instance_map: torch.Tensor
    ids: torch.Tensor | np.ndarray
    category_ids: torch.Tensor | np.ndarray
    scores: torch.Tensor | np.ndarray
    bboxes: torch.Tensor | np.ndarray
    centroids: torch.Tensor | np.ndarray
    stamp_ns: int
    image: torch.Tensor | None = None
    pixel_weights: torch.Tensor | None = None
    frame_size: tuple[int, int] | None = None
    fixed_shapes: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the frame the boxes are in."""
        if self.frame_size is not None:
            return (int(self.frame_size[0]), int(self.frame_size[1]))
        return (int(self.instance_map.shape[0]), int(self.instance_map.shape[1]))

    @classmethod
    def from_maps(
        cls,
        instance_map: torch.Tensor,
        category_map: torch.Tensor,
        stamp_ns: int,
        *,
        scores: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        label_divisor: int = DEFAULT_LABEL_DIVISOR,
    ) -> TrackerInput:
        """Instances and their statistics from an ``[H, W]`` instance map (0 = no instance) and an
        ``[H, W]`` category map, by scatter on their device (a few syncs, no per-instance loop).

        An instance is a distinct ``(category, instance id)`` pair. ``scores`` ([T], in the order of
        increasing ``category * label_divisor + instance id``) default to 1.
        """
        if instance_map.shape != category_map.shape or instance_map.dim() != 2:
            raise TrackerInputError(
                f"instance_map {tuple(instance_map.shape)} and category_map {tuple(category_map.shape)} "
                "must be equal [H, W] maps"
            )
        device = instance_map.device
        largest = int(instance_map.max()) if instance_map.numel() else 0
        if largest >= label_divisor:
            raise TrackerInputError(
                f"instance ids must be below label_divisor={label_divisor} to combine with categories, "
                f"got {largest}; pass a larger label_divisor"
            )
        combined = torch.where(instance_map > 0, category_map.long() * label_divisor + instance_map.long(), 0)
        ids, inverse = torch.unique(combined, return_inverse=True)  # ids[0] is 0 where any pixel is none
        first = 1 if ids.numel() and int(ids[0]) == 0 else 0
        ids = ids[first:]
        count = ids.numel()
        geometry = segment_geometry(torch.where(inverse >= first, inverse - first, count), count)
        return cls(
            instance_map=combined,
            ids=ids,
            category_ids=torch.div(ids, label_divisor, rounding_mode="floor"),
            scores=scores if scores is not None else torch.ones(count, device=device),
            bboxes=geometry.bboxes,
            centroids=geometry.centroids,
            stamp_ns=int(stamp_ns),
            image=image,
        )

    def check(self) -> None:
        """Raise :class:`TrackerInputError` naming the first inconsistent field."""
        if self.instance_map.dim() != 2:
            raise TrackerInputError(
                f"instance_map must be [H, W], got shape {tuple(self.instance_map.shape)}"
            )
        if self.instance_map.is_floating_point() or self.instance_map.dtype == torch.bool:
            raise TrackerInputError(f"instance_map must hold integers, got {self.instance_map.dtype}")
        count = self.ids.shape[0] if len(self.ids.shape) == 1 else -1
        on_host = isinstance(self.ids, np.ndarray)
        expected = {
            "ids": (count,),
            "category_ids": (count,),
            "scores": (count,),
            "bboxes": (count, 4),
            "centroids": (count, 2),
        }
        for name, shape in expected.items():
            tensor = getattr(self, name)
            if tuple(tensor.shape) != shape:
                raise TrackerInputError(
                    f"{name} must have shape {shape} (T = len(ids)), got {tuple(tensor.shape)}"
                )
            if on_host != isinstance(tensor, np.ndarray):
                raise TrackerInputError(
                    f"{name} and ids must both be host arrays or both tensors, got {type(tensor).__name__}"
                )
            if not on_host and tensor.device != self.instance_map.device:
                raise TrackerInputError(
                    f"{name} is on {tensor.device} but instance_map on {self.instance_map.device}; "
                    "move all inputs to one device"
                )
        if self.image is not None:
            if tuple(self.image.shape) != (*self.instance_map.shape, 3):
                raise TrackerInputError(
                    f"image must be [H, W, 3] like instance_map {tuple(self.instance_map.shape)}, "
                    f"got {tuple(self.image.shape)}"
                )
            if self.image.device != self.instance_map.device:
                raise TrackerInputError(
                    f"image is on {self.image.device} but instance_map on {self.instance_map.device}; "
                    "move all inputs to one device"
                )
        weights = self.pixel_weights
        if weights is not None and (
            tuple(weights.shape) != tuple(self.instance_map.shape)
            or weights.device != self.instance_map.device
        ):
            raise TrackerInputError(
                f"pixel_weights must be [H, W] like instance_map {tuple(self.instance_map.shape)} on its "
                f"device, got {tuple(weights.shape)} on {weights.device}"
            )
        if isinstance(self.stamp_ns, bool) or not isinstance(self.stamp_ns, int | np.integer):
            raise TrackerInputError(f"stamp_ns must be an integer (nanoseconds), got {self.stamp_ns!r}")


class TrackTable(NamedTuple):
    """One row per track (K rows), host numpy arrays.

    Attributes:
        track_ids: ``[K]`` int64, unique for the tracker's lifetime, never reused, ``>= 1``.
        category_ids: ``[K]`` int64; a track never changes category.
        states: ``[K]`` uint8 :class:`TrackState` values.
        scores: ``[K]`` float32 score of the last matched instance.
        areas: ``[K]`` int64 pixels in this frame (0 for lost tracks).
        bboxes: ``[K, 4]`` float32 ``(x, y, width, height)``: the instance's box for tracks in the
            map, the box predicted by the motion model for lost tracks.
        centroids: ``[K, 2]`` float32 ``(x, y)``, observed or (lost tracks) predicted.
        velocities: ``[K, 2]`` float32 ``(vx, vy)`` in pixels per second from header stamps; 0 until
            the second hit.
        ages: ``[K]`` int64 frames since the track was created (1 in its first frame).
        hits: ``[K]`` int64 frames in which the track was matched.
        time_since_update: ``[K]`` int64 frames since the last match (0 when matched in this frame).
        instance_index: ``[K]`` int64 row of the matched instance in the input (-1 for lost tracks).
    """

    track_ids: np.ndarray
    category_ids: np.ndarray
    states: np.ndarray
    scores: np.ndarray
    areas: np.ndarray
    bboxes: np.ndarray
    centroids: np.ndarray
    velocities: np.ndarray
    ages: np.ndarray
    hits: np.ndarray
    time_since_update: np.ndarray
    instance_index: np.ndarray

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.track_ids.shape[0])

    @classmethod
    def empty(cls) -> TrackTable:
        def zeros(*shape: int, dtype: type = np.int64) -> np.ndarray:
            return np.zeros((0, *shape), dtype=dtype)

        return cls(
            zeros(), zeros(), zeros(dtype=np.uint8), zeros(dtype=np.float32), zeros(),
            zeros(4, dtype=np.float32), zeros(2, dtype=np.float32), zeros(2, dtype=np.float32),
            zeros(), zeros(), zeros(), zeros(),
        )  # fmt: skip


class TrackerOutput(NamedTuple):
    """The tracker's result for one frame.

    Attributes:
        track_map: ``[H, W]`` int32 on the input's device: the track id of each pixel, 0 where no track
            (stuff, void, instances below ``low_score``, low-score instances left unmatched, and
            tentative tracks when ``publish_tentative`` is off).
        tracks: the tracks drawn in ``track_map`` (matched in this frame), sorted by track id.
        lost: the lost tracks (not in the map) still in the association (``max_age``), with their
            predicted boxes, sorted by track id; tracks kept only for re-identification
            (``reid_seconds``) are not listed.
        instance_track_ids: ``[T]`` int64 host array: the track id given to each input instance, 0 for
            none.
        stamp_ns: the frame's stamp.
        events: what reset the tracker at this frame (:data:`~panoptic_ros.tracking.stream.EVENTS`:
            a stamp earlier than the previous frame's, a new image size); empty when nothing did.
        shown_track_ids: ``[T]`` int64 host array: the track id ``track_map`` shows on each input
            instance's pixels (``instance_track_ids`` without the tentative tracks when those are not
            published), so a host copy of the instance map gives the track map without a transfer.
    """

    track_map: torch.Tensor
    tracks: TrackTable
    lost: TrackTable
    instance_track_ids: np.ndarray
    stamp_ns: int
    events: tuple[str, ...] = ()
    shown_track_ids: np.ndarray | None = None

    def host_track_map(self, instance_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``track_map`` computed on the host from a host copy of the input's instance map and the
        input's ``ids`` (each pixel with value ``ids[k]`` shows ``shown_track_ids[k]``, others 0)."""
        shown = self.shown_track_ids if self.shown_track_ids is not None else self.instance_track_ids
        top = max(int(ids.max()) if ids.size else 0, int(instance_map.max()) if instance_map.size else 0)
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[ids] = shown
        return lut.take(instance_map)

    @property
    def reset(self) -> bool:
        """Whether this frame reset the tracker."""
        return bool(self.events)
