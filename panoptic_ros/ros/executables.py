"""The node's executables: ``panoptic_node`` (configures and activates itself) and
``panoptic_lifecycle_node`` (starts unconfigured; a lifecycle manager drives it).

Both handle SIGINT and SIGTERM themselves (not rclpy's handler, which shuts the context down at
once): on either, the node stops serving, publishes its final counts on ``/diagnostics`` while the
middleware still runs, and exits 0. A refused start-up parameter or a failed configure prints one line
and exits 1; a worker that cannot go on (``PanopticNode.fault``) ends the process with exit code 1,
so launch ``respawn`` and supervisors notice.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from panoptic_ros.errors import ConfigError
from panoptic_ros.ros.node import NODE_NAME, PanopticNode
from panoptic_ros.runtime.memory import keep_freed_memory


def _create(name: str) -> PanopticNode | None:
    """The node, or None after printing why a start-up parameter was refused."""
    try:
        return PanopticNode()
    except (ConfigError, ParameterException) as err:
        print(f"[{name}] {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return None


def _spin(node: PanopticNode) -> int:
    """Serve until SIGINT/SIGTERM or a worker fault; then the final counts. Returns the exit code."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and not node.shutdown_requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        print(f"[{node.get_name()}] shutting down", file=sys.stderr)
        node.finish()
    finally:
        node.on_shutdown(None)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    if node.fault:
        print(f"[{node.get_name()}] exiting with status 1: the worker stopped: {node.fault}", file=sys.stderr)
        return 1
    return 0


def main_lifecycle(args: Sequence[str] | None = None) -> int:
    """``panoptic_lifecycle_node``: starts unconfigured; a lifecycle manager drives it."""
    keep_freed_memory()  # the per-frame images and messages reuse memory instead of faulting it in
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = _create(NODE_NAME)
    return 1 if node is None else _spin(node)


def main(args: Sequence[str] | None = None) -> int:
    """``panoptic_node``: configures and activates itself, then serves until shut down."""
    keep_freed_memory()  # the per-frame images and messages reuse memory instead of faulting it in
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = _create(NODE_NAME)
    if node is None:
        return 1
    for transition, what in ((node.trigger_configure, "configure"), (node.trigger_activate, "activate")):
        if transition() != TransitionCallbackReturn.SUCCESS:
            reason = node.error or "see the log above"
            print(f"[{node.get_name()}] could not {what}: {reason}", file=sys.stderr)
            node.destroy_node()
            rclpy.try_shutdown()
            return 1
    return _spin(node)


if __name__ == "__main__":
    sys.exit(main())
