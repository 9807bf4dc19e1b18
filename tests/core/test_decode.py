"""The frame a camera message becomes (:mod:`panoptic_ros.core.decode`), on real ``sensor_msgs``
messages: in the order asked for, or in the order that costs least (a ``bgr8`` or JPEG camera's frame
stays BGR), always C-contiguous and writable, the same pixels either way."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from panoptic_ros.core.decode import camera_frame, color_frame
from panoptic_ros.ros.conversions import array_to_compressed_msg, array_to_image_msg

RGB = np.random.default_rng(8).integers(0, 256, size=(12, 20, 3), dtype=np.uint8)


def _image(encoding: str) -> tuple[object, bool]:
    """A message of ``RGB`` in ``encoding`` (``jpeg``/``png``: compressed), and whether compressed."""
    if encoding in ("jpeg", "png"):
        return array_to_compressed_msg(RGB, codec=encoding, order="rgb"), True
    pixels = {
        "rgb8": RGB,
        "bgr8": cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR),
        "rgba8": cv2.cvtColor(RGB, cv2.COLOR_RGB2RGBA),
        "bgra8": cv2.cvtColor(RGB, cv2.COLOR_RGB2BGRA),
        "mono8": RGB[..., 0].copy(),
    }[encoding]
    return array_to_image_msg(pixels, encoding), False


@pytest.mark.parametrize(
    ("encoding", "cheapest"),
    [("rgb8", "rgb"), ("rgba8", "rgb"), ("bgr8", "bgr"), ("bgra8", "bgr"), ("mono8", "rgb"),
     ("jpeg", "bgr"), ("png", "bgr")],
)  # fmt: skip
def test_camera_frame_keeps_the_cheapest_order(encoding: str, cheapest: str) -> None:
    msg, compressed = _image(encoding)
    pixels, order = camera_frame(msg, compressed=compressed)
    assert order == cheapest
    assert pixels.flags.c_contiguous and pixels.flags.writeable and pixels.dtype == np.uint8
    # the picture, known apart from the decoder: RGB itself; gray in every channel; OpenCV's JPEG decode
    if encoding == "mono8":
        expected_rgb = np.repeat(RGB[..., :1], 3, axis=2)
    elif encoding == "jpeg":
        expected_rgb = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    else:
        expected_rgb = RGB
    assert np.array_equal(pixels, expected_rgb if order == "rgb" else expected_rgb[..., ::-1])
    other = "rgb" if order == "bgr" else "bgr"
    assert np.array_equal(color_frame(msg, compressed=compressed, order=other), pixels[..., ::-1])
