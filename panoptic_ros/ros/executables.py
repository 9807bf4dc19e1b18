"""The node's executables: ``panoptic_node`` (configures and activates itself) and
``panoptic_lifecycle_node`` (starts unconfigured; a lifecycle manager drives it)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn

from panoptic_ros.ros.node import PanopticNode


def _spin(node: PanopticNode) -> None:
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        # Ctrl-C / SIGINT from `ros2 launch`: the context is already shut down, so no rosout logging
        print(f"[{node.get_name()}] shutting down", file=sys.stderr)
    finally:
        node.on_shutdown(None)
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()


def main_lifecycle(args: Sequence[str] | None = None) -> int:
    """``panoptic_lifecycle_node``: starts unconfigured; a lifecycle manager drives it."""
    rclpy.init(args=args)
    _spin(PanopticNode())
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """``panoptic_node``: configures and activates itself, then serves until shut down."""
    rclpy.init(args=args)
    node = PanopticNode()
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("could not configure; see the error above")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("could not activate")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    _spin(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
