"""Records passed between the front-ends (the node, the bag tools, ``infer``) and the frame engine."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from panoptic_ros.core.encodings import ColorOrder
from panoptic_ros.core.geometry import CameraModel


class InputFrame(NamedTuple):
    """One decoded camera frame waiting for processing.

    Attributes:
        camera: the camera's key (its input topic).
        image: ``[H, W, 3]`` uint8 pixels, channels in ``order``.
        stamp_ns: header stamp in nanoseconds (converted once: :func:`panoptic_ros.core.stamps.stamp_ns`).
        frame_id: the header's frame id; outputs carry the same stamp and frame id.
        received_ns: ``time.monotonic_ns()`` when the message arrived (for latency).
        depth: ``[h, w]`` float32 meters, NaN where invalid, aligned with the image (any size), or None.
        camera_model: intrinsics of the image (any size; rescaled to the label size), or None.
        overlay: also render the colored overlay (someone subscribes to it).
        points: also compute the panoptic point cloud (someone subscribes; needs depth and camera_model).
        semantic_image: also expand the semantic map to the camera's size (someone subscribes to
            ``semantic`` or its ``/compressed``; without it the result's ``semantic`` is None).
        instance_image: the same for the instance ids (``instance_ids``, the result's ``instance_ids``):
            the larger map (int32), made only when asked for on its own.
        positions: also place every segment in 3D (someone subscribes to an output that shows the
            positions; needs depth and camera_model; without it no row has ``position_valid``).
        order: the channel order of ``image``: a camera's own (``bgr`` for a ``bgr8`` or JPEG camera,
            :func:`~panoptic_ros.core.decode.camera_frame`) costs no swap; the engine fits either to the
            model and draws the overlay in it.
    """

    camera: str
    image: np.ndarray
    stamp_ns: int
    frame_id: str = ""
    received_ns: int = 0
    depth: np.ndarray | None = None
    camera_model: CameraModel | None = None
    overlay: bool = False
    points: bool = False
    semantic_image: bool = True
    instance_image: bool = True
    positions: bool = True
    order: ColorOrder = "rgb"


class InstanceTable(NamedTuple):
    """One row per published segment of a frame (things first, by track id; then stuff), host arrays.

    ``ids`` [N] uint32 (track id for things, a per-frame id above every thing id for stuff),
    ``category_ids`` [N], ``is_thing`` [N] bool, ``scores`` [N] float32, ``states`` [N] uint8
    (``PanopticInstance.STATE_*`` values), ``areas`` [N] (0 for lost tracks), ``bboxes`` [N, 4] int64
    ``(x, y, width, height)`` clipped to the image, ``centroids`` [N, 2] float32 ``(x, y)``,
    ``velocities`` [N, 2] float32 pixels per second, ``ages`` [N] frames, ``positions`` [N, 3] float32
    meters in the optical frame, ``position_valid`` [N] bool.
    """

    ids: np.ndarray
    category_ids: np.ndarray
    is_thing: np.ndarray
    scores: np.ndarray
    states: np.ndarray
    areas: np.ndarray
    bboxes: np.ndarray
    centroids: np.ndarray
    velocities: np.ndarray
    ages: np.ndarray
    positions: np.ndarray
    position_valid: np.ndarray

    @property
    def size(self) -> int:
        """The number of rows (``len()`` of a NamedTuple counts its fields)."""
        return int(self.ids.shape[0])

    def rows(self, names: Mapping[int, str]) -> Iterator[dict[str, Any]]:
        """The fields of ``PanopticInstance`` for each row, as Python values (``label`` from
        ``names``, category id -> name); ``bbox`` is ``(x, y, width, height)`` and ``position``
        ``(x, y, z)``, for the caller to wrap in its message types. Columns are turned into lists once,
        so there is no numpy scalar conversion per field."""
        cols = [column.tolist() for column in self]
        for i, category, thing, score, state, area, bbox, (cx, cy), (vx, vy), age, position, valid in zip(
            *cols, strict=True
        ):
            yield {
                "id": i,
                "category_id": category,
                "label": names.get(category, str(category)),
                "is_thing": thing,
                "score": score,
                "state": state,
                "area": area,
                "bbox": bbox,
                "centroid_x": cx,
                "centroid_y": cy,
                "velocity_x": vx,
                "velocity_y": vy,
                "age": age,
                "position": position,
                "position_valid": valid,
            }

    @classmethod
    def concatenate(cls, parts: list[InstanceTable]) -> InstanceTable:
        return cls(*(np.concatenate(columns) for columns in zip(*parts, strict=True)))


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[N, 4]`` ``(x, y, w, h)`` boxes clipped to a ``width`` x ``height`` image (int64, all >= 0):
    a lost track's predicted box may reach outside the image, and ``RegionOfInterest`` is unsigned."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    limits = np.array((width, height))
    # by column pairs (np.clip costs several times np.minimum of np.maximum on arrays this small)
    lo = np.minimum(np.maximum(boxes[:, :2], 0), limits)
    hi = np.minimum(np.maximum(boxes[:, :2] + boxes[:, 2:], 0), limits)
    return np.concatenate((lo, np.maximum(hi - lo, 0)), axis=1)


class FrameResult(NamedTuple):
    """Everything published for one input frame.

    Attributes:
        camera, stamp_ns, frame_id, received_ns: copied from the :class:`InputFrame`.
        semantic: ``[H, W]`` uint8 (uint16 for label sets with ids above 254) category id per pixel,
            the label set's void value where void; None when the frame did not ask for it
            (``InputFrame.semantic_image``).
        instance_ids: ``[H, W]`` int32 track id of thing pixels (a number unique within the frame when
            tracking is off), 0 for stuff, void and unpublished things; None when the frame did not ask
            for it (``InputFrame.instance_image``).
        instances: the segments of the frame.
        overlay_bgr: ``[H, W, 3]`` uint8 BGR overlay when asked for, else None.
        events: what broke this camera's stream at this frame: ``"resolution_change"``,
            ``"time_jump_back"`` (:mod:`panoptic_ros.tracking.stream`; the tracker resets on either).
        times: seconds spent per stage for this frame's batch (``preprocess``, ``inference``,
            ``fusion``, ``postprocess``) and for this frame (``tracking``, ``outputs``).
        size: ``(H, W)`` of the camera frame (the label images' size when there are any).
        cloud: the panoptic point cloud (:data:`panoptic_ros.runtime.cloud.POINT_DTYPE` records) when
            asked for and the frame had depth and a camera model, else None.
        dropped_centers: instance centers above the threshold that the fixed-shape fusion left out
            for lack of slots (the lowest-scoring ones; possible only without ``fusion.top_k``).
    """

    camera: str
    stamp_ns: int
    frame_id: str
    received_ns: int
    semantic: np.ndarray | None
    instance_ids: np.ndarray | None
    instances: InstanceTable
    overlay_bgr: np.ndarray | None
    events: tuple[str, ...]
    times: dict[str, float]
    size: tuple[int, int]
    cloud: np.ndarray | None = None
    dropped_centers: int = 0

    @property
    def height(self) -> int:
        return int(self.size[0])

    @property
    def width(self) -> int:
        return int(self.size[1])
