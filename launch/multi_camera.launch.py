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
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription


def _split(context: LaunchContext, name: str) -> list[str]:
    text = LaunchConfiguration(name).perform(context)
    return [t.strip() for t in text.split(",")] if text.strip() else []


def _node(context: LaunchContext) -> list[Node]:
    cameras = _split(context, "cameras")
    if not cameras:
        raise RuntimeError("multi_camera.launch.py: give cameras:=/a/image_raw,/b/image_raw")
    overrides: dict[str, object] = {"image_topics": cameras}
    for arg, param in (("camera_infos", "camera_info_topics"), ("depths", "depth_topics")):
        values = _split(context, arg)
        if values:
            overrides[param] = values
    model = LaunchConfiguration("model").perform(context)
    if model:
        overrides["model"] = model
    return [
        Node(
            package="panoptic_ros",
            executable="panoptic_node",
            name="panoptic",
            namespace=LaunchConfiguration("namespace").perform(context),
            parameters=[LaunchConfiguration("params_file").perform(context), overrides],
            output="screen",
            emulate_tty=True,
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
            OpaqueFunction(function=_node),
        ]
    )
