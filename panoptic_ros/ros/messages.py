"""ROS 2 messages of a :class:`~panoptic_ros.runtime.records.FrameResult`.

Label images are filled in one copy (``array.array`` from the contiguous numpy buffer, see
:mod:`panoptic_ros.ros.conversions`); instance columns are turned into Python lists once, so building a
``PanopticInstanceArray`` costs one constructor call per segment and no numpy scalar conversions.
"""

from __future__ import annotations

from typing import Any

from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.msg import PanopticInstance, PanopticInstanceArray
from panoptic_ros.ros.conversions import array_to_image_msg
from panoptic_ros.runtime.records import FrameResult


def semantic_msg(result: FrameResult, header: Header) -> Image:
    encoding = "mono8" if result.semantic.dtype.itemsize == 1 else "mono16"
    return array_to_image_msg(result.semantic, encoding, header)


def instance_ids_msg(result: FrameResult, header: Header) -> Image:
    return array_to_image_msg(result.instance_ids, "32SC1", header)


def overlay_msg(result: FrameResult, header: Header) -> Image | None:
    if result.overlay_bgr is None:
        return None
    return array_to_image_msg(result.overlay_bgr, "bgr8", header)


def instances_msg(result: FrameResult, header: Header, label_set: LabelSet) -> PanopticInstanceArray:
    """One ``PanopticInstance`` per row of the result's instance table."""
    names = {c.id: c.name for c in label_set.categories}
    instances = []
    for row in result.instances.rows(names):
        x, y, w, h = row.pop("bbox")
        px, py, pz = row.pop("position")
        instances.append(
            PanopticInstance(
                **row,
                bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
                position=Point(x=px, y=py, z=pz),
            )
        )
    return PanopticInstanceArray(header=header, height=result.height, width=result.width, instances=instances)


def markers_msg(
    result: FrameResult, header: Header, label_set: LabelSet, *, lifetime_s: float = 0.5, status: str = ""
) -> MarkerArray:
    """A text label and a sphere at the 3D position of every segment that has one (things only; the
    first marker deletes the previous frame's), and the node's ``status`` line (rate, latency) as a
    text 1 m above the camera, since rviz2 has no display of ``/diagnostics``."""
    table = result.instances
    colors = {c.id: c.color for c in label_set.categories}
    names = {c.id: c.name for c in label_set.categories}
    markers = [Marker(header=header, action=Marker.DELETEALL, ns="panoptic")]
    rows = [k for k in range(table.size) if table.position_valid[k] and table.is_thing[k]]
    sec = int(lifetime_s)
    for k in rows:
        x, y, z = (float(v) for v in table.positions[k])
        category = int(table.category_ids[k])
        r, g, b = colors.get(category, (255, 255, 255))
        track = int(table.ids[k])
        for kind, marker_id, scale_z in (
            (Marker.SPHERE, 2 * track, 0.3),
            (Marker.TEXT_VIEW_FACING, 2 * track + 1, 0.4),
        ):
            marker = Marker(header=header, ns="panoptic", id=marker_id, type=kind, action=Marker.ADD)
            marker.pose.position = Point(x=x, y=y - (0.4 if kind == Marker.TEXT_VIEW_FACING else 0.0), z=z)
            marker.pose.orientation.w = 1.0
            marker.scale.x = marker.scale.y = 0.3
            marker.scale.z = scale_z
            marker.color.r, marker.color.g, marker.color.b, marker.color.a = r / 255, g / 255, b / 255, 1.0
            marker.lifetime.sec = sec
            marker.lifetime.nanosec = int((lifetime_s - sec) * 1e9)
            if kind == Marker.TEXT_VIEW_FACING:
                marker.text = f"{names.get(category, category)} {track} ({z:.1f} m)"
            markers.append(marker)
    if status:
        text = Marker(
            header=header, ns="panoptic_status", id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD
        )
        text.pose.position = Point(x=0.0, y=-1.0, z=3.0)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.25
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        text.text = status
        markers.append(text)
    return MarkerArray(markers=markers)


def vision_msgs_available() -> bool:
    """Whether ``vision_msgs`` (not on PyPI; installed on most robots) can be imported."""
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def detections_msg(result: FrameResult, header: Header) -> Any:
    """``vision_msgs/Detection2DArray`` of the things (``id`` = track id, class id = category id)."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    table = result.instances
    detections = []
    for k in range(table.size):
        if not table.is_thing[k] or table.areas[k] == 0:
            continue
        x, y, w, h = (float(v) for v in table.bboxes[k])
        detection = Detection2D(header=header, id=str(int(table.ids[k])))
        detection.bbox.center.position.x = x + w / 2
        detection.bbox.center.position.y = y + h / 2
        detection.bbox.size_x, detection.bbox.size_y = w, h
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(int(table.category_ids[k]))
        hypothesis.hypothesis.score = float(table.scores[k])
        if table.position_valid[k]:
            px, py, pz = (float(v) for v in table.positions[k])
            hypothesis.pose.pose.position = Point(x=px, y=py, z=pz)
        detection.results = [hypothesis]
        detections.append(detection)
    return Detection2DArray(header=header, detections=detections)


def label_info_msg(label_set: LabelSet, header: Header, threshold: float) -> Any:
    """``vision_msgs/LabelInfo`` of the label set (class id = category id)."""
    from vision_msgs.msg import LabelInfo, VisionClass

    return LabelInfo(
        header=header,
        class_map=[VisionClass(class_id=c.id, class_name=c.name) for c in label_set.categories],
        threshold=float(threshold),
    )
