"""One camera: `ros2 launch panoptic_ros panoptic.launch.py camera:=/front/image_raw`.

Arguments: camera (image topic; ending in /compressed for CompressedImage), namespace (of the node),
params_file (defaults to the installed config/panoptic.yaml), model (ONNX or engine; empty: the
shipped model). Outputs go to <camera namespace>/panoptic/...; see config/panoptic.yaml.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchContext, LaunchDescription
from panoptic_ros.ros.launch_support import PROFILE, node_action, node_overrides, profile_env


def _node(context: LaunchContext) -> list[object]:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    # resolved here so that one camera becomes a one-element string array parameter
    overrides = node_overrides([arg("camera")], model=arg("model"))
    return [
        node_action(
            arg("params_file"), overrides, namespace=arg("namespace"), env=profile_env(arg("fastdds_profile"))
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("panoptic_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "camera", default_value="/camera/image_raw", description="camera image topic"
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "panoptic.yaml"),
                description="node parameters (YAML)",
            ),
            DeclareLaunchArgument(
                "model", default_value="", description="ONNX model or TensorRT engine (empty: shipped model)"
            ),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=os.path.join(share, PROFILE),
                description="Fast DDS XML profile for images over ~500 KB ('' or none: off); the "
                "camera driver needs it too for best-effort images",
            ),
            OpaqueFunction(function=_node),
        ]
    )
