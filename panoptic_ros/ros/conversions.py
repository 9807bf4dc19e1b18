"""Conversions between the ROS-free core records and ROS 2 messages.

Large arrays are moved in one copy: ``Image.data`` is assigned an ``array.array('B')`` filled from a
contiguous buffer (the generated message class takes that without checking element by element),
and read back through the zero-copy view of :mod:`panoptic_ros.core.image_codec`.
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR
from panoptic_ros.core.image_codec import (
    CompressedFields,
    ImageFields,
    array_to_compressed,
    array_to_image,
)
from panoptic_ros.core.labels import Category as CoreCategory
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.types import PanopticResult
from panoptic_ros.msg import Category, CategoryArray, PanopticInstance, PanopticInstanceArray


def byte_array(data: np.ndarray | bytes | memoryview) -> array.array:
    """``array.array('B')`` holding ``data``'s bytes, in one copy (the fast way to fill ``uint8[]``)."""
    out = array.array("B")
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
    out.frombytes(data)
    return out


def image_msg(fields: ImageFields, header: Header | None = None) -> Image:
    """A ``sensor_msgs/Image`` from :func:`~panoptic_ros.core.image_codec.array_to_image` fields."""
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height = fields.height
    msg.width = fields.width
    msg.encoding = fields.encoding
    msg.is_bigendian = fields.is_bigendian
    msg.step = fields.step
    msg.data = byte_array(fields.data)
    return msg


def array_to_image_msg(
    pixels: np.ndarray, encoding: str, header: Header | None = None, *, is_bigendian: bool = False
) -> Image:
    """A ``sensor_msgs/Image`` holding ``pixels`` in ``encoding`` (see ``array_to_image``)."""
    return image_msg(array_to_image(pixels, encoding, is_bigendian=is_bigendian), header)


def compressed_msg(fields: CompressedFields, header: Header | None = None) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` from ``array_to_compressed`` fields."""
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fields.format
    msg.data = byte_array(fields.data)
    return msg


def array_to_compressed_msg(
    pixels: np.ndarray, header: Header | None = None, **kwargs: object
) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` of ``pixels`` (keyword arguments of ``array_to_compressed``)."""
    return compressed_msg(array_to_compressed(pixels, **kwargs), header)  # type: ignore[arg-type]


def category_msg(category: CoreCategory) -> Category:
    r, g, b = category.color
    return Category(id=category.id, name=category.name, is_thing=category.is_thing, r=r, g=g, b=b)


def category_array_msg(
    label_set: LabelSet, header: Header | None = None, *, label_divisor: int = DEFAULT_LABEL_DIVISOR
) -> CategoryArray:
    """The ``panoptic/categories`` message of a label set."""
    return CategoryArray(
        header=header or Header(),
        label_set=label_set.name,
        void_id=label_set.void_semantic,
        label_divisor=label_divisor,
        categories=[category_msg(c) for c in label_set.categories],
    )


def label_set_from_msg(msg: CategoryArray) -> LabelSet:
    """The :class:`LabelSet` a ``CategoryArray`` describes (for consumers of the categories topic)."""
    return LabelSet(
        name=msg.label_set,
        categories=tuple(
            CoreCategory(id=c.id, name=c.name, is_thing=c.is_thing, color=(c.r, c.g, c.b))
            for c in msg.categories
        ),
    )


def instance_array_msg(result: PanopticResult, label_set: LabelSet, header: Header) -> PanopticInstanceArray:
    """One ``PanopticInstance`` per segment of ``result`` (untracked: things are confirmed, age 1).

    Thing ids are the instance ids of the result; stuff segments get per-frame ids above every
    thing id of the frame, so that ids are unique within the message.
    """
    next_stuff_id = max((s.instance_id for s in result.segments), default=0) + 1
    instances = []
    for segment in result.segments:
        if segment.is_thing:
            segment_id = segment.instance_id
        else:
            segment_id, next_stuff_id = next_stuff_id, next_stuff_id + 1
        category = label_set.by_id(segment.category_id)
        instances.append(
            PanopticInstance(
                id=segment_id,
                category_id=segment.category_id,
                label=category.name,
                is_thing=segment.is_thing,
                score=segment.score,
                state=PanopticInstance.STATE_CONFIRMED,
                area=segment.area,
                bbox=RegionOfInterest(
                    x_offset=segment.bbox.x,
                    y_offset=segment.bbox.y,
                    width=segment.bbox.width,
                    height=segment.bbox.height,
                ),
                centroid_x=segment.centroid[0],
                centroid_y=segment.centroid[1],
                age=1,
            )
        )
    return PanopticInstanceArray(header=header, height=result.height, width=result.width, instances=instances)
