"""The node plus bag playback (rosbag2 sqlite3 or MCAP, played with `panoptic-ros bag play`, no
rosbag2 install needed): `ros2 launch panoptic_ros replay.launch.py bag:=/data/drive1 rate:=0.5`.

Arguments: bag, rate, loop (true/false), cameras (comma-separated; empty: the bag's cameras by the
rule `bag process` and `infer` use: no depth, ground truth or output images; each camera's depth and
camera_info topics are played and subscribed too), params_file, model, fastdds_profile (the shipped
large-image profile, loaded by the node and the player; '' or none: off), rviz (true: also start
rviz2 with config/panoptic.rviz). The player waits until the node subscribes, so no frame is lost to
start-up.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription
from panoptic_ros.ros.launch_support import (
    PROFILE,
    bag_inputs,
    node_action,
    node_overrides,
    profile_env,
    split_topics,
)


def _actions(context: LaunchContext) -> list[object]:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    bag = arg("bag")
    inputs, topics = bag_inputs(bag, split_topics(arg("cameras")))
    # the player publishes reliably: subscribing reliable from the start loses no frame to the switch
    reliable = {"qos.mode": "explicit", "qos.reliability": "reliable"}
    cameras = inputs.pop("image_topics")
    overrides = node_overrides(cameras, model=arg("model"), extra={**inputs, **reliable})
    play = ["ros2", "run", "panoptic_ros", "panoptic_ros_cli", "bag", "play", bag, "--rate", arg("rate")]
    play += ["--topics", *topics] + (["--loop"] if arg("loop").lower() in ("true", "1", "yes") else [])
    env = profile_env(arg("fastdds_profile"))
    return [
        node_action(arg("params_file"), overrides, env=env),
        ExecuteProcess(cmd=play, output="screen", additional_env=env),
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
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value=os.path.join(share, PROFILE),
                description="Fast DDS XML profile for images over ~500 KB ('' or none: off)",
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
