"""Several cameras served by one node (one batched inference per cycle):
`ros2 launch panoptic_ros multi_camera.launch.py cameras:=/front/image_raw,/rear/image_raw/compressed`.

Arguments: cameras (comma-separated image topics), camera_infos and depths (comma-separated, one per
camera, empty entries for none; optional), namespace, params_file, model.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from launch import LaunchContext, LaunchDescription
from panoptic_ros.ros.launch_support import PROFILE, node_action, node_overrides, profile_env, split_topics


def _node(context: LaunchContext) -> list[object]:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = node_overrides(
        split_topics(arg("cameras")),
        model=arg("model"),
        camera_infos=split_topics(arg("camera_infos")),
        depths=split_topics(arg("depths")),
    )
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
                "cameras",
                default_value="/front/image_raw,/left/image_raw,/right/image_raw,/rear/image_raw/compressed",
                description="comma-separated camera image topics",
            ),
            DeclareLaunchArgument(
                "camera_infos", default_value="", description="comma-separated, one per camera"
            ),
            DeclareLaunchArgument("depths", default_value="", description="comma-separated, one per camera"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "panoptic.yaml"),
                description="node parameters (YAML)",
            ),
            DeclareLaunchArgument(
                "model", default_value="", description="ONNX model or engine (empty: shipped)"
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
