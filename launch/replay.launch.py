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


def _actions(context: LaunchContext) -> list[object]:
    from panoptic_ros.data.bags import image_topics

    bag = LaunchConfiguration("bag").perform(context)
    if not bag:
        raise RuntimeError("replay.launch.py: give bag:=/path/to/rosbag2_folder")
    text = LaunchConfiguration("cameras").perform(context)
    cameras = [t.strip() for t in text.split(",") if t.strip()] or sorted(image_topics(bag))
    # the player publishes reliably: a reliable subscription loses no fragments of large images
    overrides: dict[str, object] = {
        "image_topics": cameras,
        "qos.mode": "explicit",
        "qos.reliability": "reliable",
    }
    model = LaunchConfiguration("model").perform(context)
    if model:
        overrides["model"] = model
    play = ["ros2", "run", "panoptic_ros", "panoptic_ros_cli", "bag", "play", bag]
    play += ["--rate", LaunchConfiguration("rate").perform(context), "--topics", *cameras]
    if LaunchConfiguration("loop").perform(context).lower() in ("true", "1", "yes"):
        play.append("--loop")
    return [
        Node(
            package="panoptic_ros",
            executable="panoptic_node",
            name="panoptic",
            parameters=[LaunchConfiguration("params_file").perform(context), overrides],
            output="screen",
            emulate_tty=True,
        ),
        ExecuteProcess(cmd=play, output="screen"),
    ]


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
