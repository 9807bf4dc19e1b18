"""This package's message types for the ``rosbags`` package, and the bag writer's wrapper of message trees.

:func:`typestore` is the ROS 2 Kilted type store of ``rosbags`` with the four types of ``msg/``
(``PanopticInstance``, ``PanopticInstanceArray``, ``Category``, ``CategoryArray``) registered from
their ``.msg`` files, so bags holding the node's outputs can be written and read without ROS.
:func:`to_rosbags` turns a :class:`~panoptic_ros.core.messages.Message` tree (the description of an
output, :mod:`panoptic_ros.runtime.outputs`) into the ``rosbags`` object; the live node wraps the same
tree into an rclpy message, so a recorded output equals the published one.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from rosbags.interfaces import Nodetype

from panoptic_ros.core.messages import Message
from panoptic_ros.errors import PanopticRosError

Storage = Literal["sqlite3", "mcap"]


class BagError(PanopticRosError, OSError):
    """A bag cannot be opened, read or written (missing, corrupt, no image topics)."""


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
# message trees -> rosbags messages


def to_rosbags(message: Message) -> Any:
    """The ``rosbags`` message a :class:`~panoptic_ros.core.messages.Message` tree describes; fields it
    leaves out take the definition's default (0, ``""``, ``False``, empty).

    Raises:
        BagError: a type the type store does not know.
    """
    cls = message_class(message.type)
    _, fields = typestore().fielddefs[message.type]
    values = {}
    for name, (kind, detail) in fields:
        value = message.fields.get(name, _MISSING)
        values[name] = _default(kind, detail) if value is _MISSING else _convert(value, kind, detail)
    return cls(**values)


_MISSING = object()
_NUMPY = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}  # fmt: skip


def _convert(value: Any, kind: int, detail: Any) -> Any:
    if isinstance(value, Message):
        return to_rosbags(value)
    if kind == Nodetype.BASE and isinstance(value, bytes) and len(value) == 1:
        return value[0]  # a ``byte`` field (rclpy takes bytes of length 1, rosbags an int)
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        (element_kind, element), _ = detail
        if element_kind == Nodetype.BASE and element[0] in _NUMPY:
            return np.ascontiguousarray(value, dtype=_NUMPY[element[0]]).reshape(-1)
        return [_convert(v, element_kind, element) for v in value]
    return value


#: Non-zero defaults of message definitions that the type store does not keep.
_DEFINITION_DEFAULTS: dict[str, dict[str, Any]] = {"geometry_msgs/msg/Quaternion": {"w": 1.0}}


def _default(kind: int, detail: Any) -> Any:
    if kind == Nodetype.NAME:
        return to_rosbags(Message(detail, dict(_DEFINITION_DEFAULTS.get(detail, {}))))
    if kind == Nodetype.BASE:
        base = detail[0]
        return (
            ""
            if base in ("string", "wstring")
            else False
            if base == "bool"
            else 0.0
            if base.startswith("float")
            else 0
        )
    (element_kind, element), length = detail
    if element_kind == Nodetype.BASE and element[0] in _NUMPY:
        return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=_NUMPY[element[0]])
    if kind == Nodetype.ARRAY:
        return [_default(element_kind, element) for _ in range(length)]
    return []


class OutputMessage(NamedTuple):
    """One message to write: topic, type and the ``rosbags`` object."""

    topic: str
    msgtype: str
    msg: Any
