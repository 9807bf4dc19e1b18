"""This package's message types for the ``rosbags`` package, and ROS-free builders of its messages.

:func:`typestore` is the ROS 2 Kilted type store of ``rosbags`` with the four types of ``msg/``
(``PanopticInstance``, ``PanopticInstanceArray``, ``Category``, ``CategoryArray``) registered from
their ``.msg`` files, so bags holding the node's outputs can be written and read without ROS. The
builders turn a :class:`~panoptic_ros.runtime.FrameResult` into the ``rosbags`` message objects the
node publishes (same fields, same values as ``panoptic_ros.ros.conversions``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR
from panoptic_ros.core.image_codec import ImageFields, array_to_image
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.bags import BagError

if TYPE_CHECKING:
    from panoptic_ros.runtime.records import FrameResult

PACKAGE = "panoptic_ros"
MESSAGE_NAMES = ("Category", "CategoryArray", "PanopticInstance", "PanopticInstanceArray")
CATEGORY_TYPE = f"{PACKAGE}/msg/Category"
CATEGORY_ARRAY_TYPE = f"{PACKAGE}/msg/CategoryArray"
INSTANCE_TYPE = f"{PACKAGE}/msg/PanopticInstance"
INSTANCE_ARRAY_TYPE = f"{PACKAGE}/msg/PanopticInstanceArray"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"


def msg_dir() -> Path:
    """The folder holding this package's ``.msg`` files: ``msg/`` of the source checkout, or
    ``share/panoptic_ros/msg`` of an installed tree (searched like ``config/``, see
    :mod:`panoptic_ros.resources`).

    Raises:
        BagError: no candidate folder holds all four ``.msg`` files.
    """
    from panoptic_ros.resources import share_candidates

    candidates = share_candidates()
    for candidate in candidates:
        folder = candidate / "msg"
        if all((folder / f"{name}.msg").is_file() for name in MESSAGE_NAMES):
            return folder
    searched = ", ".join(str(c / "msg") for c in candidates)
    raise BagError(
        f"cannot find panoptic_ros's message definitions ({', '.join(MESSAGE_NAMES)} .msg; searched "
        f"{searched}); set PANOPTIC_ROS_SHARE to the folder that holds msg/, config/ and engines/"
    )


@functools.cache
def typestore() -> Any:
    """The ROS 2 Kilted ``rosbags`` type store with this package's messages registered (cached).

    Raises:
        BagError: the ``.msg`` files are missing or do not parse.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    folder = msg_dir()
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name in MESSAGE_NAMES:
        path = folder / f"{name}.msg"
        try:
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{name}"))
        except Exception as err:  # rosbags raises its own parser errors
            raise BagError(f"cannot read message definition {path}: {err}") from err
    store.register(types)
    return store


def message_class(msgtype: str) -> Any:
    """The ``rosbags`` class of a message type (``"sensor_msgs/msg/Image"``).

    Raises:
        BagError: the type store does not know the type.
    """
    try:
        return typestore().types[msgtype]
    except KeyError as err:
        raise BagError(
            f"message type {msgtype!r} is unknown to the rosbags type store (ROS 2 Kilted + panoptic_ros)"
        ) from err


# --------------------------------------------------------------------------------------------------
# headers


def make_header(stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/Header`` with a stamp in nanoseconds since the epoch."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    time_cls = message_class("builtin_interfaces/msg/Time")
    return message_class("std_msgs/msg/Header")(stamp=time_cls(sec=sec, nanosec=nanosec), frame_id=frame_id)


def copy_header(header: Any, stamp_ns: int = 0) -> Any:
    """A ``rosbags`` header with the stamp and frame_id of ``header`` (any object with
    ``stamp.sec``, ``stamp.nanosec`` and ``frame_id``: rclpy or rosbags); ``stamp_ns`` and an empty
    frame_id when ``header`` is None."""
    if header is None:
        return make_header(stamp_ns, "")
    stamp = header.stamp
    return make_header(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec), str(header.frame_id))


def stamp_ns_of(msg: Any) -> int:
    """The header stamp of a message in nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# --------------------------------------------------------------------------------------------------
# images


def image_from_fields(fields: ImageFields, header: Any) -> Any:
    """A ``sensor_msgs/Image`` from :func:`~panoptic_ros.core.image_codec.array_to_image` fields."""
    return message_class(IMAGE_TYPE)(
        header=header,
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=np.ascontiguousarray(fields.data, dtype=np.uint8).reshape(-1),
    )


def semantic_image(result: FrameResult) -> Any:
    """``panoptic/semantic``: ``mono8`` category ids, ``mono16`` when the map is uint16."""
    encoding = "mono16" if result.semantic.dtype == np.uint16 else "mono8"
    pixels = result.semantic if encoding == "mono16" else result.semantic.astype(np.uint8, copy=False)
    return image_from_fields(array_to_image(pixels, encoding), copy_header(result.header, result.stamp_ns))


def instance_ids_image(result: FrameResult) -> Any:
    """``panoptic/instance_ids``: ``32SC1`` instance (track) ids, 0 for stuff and void."""
    pixels = result.instance_ids.astype(np.int32, copy=False)
    return image_from_fields(array_to_image(pixels, "32SC1"), copy_header(result.header, result.stamp_ns))


def overlay_image(result: FrameResult) -> Any | None:
    """``panoptic/overlay``: the ``bgr8`` overlay, or None when the result has none."""
    if result.overlay_bgr is None:
        return None
    return image_from_fields(
        array_to_image(result.overlay_bgr, "bgr8"), copy_header(result.header, result.stamp_ns)
    )


# --------------------------------------------------------------------------------------------------
# our messages


def instance_array(result: FrameResult, label_set: LabelSet) -> Any:
    """``panoptic/instances``: one ``PanopticInstance`` per row of the result's instance table
    (boxes come clipped to the image from the processor)."""
    instance_cls = message_class(INSTANCE_TYPE)
    roi_cls = message_class("sensor_msgs/msg/RegionOfInterest")
    point_cls = message_class("geometry_msgs/msg/Point")
    names = {c.id: c.name for c in label_set.categories}
    instances = []
    for row in result.instances.rows(names):
        x, y, w, h = row.pop("bbox")
        px, py, pz = row.pop("position")
        instances.append(
            instance_cls(
                **row,
                bbox=roi_cls(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False),
                position=point_cls(x=px, y=py, z=pz),
            )
        )
    return message_class(INSTANCE_ARRAY_TYPE)(
        header=copy_header(result.header, result.stamp_ns),
        height=result.height,
        width=result.width,
        instances=instances,
    )


def category_array(
    label_set: LabelSet, header: Any = None, *, label_divisor: int = DEFAULT_LABEL_DIVISOR
) -> Any:
    """``panoptic/categories``: the label set with colors (values as the node publishes them)."""
    category_cls = message_class(CATEGORY_TYPE)
    categories = [
        category_cls(id=c.id, name=c.name, is_thing=c.is_thing, r=c.color[0], g=c.color[1], b=c.color[2])
        for c in label_set.categories
    ]
    return message_class(CATEGORY_ARRAY_TYPE)(
        header=copy_header(header),
        label_set=label_set.name,
        void_id=label_set.void_semantic,
        label_divisor=label_divisor,
        categories=categories,
    )


def label_set_from_categories(msg: Any) -> LabelSet:
    """The :class:`LabelSet` a ``CategoryArray`` (rosbags or rclpy object) describes."""
    from panoptic_ros.core.labels import Category

    return LabelSet(
        name=str(msg.label_set),
        categories=tuple(
            Category(id=int(c.id), name=str(c.name), is_thing=bool(c.is_thing), color=(c.r, c.g, c.b))
            for c in msg.categories
        ),
    )


class OutputMessage(NamedTuple):
    """One message to write or publish: topic, type and the ``rosbags`` object."""

    topic: str
    msgtype: str
    msg: Any


def result_messages(
    result: FrameResult, label_set: LabelSet, topics: dict[str, str], *, overlay: bool = True
) -> Iterable[OutputMessage]:
    """The messages of one result on ``topics`` (output name -> topic, see
    :func:`panoptic_ros.core.topics.output_topic`): semantic, instance_ids, instances and the overlay
    when asked for and present. The categories message is separate (:func:`category_array`)."""
    yield OutputMessage(topics["semantic"], IMAGE_TYPE, semantic_image(result))
    yield OutputMessage(topics["instance_ids"], IMAGE_TYPE, instance_ids_image(result))
    yield OutputMessage(topics["instances"], INSTANCE_ARRAY_TYPE, instance_array(result, label_set))
    if overlay and result.overlay_bgr is not None:
        yield OutputMessage(topics["overlay"], IMAGE_TYPE, overlay_image(result))
