"""Topic names of a camera's outputs, shared by the node and the bag tools (no ROS needed).

A camera publishing ``/ns/image_raw`` (or ``/ns/image_raw/compressed``) lives in the namespace
``/ns``; its outputs go to ``/ns/panoptic/<output>``, its calibration to ``/ns/camera_info``, an
aligned depth image to ``/ns/depth/image_raw`` and the ground truth of synthetic bags to
``/ns/ground_truth/<map>``. Relative names stay relative (``image_raw`` -> namespace ``""`` ->
``panoptic/semantic``), so a launch file can remap them.
"""

from __future__ import annotations

from panoptic_ros.errors import ConfigError

#: The per-camera outputs under ``<namespace>/panoptic/`` (described in :mod:`panoptic_ros.runtime.outputs`).
OUTPUTS = (
    "semantic",
    "instance_ids",
    "semantic/compressed",
    "instance_ids/compressed",
    "points",
    "instances",
    "overlay",
    "markers",
    "detections",
    "categories",
    "label_info",
)
#: The ground-truth maps under ``<namespace>/ground_truth/`` (synthetic bags).
GROUND_TRUTH = ("semantic", "instance_ids")
COMPRESSED_SUFFIX = "/compressed"
#: Name components that mark an image topic as something other than a camera.
NOT_CAMERA_COMPONENTS = ("panoptic", "ground_truth")


def output_namespace(image_topic: str) -> str:
    """The namespace of a camera topic: a trailing ``/compressed`` and then the last name component
    removed. ``/ns/image_raw`` -> ``/ns``; ``/ns/image_raw/compressed`` -> ``/ns``; ``/image_raw`` ->
    ``/``; ``image_raw`` (relative) -> ``""``.

    Raises:
        ConfigError: an empty name, one ending in ``/``, or nothing left after ``/compressed``.
    """
    topic = image_topic.strip()
    if not topic or topic.endswith("/"):
        raise ConfigError(f"image topic {image_topic!r} is not a topic name (empty or ending in '/')")
    if topic.endswith(COMPRESSED_SUFFIX):
        topic = topic[: -len(COMPRESSED_SUFFIX)]
        if topic in ("", "/"):
            raise ConfigError(f"image topic {image_topic!r} names no image topic before '/compressed'")
    head, sep, _ = topic.rpartition("/")
    if not sep:
        return ""
    return head or "/"


def join_topic(namespace: str, *names: str) -> str:
    """``namespace`` and relative ``names`` joined with single slashes (``/`` + ``a`` -> ``/a``)."""
    parts = [p.strip("/") for p in names if p.strip("/")]
    base = namespace.rstrip("/")
    if namespace.startswith("/") and not base:
        return "/" + "/".join(parts)
    return "/".join([base, *parts]) if base else "/".join(parts)


def output_topic(image_topic: str, output: str) -> str:
    """The topic of one of :data:`OUTPUTS` for a camera topic, e.g. ``/ns/panoptic/semantic``."""
    if output not in OUTPUTS:
        raise ConfigError(f"unknown output {output!r}; outputs are {list(OUTPUTS)}")
    return join_topic(output_namespace(image_topic), "panoptic", output)


def ground_truth_topic(image_topic: str, name: str) -> str:
    """The topic of one of :data:`GROUND_TRUTH` for a camera topic, e.g. ``/ns/ground_truth/semantic``."""
    if name not in GROUND_TRUTH:
        raise ConfigError(f"unknown ground-truth map {name!r}; maps are {list(GROUND_TRUTH)}")
    return join_topic(output_namespace(image_topic), "ground_truth", name)


def camera_info_topic(image_topic: str) -> str:
    """The calibration topic next to a camera topic: ``/ns/camera_info``."""
    return join_topic(output_namespace(image_topic), "camera_info")


def depth_topic(image_topic: str) -> str:
    """The aligned depth image of a camera topic: ``/ns/depth/image_raw`` (32FC1 m or 16UC1 mm)."""
    return join_topic(output_namespace(image_topic), "depth", "image_raw")


def is_camera_topic(topic: str) -> bool:
    """Whether an image topic looks like a camera: no name component ``panoptic`` or
    ``ground_truth`` (outputs, ground truth) and none containing ``depth``."""
    parts = [p for p in topic.split("/") if p]
    return bool(parts) and not any(p in NOT_CAMERA_COMPONENTS or "depth" in p.lower() for p in parts)
