"""What the launch files share: the node's parameter overrides, the cameras of a bag, the Fast DDS
profile's environment and the node's ``launch_ros`` action.

``launch``/``launch_ros`` are imported only inside :func:`node_action` (they are not on PyPI; the
parameter logic is tested without them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from panoptic_ros.apps.bag_frames import BagFrames, ReadOptions
from panoptic_ros.errors import ConfigError
from panoptic_ros.resources import config_dir

#: The environment variable through which Fast DDS loads an XML profile (other RMWs ignore it).
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
#: The shipped profile for images over ~500 KB (relative to the package's share directory).
PROFILE = Path("config") / "fastdds_large_images.xml"


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


def bag_inputs(bag: str | Path, cameras: Sequence[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """The node's input parameters for replaying ``bag`` and the topics to play.

    The cameras are ``cameras`` when given, else those of the one camera-selection rule that
    ``bag process`` and ``infer`` use (:func:`panoptic_ros.apps.bag_frames.camera_topics`: no depth,
    ground truth or output images), each with the depth and camera_info topics the bag has for it.

    Raises:
        BagError: the bag cannot be read, or has no (or not the given) camera topics.
    """
    frames = BagFrames(bag, ReadOptions(cameras=tuple(c for c in cameras if c) or None))
    found = list(frames.cameras.values())
    params: dict[str, Any] = {"image_topics": [c.topic for c in found]}
    if any(c.info_topic and c.depth_topic for c in found):
        params["camera_info_topics"] = [c.info_topic or "" for c in found]
        params["depth_topics"] = [c.depth_topic or "" for c in found]
    return params, frames.input_topics


def profile_env(profile: str) -> dict[str, str]:
    """The environment that loads the Fast DDS profile ``profile`` ('' or 'none': nothing)."""
    return {PROFILE_ENV: profile} if profile.strip() and profile.strip().lower() != "none" else {}


def use_profile(profile: str | None) -> None:
    """Load a Fast DDS profile in this process and the processes it starts; call it before any
    participant exists. ``profile``: an XML file; None: ``$FASTDDS_DEFAULT_PROFILES_FILE`` if set, else
    the shipped one (as the launch files give it); '' or 'none': the middleware's defaults.

    Raises:
        ConfigError: the file does not exist.
    """
    if profile is None and os.environ.get(PROFILE_ENV):
        return
    env = profile_env(str(config_dir() / PROFILE.name) if profile is None else profile)
    if env and not Path(env[PROFILE_ENV]).is_file():
        raise ConfigError(f"no Fast DDS profile {env[PROFILE_ENV]}: give an XML file, or 'none'")
    os.environ.pop(PROFILE_ENV, None)
    os.environ.update(env)


def node_action(
    params_file: str,
    overrides: Mapping[str, Any],
    *,
    namespace: str = "",
    env: Mapping[str, str] | None = None,
) -> Any:
    """The ``launch_ros`` action that starts ``panoptic_node`` with ``params_file`` then ``overrides``
    (``env``: added to its environment, e.g. :func:`profile_env`)."""
    from launch_ros.actions import Node

    return Node(
        package="panoptic_ros",
        executable="panoptic_node",
        name="panoptic",
        namespace=namespace,
        parameters=[params_file, dict(overrides)],
        output="screen",
        emulate_tty=True,
        additional_env=dict(env or {}),
    )
