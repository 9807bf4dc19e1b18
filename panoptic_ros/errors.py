"""The one error hierarchy of panoptic_ros.

Every error the package raises on purpose derives from :class:`PanopticRosError`, so a caller (the
node, the command line) can tell a bad input or a bad configuration from a bug. Each subclass also
derives from the built-in class that describes it best (``ValueError``, ``FileNotFoundError``), so
generic handlers keep working.
"""

from __future__ import annotations


class PanopticRosError(Exception):
    """Base class of every error raised on purpose by panoptic_ros."""


class ImageDecodeError(PanopticRosError, ValueError):
    """A ``sensor_msgs/Image`` or ``CompressedImage`` (or its fields) cannot be read as an image.

    The message names the offending field and its value, e.g.
    ``step=100 is smaller than one row of width=64 x 3 bytes (bgr8)``.
    """


class UnsupportedEncodingError(ImageDecodeError):
    """An image's ``encoding`` names a pixel format this package does not read."""


class ImageEncodeError(PanopticRosError, ValueError):
    """A numpy array cannot be written as an image of the requested encoding."""


class LabelSetError(PanopticRosError, ValueError):
    """A label set file or definition is invalid (duplicate ids, bad colors, unknown name)."""


class ConfigError(PanopticRosError, ValueError):
    """A parameter or configuration value is out of range or inconsistent."""
