"""The node plus bag playback (rosbag2 sqlite3 or MCAP, played with `panoptic-ros bag play`, no
rosbag2 install needed): `ros2 launch panoptic_ros replay.launch.py bag:=/data/drive1 rate:=0.5`.

Arguments: bag, rate, loop (true/false), cameras (comma-separated; empty: every image topic of the
bag), params_file, model, rviz (true: also start rviz2 with config/panoptic.rviz).
The player waits until the node subscribes, so no frame is lost to start-up.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription
from panoptic_ros.ros.launch_support import node_action, node_overrides, split_topics


def _actions(context: LaunchContext) -> list[object]:
    from panoptic_ros.data.bags import image_topics

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    bag = arg("bag")
    cameras = split_topics(arg("cameras")) or sorted(image_topics(bag))
    # the player publishes reliably: a reliable subscription loses no fragments of large images
    reliable = {"qos.mode": "explicit", "qos.reliability": "reliable"}
    overrides = node_overrides(cameras, model=arg("model"), extra=reliable)
    play = ["ros2", "run", "panoptic_ros", "panoptic_ros_cli", "bag", "play", bag, "--rate", arg("rate")]
    play += ["--topics", *cameras] + (["--loop"] if arg("loop").lower() in ("true", "1", "yes") else [])
    return [node_action(arg("params_file"), overrides), ExecuteProcess(cmd=play, output="screen")]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("panoptic_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="rosbag2 folder to play"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
            DeclareLaunchArgument("loop", default_value="false", description="start over at the end"),
            DeclareLaunchArgument("cameras", default_value="", description="comma-separated; empty: all"),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "panoptic.yaml"),
                description="node parameters (YAML)",
            ),
            DeclareLaunchArgument(
                "model", default_value="", description="ONNX model or engine (empty: shipped)"
            ),
            DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2"),
            OpaqueFunction(function=_actions),
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", os.path.join(share, "config", "panoptic.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
