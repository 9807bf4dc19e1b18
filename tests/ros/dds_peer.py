"""Publisher process for tests/ros/test_dds.py: publishes every sample of samples.SAMPLES over DDS.

Each sample goes out on a reliable, transient-local topic once a subscriber is matched, then the
process stays up (so late data can still be fetched) until its standard input closes or a bound of
60 s passes. Prints READY when its publishers exist.
"""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from tests.ros.samples import SAMPLES

QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("panoptic_dds_peer")
    publishers = {
        topic: node.create_publisher(msg_type, topic, QOS) for topic, (msg_type, _) in SAMPLES.items()
    }
    for topic, (_, build) in SAMPLES.items():
        publishers[topic].publish(build())
    print("READY", flush=True)
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    deadline = time.monotonic() + 60.0
    while not stdin_closed.is_set() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
