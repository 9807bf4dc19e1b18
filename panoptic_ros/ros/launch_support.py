"""What the launch files share: the node's parameter overrides and its ``launch_ros`` action.

``launch``/``launch_ros`` are imported only inside :func:`node_action` (they are not on PyPI; the
parameter logic is tested without them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def split_topics(text: str) -> list[str]:
    """A comma-separated launch argument as a list of topics (empty entries kept inside, so that
    ``camera_infos:=/a/camera_info,`` pairs the second camera with none)."""
    return [t.strip() for t in text.split(",")] if text.strip() else []


def node_overrides(
    cameras: Sequence[str],
    *,
    model: str = "",
    camera_infos: Sequence[str] = (),
    depths: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters given on top of the params file: the cameras, and the model and side topics only
    when given (so the file's values stay in force otherwise).

    Raises:
        ValueError: no camera.
    """
    cameras = [c for c in cameras if c]
    if not cameras:
        raise ValueError("no camera topic given (camera:=... or cameras:=/a/image_raw,/b/image_raw)")
    overrides: dict[str, Any] = {"image_topics": list(cameras)}
    if camera_infos:
        overrides["camera_info_topics"] = list(camera_infos)
    if depths:
        overrides["depth_topics"] = list(depths)
    if model:
        overrides["model"] = model
    overrides.update(extra or {})
    return overrides


def node_action(params_file: str, overrides: Mapping[str, Any], *, namespace: str = "") -> Any:
    """The ``launch_ros`` action that starts ``panoptic_node`` with ``params_file`` then ``overrides``."""
    from launch_ros.actions import Node

    return Node(
        package="panoptic_ros",
        executable="panoptic_node",
        name="panoptic",
        namespace=namespace,
        parameters=[params_file, dict(overrides)],
        output="screen",
        emulate_tty=True,
    )
