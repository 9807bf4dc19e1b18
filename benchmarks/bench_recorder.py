"""The CPU time ``bag record`` spends per message received: its wait set against rclpy's executor.

``python -m benchmarks.run recorder`` (``-- --seconds S --rate HZ``). A publisher process sends the
node's outputs of ``make demo`` (three cameras: semantic, instance ids and overlay images at 240 x 480,
instances and markers as small messages) plus two ground-truth images per camera, at ``HZ`` each,
reliably. This process records them twice per round, alternating: with
:func:`panoptic_ros.ros.bag_recorder.record` (one wait set, :func:`~panoptic_ros.ros.bag_recorder.receive`)
and, as the reference, the same subscriptions and bag writer served by ``SingleThreadedExecutor``
(the recorder before it had its own loop). The figure is the recording thread's CPU time between its
first and its last message, per message, as a ratio to the reference's in the same round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = {"semantic": ("mono8", 1), "instance_ids": ("32SC1", 4), "overlay": ("bgr8", 3)}
IMAGES_GT = {"gt_semantic": ("mono8", 1), "gt_instance_ids": ("32SC1", 4)}
SMALL = ("instances", "markers")
CAMERAS = 3
SIZE = (240, 480)


def _topics() -> dict[str, str]:
    """topic -> type, as ``record`` takes them."""
    topics = {}
    for camera in range(CAMERAS):
        for name in (*IMAGES, *IMAGES_GT):
            topics[f"/rec_bench/cam{camera}/{name}"] = "sensor_msgs/msg/Image"
        for name in SMALL:
            topics[f"/rec_bench/cam{camera}/{name}"] = "std_msgs/msg/String"
    return topics


def _publish(args: argparse.Namespace) -> int:
    import array

    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("rec_bench_pub")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # as deep as the recorder's
    messages = []
    for topic, msgtype in _topics().items():
        if msgtype.endswith("Image"):
            encoding, channels = {**IMAGES, **IMAGES_GT}[topic.rsplit("/", 1)[1]]
            msg = Image(height=SIZE[0], width=SIZE[1], encoding=encoding, step=channels * SIZE[1])
            msg.data = array.array("B", bytes(channels * SIZE[0] * SIZE[1]))
            messages.append((node.create_publisher(Image, topic, qos), msg))
        else:
            messages.append((node.create_publisher(String, topic, qos), String(data="x" * 400)))
    deadline = time.monotonic() + 60
    while any(p.get_subscription_count() == 0 for p, _ in messages) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    period = 1.0 / args.rate
    start = time.monotonic()
    for k in range(round(args.seconds * args.rate)):
        time.sleep(max(0.0, start + k * period - time.monotonic()))
        for pub, msg in messages:
            pub.publish(msg)
    for pub, _ in messages:  # reliable: every message acknowledged before this process ends
        pub.wait_for_all_acked(Duration(seconds=10))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _with_executor(
    out: Path, topics: dict[str, str], stop: threading.Event, on_message: Callable[[str, int], None]
) -> None:
    """The reference: the recorder's subscriptions and bag writer, served by rclpy's executor."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from panoptic_ros.data.bag_io import BagWriter
    from panoptic_ros.ros.bag_common import ros_message_class
    from panoptic_ros.ros.bag_recorder import graph_qos

    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node("rec_bench_executor", context=context)
        with BagWriter(out, "sqlite3") as writer:

            def write(topic: str, data: bytes, info: dict[str, int]) -> None:
                received = int(info.get("received_timestamp", 0)) or time.time_ns()
                writer.write_raw(topic, topics[topic], data, received)
                on_message(topic, received)

            for topic, msgtype in topics.items():
                writer.add_topic(topic, msgtype)
                node.create_subscription(
                    ros_message_class(msgtype),
                    topic,
                    lambda data, info, t=topic: write(t, data, info),
                    graph_qos(node, topic, msgtype),
                    raw=True,
                )
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)
            executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _round(variant: str, args: argparse.Namespace, folder: Path) -> tuple[float, int]:
    """CPU ms of the recording thread per message, and the messages recorded."""
    from panoptic_ros.ros.bag_recorder import record

    topics = _topics()
    expected = len(topics) * round(args.seconds * args.rate)
    stop = threading.Event()
    seen = {"count": 0, "first": 0.0, "last": 0.0}

    def on_message(topic: str, _: int) -> None:
        now = time.thread_time()  # the recording thread's CPU time
        seen["count"] += 1
        if seen["count"] == 1:
            seen["first"] = now
        seen["last"] = now
        if seen["count"] >= expected:
            stop.set()

    out = folder / f"{variant}-{time.monotonic_ns()}"
    if variant == "executor":
        thread = threading.Thread(target=_with_executor, args=(out, topics, stop, on_message))
    else:
        specs = [f"{t}={m}" for t, m in topics.items()]
        thread = threading.Thread(
            target=record, args=(out, specs), kwargs={"stop": stop, "on_message": on_message}
        )
    thread.start()
    publisher = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_recorder", "--role", "pub",
         "--seconds", str(args.seconds), "--rate", str(args.rate)],
        cwd=REPO,
    )  # fmt: skip
    publisher.wait(timeout=120 + args.seconds)
    while not stop.is_set():  # the last messages: until one second passes without any
        count = seen["count"]
        if stop.wait(1.0) or seen["count"] == count:
            break
    stop.set()
    thread.join(60)
    count = seen["count"]
    return (1e3 * (seen["last"] - seen["first"]) / max(count - 1, 1)), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_recorder")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of publishing per recording")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second on each topic")
    parser.add_argument("--rounds", type=int, default=2, help="alternated pairs of recordings")
    parser.add_argument("--role", choices=("bench", "pub"), default="bench")
    args, _ = parser.parse_known_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", "164")  # a domain of its own
    if args.role == "pub":
        return _publish(args)
    topics = _topics()
    print(
        f"{len(topics)} topics ({CAMERAS} cameras' outputs and ground truth, images {SIZE[1]}x{SIZE[0]}) "
        f"at {args.rate:g} Hz each for {args.seconds:g} s, reliable, one publisher process\n"
    )
    sent = len(topics) * round(args.seconds * args.rate)
    print(f"| round | of {sent} messages: executor (reference) | wait set | CPU per message: ratio |")
    print("|---|---|---|---|")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            reference, n_reference = _round("executor", args, Path(tmp))
            ours, n_ours = _round("wait set", args, Path(tmp))
            if min(n_reference, n_ours) < 2 or reference <= 0:
                print(f"| {k + 1} | {n_reference} | {n_ours} | too few messages to compare |")
                continue
            ratios.append(ours / reference)
            print(f"| {k + 1} | {n_reference} | {n_ours} | {ours / reference:.2f}x |")
    if ratios:
        print(
            f"\nmedian ratio {statistics.median(ratios):.2f}x (CPU time of the recording thread per message)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
