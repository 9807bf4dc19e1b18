"""The rclpy wrapper of message trees, and images to and from rclpy messages.

:func:`to_ros` turns a :class:`~panoptic_ros.core.messages.Message` tree (the description of an output,
:mod:`panoptic_ros.runtime.outputs`) into the generated rclpy message; the bag writer wraps the same
tree with ``rosbags`` (:func:`panoptic_ros.data.bag_types.to_rosbags`). Large arrays are moved in one
copy: ``uint8[]`` fields are assigned an ``array.array('B')`` filled from the contiguous buffer (the
generated class takes that without checking element by element), and read back through the zero-copy
view of :mod:`panoptic_ros.core.image_codec`.
"""

from __future__ import annotations

import array
import copy
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from panoptic_ros.core.image_encode import CompressedFields, ImageFields, array_to_compressed, array_to_image
from panoptic_ros.core.messages import Message, compressed_message, image_message
from panoptic_ros.errors import PanopticRosError


class MessageTypeError(PanopticRosError, RuntimeError):
    """A message type is not of the form ``package/msg/Name``, or its package is not installed."""


def normalize_type(msgtype: str) -> str:
    """``pkg/msg/Name`` from ``pkg/msg/Name`` or ``pkg/Name``.

    Raises:
        MessageTypeError: anything else.
    """
    parts = msgtype.strip().split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and parts[1] == "msg" and parts[0] and parts[2]:
        return "/".join(parts)
    raise MessageTypeError(f"message type {msgtype!r} is not of the form package/msg/Name")


@functools.cache
def message_class(msgtype: str) -> Any:
    """The generated rclpy message class of ``pkg/msg/Name`` (imported from ``pkg.msg``).

    Raises:
        MessageTypeError: the message package is not installed or has no such message.
    """
    package, _, name = normalize_type(msgtype).split("/")
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError as err:
        raise MessageTypeError(
            f"message type {msgtype}: the ROS package {package!r} is not importable ({err}); "
            "install its messages or leave the topic out"
        ) from err
    try:
        return getattr(module, name)
    except AttributeError as err:
        raise MessageTypeError(f"message type {msgtype}: {package}.msg has no message {name!r}") from err


def type_available(msgtype: str) -> bool:
    """Whether the rclpy class of a message type can be imported."""
    try:
        message_class(msgtype)
    except MessageTypeError:
        return False
    return True


def to_ros(message: Message) -> Any:
    """The rclpy message a tree describes; fields it leaves out keep the class's defaults. Values that
    are already rclpy messages (a header taken from an input) are used as they are; a sub-message that
    is one object in the tree (the header all markers of a frame share) is one object in the result.

    Built for speed, as the node builds every output of every frame: the message is made without its
    generated ``__init__``, which constructs a default for every field, nested messages included,
    only for most of them to be replaced (:func:`_blank`); a ``uint8[]`` field takes the
    ``array.array`` made from the pixels as it is (the generated setter would copy it once more).
    """
    return _to_ros(message, {})


def _to_ros(message: Message, made: dict[int, Any]) -> Any:
    done = made.get(id(message))
    if done is not None:
        return done
    cls = message_class(message.type)
    fields = message.fields
    msg = _blank(cls, fields)
    byte_slots = _byte_slots(cls)
    for name, value in fields.items():
        converted = _convert(value, made)
        if isinstance(converted, array.array) and converted.typecode == "B" and name in byte_slots:
            setattr(msg, byte_slots[name], converted)  # the slot itself: the setter copies again
        else:
            setattr(msg, name, converted)
    made[id(message)] = msg  # the tree holds the message alive, so its id is not reused meanwhile
    return msg


def _convert(value: Any, made: dict[int, Any]) -> Any:
    if isinstance(value, Message):
        return _to_ros(value, made)
    if isinstance(value, list):
        return [_convert(v, made) for v in value]
    if isinstance(value, np.ndarray):
        return byte_array(value) if value.dtype == np.uint8 else value.tolist()
    return value


#: Field values a default message can share with every message made from it.
_IMMUTABLE = (str, bytes, int, float, bool, type(None))


@functools.cache
def _defaults(cls: type) -> tuple[tuple[str, str, Any, Callable[[], Any] | None], ...]:
    """Per slot of a message class: its field name, the slot, and its default value when immutable
    (shared), else a maker of a fresh one (lists, arrays, nested messages), read off one message made
    by the generated ``__init__``."""
    example = cls()
    out: list[tuple[str, str, Any, Callable[[], Any] | None]] = []
    for slot in cls.__slots__:
        value = getattr(example, slot)
        make: Callable[[], Any] | None
        if isinstance(value, _IMMUTABLE):
            make = None
        elif isinstance(value, list):  # fixed-size fields and .msg defaults start with items
            make = list if not value else functools.partial(copy.deepcopy, value)
        elif isinstance(value, array.array):
            make = functools.partial(array.array, value.typecode, value)
        elif isinstance(value, np.ndarray):
            make = value.copy
        elif hasattr(type(value), "get_fields_and_field_types"):  # a nested message
            make = functools.partial(_blank, type(value), {})
        else:  # nothing the generated classes hold today; copied to be safe
            make = functools.partial(copy.deepcopy, value)
        out.append((slot.removeprefix("_"), slot, value if make is None else None, make))
    return tuple(out)


@functools.cache
def _byte_slots(cls: type) -> dict[str, str]:
    """The unbounded ``uint8[]`` fields of a message class (``sequence<uint8>``, an
    ``array.array('B')``), by name: slot. Bounded and fixed-size ones keep their setters' checks."""
    kinds = cls.get_fields_and_field_types()
    return {name: slot for name, slot, _, _ in _defaults(cls) if kinds.get(name) == "sequence<uint8>"}


def _blank(cls: type, given: Mapping[str, Any]) -> Any:
    """A message of ``cls`` with the defaults of every field except those ``given`` (set next)."""
    msg = cls.__new__(cls)
    for name, slot, value, make in _defaults(cls):
        if name not in given:
            setattr(msg, slot, value if make is None else make())
    return msg


def byte_array(data: np.ndarray | bytes | memoryview) -> array.array:
    """``array.array('B')`` holding ``data``'s bytes, in one copy (the fast way to fill ``uint8[]``)."""
    out = array.array("B")
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
    out.frombytes(data)
    return out


def image_msg(fields: ImageFields, header: Header | None = None) -> Image:
    """A ``sensor_msgs/Image`` from :func:`~panoptic_ros.core.image_encode.array_to_image` fields."""
    return to_ros(image_message(fields, header if header is not None else Header()))


def array_to_image_msg(
    pixels: np.ndarray, encoding: str, header: Header | None = None, *, is_bigendian: bool = False
) -> Image:
    """A ``sensor_msgs/Image`` holding ``pixels`` in ``encoding`` (see ``array_to_image``)."""
    return image_msg(array_to_image(pixels, encoding, is_bigendian=is_bigendian), header)


def compressed_msg(fields: CompressedFields, header: Header | None = None) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` from ``array_to_compressed`` fields."""
    return to_ros(compressed_message(fields, header if header is not None else Header()))


def array_to_compressed_msg(
    pixels: np.ndarray, header: Header | None = None, **kwargs: object
) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` of ``pixels`` (keyword arguments of ``array_to_compressed``)."""
    return compressed_msg(array_to_compressed(pixels, **kwargs), header)  # type: ignore[arg-type]
