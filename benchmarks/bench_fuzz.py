"""Fuzz the node and account for every frame: thousands of mixed camera messages (good and malformed
raw images, good and damaged JPEGs, huge PNGs and JPEG bombs) published as fast as DDS takes them into
the node in its own process, then the node's final counts.

``python -m benchmarks.run fuzz`` (``-- --messages N --seed S``). The run checks, per camera,
``sent = received + lost before the callback`` and ``received = published + dropped + bad + failed +
in flight`` from the node's final ``/diagnostics`` (published at its shutdown), and that the node never
died. Counts, not times: the figures do not depend on the machine's speed except for how the frames
split between published and dropped.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image

    from panoptic_ros.core.image_encode import array_to_compressed
    from panoptic_ros.data.synthetic import generate
    from panoptic_ros.ros.conversions import array_to_image_msg, compressed_msg
    from tests.core.test_payload import _jpeg, declared, huge_png
    from tests.ros.node_harness import RELIABLE, NodeProcess, Peer, header

    parser = argparse.ArgumentParser(prog="bench_fuzz")
    parser.add_argument("--messages", type=int, default=3000, help="messages per camera (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--interval", type=float, default=0.005, help="seconds between messages (default 0.005)"
    )
    args, _ = parser.parse_known_args(argv)
    # a domain of its own, as the tests do: nodes of other runs on this machine must not count in
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + args.seed % 100))
    rng = np.random.default_rng(args.seed)
    image = next(generate(1, seed=3, height=240, width=320)).image
    jpeg = array_to_compressed(image, codec="jpeg", order="rgb")
    good_jpeg = jpeg.data.tobytes()
    payloads = {
        "good": good_jpeg,
        "cut": good_jpeg[: len(good_jpeg) // 2] + b"\xff\xd9",
        "liar": declared(_jpeg(8, 8), 1024, 1024),
        "bomb": declared(_jpeg(8, 8), 20000, 20000),
        "huge png": huge_png(4096 * 2),
        "garbage": rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
    }
    raw, jpg = "/fuzz0/image_raw", "/fuzz1/image_raw/compressed"
    params = {
        "image_topics": [raw, jpg],
        "backend": "onnxruntime",
        "device": "cpu",
        "qos.mode": "explicit",
        "qos.reliability": "reliable",
        "qos.depth": 1,  # only the newest waits in DDS too: replaced messages are lost before the callback
        "diagnostics_period": 0.5,
        "log_throttle": 60.0,
    }
    sent = {raw: 0, jpg: 0}
    kinds: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeProcess(Path(tmp), params, name="panoptic_fuzz")
        peer = Peer("panoptic_fuzz_peer")
        final: dict[str, dict[str, str]] = {}
        start = time.monotonic()
        try:
            peer.listen("/diagnostics", DiagnosticArray)
            peer.publisher(raw, Image, RELIABLE)
            peer.publisher(jpg, CompressedImage, RELIABLE)
            peer.wait_for(
                lambda: all(p.get_subscription_count() for p in peer.publishers.values()), "the node"
            )
            stamp = 1_800_000_000_000_000_000
            for _ in range(args.messages):
                stamp += 10_000_000
                kind = str(rng.choice(["good", "good", "short", "step", "encoding", "size"]))
                msg = array_to_image_msg(image, "rgb8", header(stamp))
                if kind == "short":
                    msg.data = msg.data[: int(rng.integers(0, len(msg.data)))]
                elif kind == "step":
                    msg.step = int(rng.integers(0, msg.step))
                elif kind == "encoding":
                    msg.encoding = str(rng.choice(["rgb9", "", "jpeg", "16UC4"]))
                elif kind == "size":
                    msg.height, msg.width = int(rng.integers(0, 70000)), int(rng.integers(0, 70000))
                peer.publish(raw, msg)
                name = str(rng.choice(list(payloads)))
                fields = jpeg._replace(data=np.frombuffer(payloads[name], np.uint8))
                peer.publish(jpg, compressed_msg(fields, header(stamp)))
                time.sleep(args.interval)
                for key in (f"raw {kind}", f"jpeg {name}"):
                    kinds[key] = kinds.get(key, 0) + 1
                sent[raw] += 1
                sent[jpg] += 1

            def counts(camera: str) -> dict[str, str]:
                for msg in reversed(peer.messages("/diagnostics")):
                    for status in msg.status:
                        if status.name == f"panoptic_fuzz: {camera}":
                            return {kv.key: kv.value for kv in status.values}
                return {}

            def arrived(camera: str) -> bool:
                c = counts(camera)
                return (
                    int(c.get("frames_received", 0)) + int(c.get("frames_lost_before_callback", 0))
                    >= sent[camera]
                )

            try:
                peer.wait_for(lambda: arrived(raw) and arrived(jpg), "every message counted", 300)
                alive = node.alive()
                code = node.stop()
                peer.wait_for(lambda: counts(raw).get("final") == "true", "the final counts")
            except AssertionError:
                print(f"sent {sent}; last counts {raw}: {counts(raw)}, {jpg}: {counts(jpg)}")
                print(node.log()[-3000:])
                raise
            final = {camera: counts(camera) for camera in (raw, jpg)}
        finally:
            peer.close()
            node.stop()
        seconds = time.monotonic() - start
    print(
        f"{args.messages} messages per camera in {seconds:.0f} s (seed {args.seed}, one every "
        f"{args.interval * 1e3:.0f} ms); node alive to the end: {alive}, exit code {code}\n"
    )
    columns = ("received", "lost_before_callback", "published", "dropped", "bad", "failed", "in_flight")
    print("| camera | sent | " + " | ".join(columns) + " | sent = received + lost | received balances |")
    print("|" + "---|" * (len(columns) + 4))
    ok = alive and code == 0
    for camera, values in final.items():
        v = {c: int(values.get(f"frames_{c}", 0)) for c in columns}
        first = sent[camera] == v["received"] + v["lost_before_callback"]
        second = v["received"] == sum(v[c] for c in ("published", "dropped", "bad", "failed", "in_flight"))
        ok = ok and first and second
        print(
            f"| {camera} | {sent[camera]} | "
            + " | ".join(str(v[c]) for c in columns)
            + f" | {first} | {second} |"
        )
    bad_kinds = ("malformed", "unsupported_encoding", "corrupt_compressed", "too_large")
    for camera, values in final.items():
        print(f"\n{camera}: " + ", ".join(f"{k} {values.get(k, 0)}" for k in bad_kinds))
    print("\nsent by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 0 if ok else 1
