"""Where the package's shared data (``config/``, ``engines/``) lives on this machine.

Searched in this order, first hit wins:

1. ``$PANOPTIC_ROS_SHARE`` (a folder holding ``config/`` and ``engines/``),
2. the source checkout this module was imported from (``make setup``, editable installs),
3. ``share/panoptic_ros`` under each prefix of ``$AMENT_PREFIX_PATH`` (a colcon-built workspace),
4. ``share/panoptic_ros`` under ``sys.prefix`` (``pip install .`` installs the data there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from panoptic_ros.errors import ConfigError

PACKAGE_NAME = "panoptic_ros"


def share_candidates() -> list[Path]:
    """Every folder that may hold the package's ``config/`` and ``engines/``, in search order."""
    candidates: list[Path] = []
    if env := os.environ.get("PANOPTIC_ROS_SHARE"):
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parents[1])
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / PACKAGE_NAME)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    return candidates


def share_dir() -> Path:
    """The first folder of :func:`share_candidates` that has a ``config/labels`` folder."""
    for candidate in share_candidates():
        if (candidate / "config" / "labels").is_dir():
            return candidate
    searched = ", ".join(str(c) for c in share_candidates())
    raise ConfigError(
        f"cannot find panoptic_ros's config/ folder (searched {searched}); "
        "set PANOPTIC_ROS_SHARE to the folder that holds config/ and engines/"
    )


def config_dir() -> Path:
    """The ``config/`` folder (parameters, label sets, rviz layout)."""
    return share_dir() / "config"


def engines_dir() -> Path:
    """The ``engines/`` folder (shipped ONNX models, their specs, cached TensorRT engines)."""
    return share_dir() / "engines"


#: File name of the shipped default model under ``engines/``.
DEFAULT_MODEL_NAME = "panoptic_synthetic.onnx"


def default_model() -> Path:
    """The shipped model every front-end uses when none is given."""
    return engines_dir() / DEFAULT_MODEL_NAME
