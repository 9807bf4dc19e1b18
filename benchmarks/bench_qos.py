"""Which camera frames reach a subscriber over DDS: publisher QoS x image size x transport profile.

``python -m benchmarks.run qos`` (``-- --frames N --rate HZ``). For every cell, a publisher process
sends ``N`` ``sensor_msgs/Image`` frames (bgr8) at ``HZ`` to a subscriber process, both plain rclpy
on this machine's RMW (Fast DDS from the wheels), each in a process of its own as a camera driver and
the node would be; the table gives the frames received. Subscriber QoS: ``best effort`` is what
``qos.mode: sensor_data`` subscribes with; ``node default`` is what the node's default
(``qos.mode: match_publisher``, re-evaluated as publishers appear) settles on for that publisher
(:func:`panoptic_ros.runtime.arrivals.adopted_reliability`). Profiles: ``builtin`` (Fast DDS's
builtin transports) and ``large images`` (``config/fastdds_large_images.xml`` loaded by both processes through
``FASTDDS_DEFAULT_PROFILES_FILE``). Counts, not times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_images.xml"
SIZES = ((360, 480), (480, 640), (1080, 1920))
TOPIC = "/qos_bench/image_raw"


def _publish(args: argparse.Namespace) -> int:
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("qos_bench_pub")
    reliable = args.publisher == "reliable"
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    pub = node.create_publisher(Image, TOPIC, QoSProfile(depth=10, reliability=reliability))
    msg = Image(height=args.height, width=args.width, encoding="bgr8", step=3 * args.width)
    msg.data = np.random.default_rng(0).integers(0, 255, args.height * args.width * 3, np.uint8).tobytes()
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # the rest of discovery (both directions) settles
    for k in range(args.frames):
        msg.header.stamp.sec = k
        pub.publish(msg)
        time.sleep(1.0 / args.rate)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    import rclpy
    from sensor_msgs.msg import Image

    from panoptic_ros.ros.qos import camera_qos
    from panoptic_ros.runtime.arrivals import BEST_EFFORT, RELIABLE, Offer, adopted_reliability

    rclpy.init()
    node = rclpy.create_node("qos_bench_sub")
    offered = [Offer("camera", RELIABLE if args.publisher == "reliable" else BEST_EFFORT)]
    mode = "match_publisher" if args.subscriber == "node_default" else "sensor_data"
    qos = camera_qos(adopted_reliability(mode, BEST_EFFORT, offered), 1)
    stamps: set[int] = set()
    node.create_subscription(Image, TOPIC, lambda m: stamps.add(m.header.stamp.sec), qos)
    seen_publisher = False
    deadline = time.monotonic() + 30 + args.frames / args.rate
    while time.monotonic() < deadline and len(stamps) < args.frames:
        rclpy.spin_once(node, timeout_sec=0.05)
        publishers = node.count_publishers(TOPIC)
        if publishers:
            seen_publisher = True
        elif seen_publisher:
            break  # the publisher is done
    print(len(stamps), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _cell(
    args: argparse.Namespace, size: tuple[int, int], publisher: str, subscriber: str, profile: bool
) -> int:
    env = dict(os.environ)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    common = [
        f"--publisher={publisher}",
        f"--subscriber={subscriber}",
        f"--frames={args.frames}",
        f"--rate={args.rate}",
        f"--height={size[0]}",
        f"--width={size[1]}",
    ]
    run = [sys.executable, "-m", "benchmarks.bench_qos"]
    sub = subprocess.Popen(
        [*run, "--role=sub", *common], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    pub = subprocess.Popen([*run, "--role=pub", *common], cwd=REPO, env=env)
    pub.wait(timeout=120)
    out, _ = sub.communicate(timeout=120)
    return int(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_qos")
    parser.add_argument("--frames", type=int, default=20, help="frames per cell (default 20)")
    parser.add_argument("--rate", type=float, default=5.0, help="frames per second (default 5)")
    parser.add_argument("--role", choices=("matrix", "pub", "sub"), default="matrix")
    parser.add_argument("--publisher", default="reliable")
    parser.add_argument("--subscriber", default="best_effort")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    args, _ = parser.parse_known_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", "163")  # a domain of its own: other runs must not count in
    if args.role == "pub":
        return _publish(args)
    if args.role == "sub":
        return _subscribe(args)
    print(f"{args.frames} frames of bgr8 `sensor_msgs/Image` at {args.rate:g} Hz, one publisher process")
    print("and one subscriber process; frames received.\n")
    print("| profile | publisher | image | best effort (`sensor_data`) | node default (`match_publisher`) |")
    print("|---|---|---|---|---|")
    for profile in (False, True):
        for publisher in ("reliable", "best_effort"):
            for height, width in SIZES:
                kb = height * width * 3 / 1000
                best_effort = _cell(args, (height, width), publisher, "best_effort", profile)
                # a best-effort publisher: the node's default subscribes best effort too (same cell)
                default = (
                    _cell(args, (height, width), publisher, "node_default", profile)
                    if publisher == "reliable"
                    else best_effort
                )
                name = "large images" if profile else "builtin"
                print(
                    f"| {name} | {publisher.replace('_', ' ')} | {width}x{height} ({kb:.0f} KB) "
                    f"| {best_effort}/{args.frames} | {default}/{args.frames} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
