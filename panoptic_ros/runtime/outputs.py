"""One description of every output: what each topic carries, computed once from the result record.

Each per-frame output (:data:`FRAME_OUTPUTS`) and per-camera output (:data:`CAMERA_OUTPUTS`) names
its topic (under ``<camera namespace>/panoptic/``, see :mod:`panoptic_ros.core.topics`), its message
type, whether it is latched, and a function that describes its message as a
:class:`~panoptic_ros.core.messages.Message` tree. The live node wraps the tree into an rclpy message
(``panoptic_ros.ros.wrap``), the bag tools into a ``rosbags`` message
(:func:`panoptic_ros.data.bag_types.to_rosbags`): the live and the recorded outputs of a frame are
equal by construction. Header stamp and frame id are the input's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from panoptic_ros.core.image_encode import array_to_image, labels_to_png
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.messages import (
    COMPRESSED_IMAGE,
    IMAGE,
    Message,
    compressed_message,
    duration_message,
    header_message,
    image_message,
)
from panoptic_ros.runtime.cloud import POINT_DTYPE
from panoptic_ros.runtime.records import FrameResult

INSTANCE_ARRAY = "panoptic_ros/msg/PanopticInstanceArray"
CATEGORY_ARRAY = "panoptic_ros/msg/CategoryArray"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
LABEL_INFO = "vision_msgs/msg/LabelInfo"

# values of the message definitions' constants
MARKER_SPHERE, MARKER_TEXT, MARKER_ADD, MARKER_DELETEALL = 2, 9, 0, 3
#: Seconds a marker stays in rviz without a newer one.
MARKER_LIFETIME_S = 0.5


class OutputContext(NamedTuple):
    """What the descriptions need besides the result: the label set, the label divisor, the fusion's
    confidence threshold in force, and the node's one-line status (drawn with the markers)."""

    label_set: LabelSet
    label_divisor: int
    score_threshold: float = 0.0
    status: str = ""


def frame_header(result: FrameResult) -> Message:
    return header_message(result.stamp_ns, result.frame_id)


# ---- label images


def semantic(result: FrameResult, context: OutputContext) -> Message | None:
    """``panoptic/semantic``: ``mono8`` category ids (``mono16`` for label sets with ids above 254);
    None (nothing published) for a frame made without label images, as every label image output."""
    if result.semantic is None:
        return None
    encoding = "mono16" if result.semantic.dtype == np.uint16 else "mono8"
    return image_message(array_to_image(result.semantic, encoding), frame_header(result))


def instance_ids(result: FrameResult, context: OutputContext) -> Message | None:
    """``panoptic/instance_ids``: ``32SC1`` instance (track) ids, 0 for stuff and void."""
    if result.instance_ids is None:
        return None
    pixels = result.instance_ids.astype(np.int32, copy=False)
    return image_message(array_to_image(pixels, "32SC1"), frame_header(result))


def semantic_png(result: FrameResult, context: OutputContext) -> Message | None:
    """``panoptic/semantic/compressed``: the semantic image as a lossless PNG ``CompressedImage``
    (``mono8; png compressed mono8``, or ``mono16``)."""
    if result.semantic is None:
        return None
    return compressed_message(labels_to_png(result.semantic), frame_header(result))


def instance_ids_png(result: FrameResult, context: OutputContext) -> Message | None:
    """``panoptic/instance_ids/compressed``: the ``32SC1`` ids as a lossless PNG ``CompressedImage``:
    ``32SC1; png compressed mono16`` while every id fits 16 bits, else their little-endian bytes in
    the 4 channels of a ``bgra8`` image (``32SC1; png compressed bgra8``); read back by
    :func:`panoptic_ros.core.image_codec.compressed_to_array`."""
    if result.instance_ids is None:
        return None
    pixels = result.instance_ids.astype(np.int32, copy=False)
    return compressed_message(labels_to_png(pixels), frame_header(result))


#: ``sensor_msgs/PointField`` datatypes.
FLOAT32, UINT32 = 7, 6


def points(result: FrameResult, context: OutputContext) -> Message | None:
    """``panoptic/points``: the panoptic point cloud (:mod:`panoptic_ros.runtime.cloud`), unordered
    (height 1), dense (points without depth are left out), when the frame had one."""
    cloud = result.cloud
    if cloud is None:
        return None
    fields = [
        Message(
            "sensor_msgs/msg/PointField",
            {"name": name, "offset": POINT_DTYPE.fields[name][1], "datatype": kind, "count": 1},
        )
        for name, kind in (
            ("x", FLOAT32),
            ("y", FLOAT32),
            ("z", FLOAT32),
            ("rgb", FLOAT32),
            ("label", UINT32),
        )
    ]
    return Message(
        POINT_CLOUD2,
        {
            "header": frame_header(result),
            "height": 1,
            "width": int(cloud.shape[0]),
            "fields": fields,
            "is_bigendian": False,
            "point_step": POINT_DTYPE.itemsize,
            "row_step": POINT_DTYPE.itemsize * int(cloud.shape[0]),
            "data": np.ascontiguousarray(cloud).view(np.uint8).reshape(-1),
            "is_dense": True,
        },
    )


def overlay(result: FrameResult, context: OutputContext) -> Message | None:
    """``panoptic/overlay``: the ``bgr8`` overlay, when the frame was rendered with one."""
    if result.overlay_bgr is None:
        return None
    return image_message(array_to_image(result.overlay_bgr, "bgr8"), frame_header(result))


# ---- instances


def _point(x: float, y: float, z: float) -> Message:
    return Message("geometry_msgs/msg/Point", {"x": x, "y": y, "z": z})


def instances(result: FrameResult, context: OutputContext) -> Message:
    """``panoptic/instances``: one ``PanopticInstance`` per row of the instance table."""
    names = {c.id: c.name for c in context.label_set.categories}
    rows = []
    for row in result.instances.rows(names):
        x, y, w, h = row.pop("bbox")
        roi = {"x_offset": x, "y_offset": y, "width": w, "height": h, "do_rectify": False}
        row["bbox"] = Message("sensor_msgs/msg/RegionOfInterest", roi)
        row["position"] = _point(*row.pop("position"))
        rows.append(Message("panoptic_ros/msg/PanopticInstance", row))
    return Message(
        INSTANCE_ARRAY,
        {"header": frame_header(result), "height": result.height, "width": result.width, "instances": rows},
    )


def _marker(header: Message, ns: str, marker_id: int, kind: int, **fields: object) -> Message:
    return Message(
        "visualization_msgs/msg/Marker",
        {"header": header, "ns": ns, "id": marker_id, "type": kind, "action": MARKER_ADD, **fields},
    )


#: The identity rotation, one object shared by every pose (a wrapper makes it once per message).
_IDENTITY = Message("geometry_msgs/msg/Quaternion", {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0})


def _pose(x: float, y: float, z: float) -> Message:
    return Message("geometry_msgs/msg/Pose", {"position": _point(x, y, z), "orientation": _IDENTITY})


def _vector(x: float, y: float, z: float) -> Message:
    return Message("geometry_msgs/msg/Vector3", {"x": x, "y": y, "z": z})


def _color(r: float, g: float, b: float, a: float = 1.0) -> Message:
    return Message("std_msgs/msg/ColorRGBA", {"r": r, "g": g, "b": b, "a": a})


def markers(result: FrameResult, context: OutputContext) -> Message:
    """``panoptic/markers``: a sphere and a text label at the 3D position of every thing that has one
    (the first marker deletes the previous frame's), and the node's status line (rate, latency) as a
    text above the camera, since rviz2 has no display of ``/diagnostics``."""
    header = frame_header(result)
    table = result.instances
    categories = {c.id: c for c in context.label_set.categories}
    lifetime = duration_message(MARKER_LIFETIME_S)
    out = [
        Message(
            "visualization_msgs/msg/Marker", {"header": header, "ns": "panoptic", "action": MARKER_DELETEALL}
        )
    ]
    shown = np.flatnonzero(table.position_valid & table.is_thing)
    # sub-messages equal for many markers are one object each (a wrapper then makes each once)
    sphere, text = _vector(0.3, 0.3, 0.3), _vector(0.3, 0.3, 0.4)
    colors: dict[int, Message] = {}
    for k, (x, y, z), category_id in zip(
        shown.tolist(), table.positions[shown].tolist(), table.category_ids[shown].tolist(), strict=True
    ):
        category = categories.get(category_id)
        name = category.name if category else str(category_id)
        track = int(table.ids[k])
        color = colors.get(category_id)
        if color is None:
            r, g, b = category.color if category else (255, 255, 255)
            color = colors[category_id] = _color(r / 255, g / 255, b / 255)
        out.append(
            _marker(header, "panoptic", 2 * track, MARKER_SPHERE, pose=_pose(x, y, z),
                    scale=sphere, color=color, lifetime=lifetime)
        )  # fmt: skip
        out.append(
            _marker(header, "panoptic", 2 * track + 1, MARKER_TEXT, pose=_pose(x, y - 0.4, z),
                    scale=text, color=color, lifetime=lifetime, text=f"{name} {track} ({z:.1f} m)")
        )  # fmt: skip
    if context.status:
        out.append(
            _marker(header, "panoptic_status", 0, MARKER_TEXT, pose=_pose(0.0, -1.0, 3.0),
                    scale=_vector(0.0, 0.0, 0.25), color=_color(1.0, 1.0, 1.0), text=context.status)
        )  # fmt: skip
    return Message(MARKER_ARRAY, {"markers": out})


def detections(result: FrameResult, context: OutputContext) -> Message:
    """``panoptic/detections``: ``vision_msgs/Detection2DArray`` of the things in the frame
    (``id`` = track id, class id = category id, pose = 3D position where known)."""
    header = frame_header(result)
    table = result.instances
    out = []
    for k in np.flatnonzero(table.is_thing & (table.areas > 0)).tolist():
        x, y, w, h = (float(v) for v in table.bboxes[k])
        px, py, pz = (float(v) for v in table.positions[k]) if table.position_valid[k] else (0.0, 0.0, 0.0)
        center = Message("vision_msgs/msg/Point2D", {"x": x + w / 2, "y": y + h / 2})
        box = Message(
            "vision_msgs/msg/BoundingBox2D",
            {"center": Message("vision_msgs/msg/Pose2D", {"position": center}), "size_x": w, "size_y": h},
        )
        pose = Message("geometry_msgs/msg/PoseWithCovariance", {"pose": _pose(px, py, pz)})
        hypothesis = Message(
            "vision_msgs/msg/ObjectHypothesisWithPose",
            {
                "hypothesis": Message(
                    "vision_msgs/msg/ObjectHypothesis",
                    {"class_id": str(int(table.category_ids[k])), "score": float(table.scores[k])},
                ),
                "pose": pose,
            },
        )
        out.append(
            Message(
                "vision_msgs/msg/Detection2D",
                {"header": header, "id": str(int(table.ids[k])), "bbox": box, "results": [hypothesis]},
            )
        )
    return Message(DETECTION_ARRAY, {"header": header, "detections": out})


# ---- once per camera (latched)


def categories(header: Message, context: OutputContext) -> Message:
    """``panoptic/categories``: the label set with colors, void id and label divisor."""
    rows = [
        Message(
            "panoptic_ros/msg/Category",
            {
                "id": c.id,
                "name": c.name,
                "is_thing": c.is_thing,
                "r": c.color[0],
                "g": c.color[1],
                "b": c.color[2],
            },
        )
        for c in context.label_set.categories
    ]
    label_set = context.label_set
    return Message(
        CATEGORY_ARRAY,
        {
            "header": header,
            "label_set": label_set.name,
            "void_id": label_set.void_semantic,
            "label_divisor": context.label_divisor,
            "categories": rows,
        },
    )


def label_info(header: Message, context: OutputContext) -> Message:
    """``panoptic/label_info``: ``vision_msgs/LabelInfo`` (class id = category id) with the fusion's
    confidence threshold in force."""
    classes = [
        Message("vision_msgs/msg/VisionClass", {"class_id": c.id, "class_name": c.name})
        for c in context.label_set.categories
    ]
    return Message(
        LABEL_INFO, {"header": header, "class_map": classes, "threshold": float(context.score_threshold)}
    )


@dataclass(frozen=True)
class Output:
    """One output topic: its name under ``panoptic/``, message type, QoS kind and description.

    ``latched`` outputs (transient local) are described once per camera from a header; the others
    once per frame from the result. ``package`` names a ROS package that must be importable for the
    type (``vision_msgs`` is on most robots but not on PyPI); empty when always available.
    """

    name: str
    type: str
    describe: Callable[..., Message | None]
    latched: bool = False
    package: str = ""


#: Outputs of every frame, in publishing order.
FRAME_OUTPUTS: tuple[Output, ...] = (
    Output("semantic", IMAGE, semantic),
    Output("instance_ids", IMAGE, instance_ids),
    Output("semantic/compressed", COMPRESSED_IMAGE, semantic_png),
    Output("instance_ids/compressed", COMPRESSED_IMAGE, instance_ids_png),
    Output("points", POINT_CLOUD2, points),
    Output("instances", INSTANCE_ARRAY, instances),
    Output("overlay", IMAGE, overlay),
    Output("markers", MARKER_ARRAY, markers),
    Output("detections", DETECTION_ARRAY, detections, package="vision_msgs"),
)
#: The outputs made from the semantic image at the camera's size (a frame needs it for any of these) ...
SEMANTIC_IMAGE_OUTPUTS: tuple[str, ...] = ("semantic", "semantic/compressed")
#: ... and from the instance ids at the camera's size.
INSTANCE_IMAGE_OUTPUTS: tuple[str, ...] = ("instance_ids", "instance_ids/compressed")
#: Every output made from a label image at the camera's size.
LABEL_IMAGE_OUTPUTS: tuple[str, ...] = (*SEMANTIC_IMAGE_OUTPUTS, *INSTANCE_IMAGE_OUTPUTS)
#: The outputs that show the segments' 3D positions (a frame with depth places them for any of these).
POSITION_OUTPUTS: tuple[str, ...] = ("instances", "markers", "detections")
#: Outputs published once per camera, latched for late joiners.
CAMERA_OUTPUTS: tuple[Output, ...] = (
    Output("categories", CATEGORY_ARRAY, categories, latched=True),
    Output("label_info", LABEL_INFO, label_info, latched=True, package="vision_msgs"),
)
OUTPUTS: dict[str, Output] = {o.name: o for o in (*FRAME_OUTPUTS, *CAMERA_OUTPUTS)}
