"""The node's costs: the ROS layer (receive, convert, publish every output) beside the pipeline's own
time per frame at 640x480 and 1920x1080, the frame rate the node sustains over real DDS with the
shipped model, and (on a GPU) end-to-end latency percentiles of the frame engine.

``python -m benchmarks.run node`` (``-- --skip-dds`` leaves out the node process run; ``--device``
picks cpu, cuda or all). The DDS runs load the shipped Fast DDS profile, as the launch files and
``make demo`` do (``--fastdds-profile none``: the middleware's defaults, whose 512 KB shared-memory
segment sends a 640x480 image in fragments, 12 ms from its reception to the node's callback against
1 ms with the profile). CPU figures are ratios to the pipeline measured in the same run; absolute
times are printed for a GPU only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import benchmark_devices, device_name
from panoptic_ros.backends.registry import precision_options
from panoptic_ros.core.image_codec import image_to_color
from panoptic_ros.data.synthetic import generate
from panoptic_ros.runtime import FrameEngine, FrameResult, InputFrame
from panoptic_ros.runtime.outputs import FRAME_OUTPUTS, OutputContext
from panoptic_ros.runtime.pipeline import PanopticPipeline

SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}
MODEL = "engines/panoptic_synthetic.onnx"


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _frame(size: tuple[int, int]) -> np.ndarray:
    import cv2

    sample = next(generate(1, seed=11))
    return np.ascontiguousarray(cv2.resize(sample.image, size[::-1], interpolation=cv2.INTER_LINEAR))


def ros_layer(repeats: int) -> None:
    """Per frame on this CPU: receive (deserialize the Image), convert to RGB, and build + serialize
    every output (what ``publish`` does), against the pipeline's own time on the same frame."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from panoptic_ros.ros.conversions import array_to_image_msg, to_ros
    from panoptic_ros.runtime.memory import keep_freed_memory

    keep_freed_memory()  # as the node's executables do
    pipeline = PanopticPipeline(MODEL, backend="onnxruntime", device="cpu")
    engine = FrameEngine(pipeline)
    context = OutputContext(engine.label_set, engine.label_divisor, engine.score_threshold(), "status")
    print(
        "| frame | pipeline (ms, reference) | receive | convert | publish all outputs "
        "| ROS layer / pipeline |"
    )
    print("|---|---|---|---|---|---|")
    for name, size in SIZES.items():
        rgb = _frame(size)
        header = Header(frame_id="camera")
        wire = serialize_message(array_to_image_msg(rgb, "rgb8", header))
        received = deserialize_message(wire, Image)
        frame = InputFrame("cam", rgb, 0, "camera", overlay=True)
        result: list[FrameResult] = []

        def run_pipeline(frame: InputFrame = frame, out: list[FrameResult] = result) -> None:
            engine.reset()
            out[:] = engine.process([frame])

        pipeline_ms = _median_ms(run_pipeline, repeats)
        res = result[0]

        def publish_all(res: FrameResult = res) -> None:
            for output in FRAME_OUTPUTS:
                message = output.describe(res, context)
                if message is not None and not output.package:  # vision_msgs is not on PyPI
                    serialize_message(to_ros(message))

        receive_ms = _median_ms(lambda wire=wire: deserialize_message(wire, Image), repeats)
        convert_ms = _median_ms(lambda msg=received: image_to_color(msg, "rgb"), repeats)
        publish_ms = _median_ms(publish_all, repeats)
        layer = receive_ms + convert_ms + publish_ms
        print(
            f"| {name} | {pipeline_ms:.1f} | {receive_ms / pipeline_ms:.3f}x "
            f"| {convert_ms / pipeline_ms:.3f}x | {publish_ms / pipeline_ms:.3f}x "
            f"| {layer / pipeline_ms:.3f}x |"
        )
    print("\n(ratios to the pipeline's time; the pipeline column is this CPU's reference, not a GPU figure)")


#: Camera encodings a robot's drivers publish, as the node converts them to its frames.
CAMERA_ENCODINGS = ("rgb8", "bgr8", "bgra8", "mono8", "yuv422", "jpeg")
#: Depth encodings, as the node converts them to meters.
DEPTH_ENCODINGS = ("16UC1", "32FC1")


def camera_conversion(repeats: int) -> None:
    """Per frame on this CPU: a received camera image made into the engine's frame as the node's
    decode makes it (:func:`~panoptic_ros.core.decode.camera_frame`: in the camera's own channel
    order; JPEG includes decoding it), per encoding, and a depth image made into meters
    (``depth_frame``), against the pipeline's own time on the same frame."""
    import cv2
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from panoptic_ros.core.decode import camera_frame, depth_frame
    from panoptic_ros.ros.conversions import array_to_compressed_msg, array_to_image_msg
    from panoptic_ros.runtime.memory import keep_freed_memory

    keep_freed_memory()
    engine = FrameEngine(PanopticPipeline(MODEL, backend="onnxruntime", device="cpu"))
    columns = (*CAMERA_ENCODINGS, *(f"depth {d}" for d in DEPTH_ENCODINGS))
    print("| frame | pipeline (ms, reference) | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, size in SIZES.items():
        rgb = _frame(size)
        frame = InputFrame("cam", rgb, 0, "camera", overlay=True)
        pipeline_ms = _median_ms(lambda frame=frame: (engine.reset(), engine.process([frame])), repeats)
        pixels = {
            "rgb8": rgb,
            "bgr8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            "bgra8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA),
            "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
            "yuv422": np.full((*size, 2), 128, dtype=np.uint8),
        }
        cells = []
        for encoding in CAMERA_ENCODINGS:
            if encoding == "jpeg":
                sent = array_to_compressed_msg(rgb, codec="jpeg", quality=90, order="rgb")
                msg = deserialize_message(serialize_message(sent), CompressedImage)
            else:
                msg = deserialize_message(
                    serialize_message(array_to_image_msg(pixels[encoding], encoding)), Image
                )
            compressed = encoding == "jpeg"
            ms = _median_ms(lambda msg=msg, c=compressed: camera_frame(msg, compressed=c), repeats)
            cells.append(f"{ms / pipeline_ms:.3f}x")
        millimeters = np.random.default_rng(1).integers(0, 8000, size, dtype=np.uint16)
        for encoding in DEPTH_ENCODINGS:
            depth = millimeters if encoding == "16UC1" else (millimeters / 1000).astype(np.float32)
            msg = deserialize_message(serialize_message(array_to_image_msg(depth, encoding)), Image)
            ms = _median_ms(lambda msg=msg: depth_frame(msg, compressed=False), repeats)
            cells.append(f"{ms / pipeline_ms:.3f}x")
        print(f"| {name} | {pipeline_ms:.1f} | " + " | ".join(cells) + " |")
    print("\n(ratios to the pipeline's time on the frame; JPEG includes decoding it)")


def sustained_rate(seconds: float, paced_hz: float, precision: str = "auto") -> None:
    """The node in its own process, one 640x480 camera published reliably, outputs counted by a
    subscriber in another process: flooded (as fast as the publisher goes) for the rate the node
    sustains, and paced at ``paced_hz`` for how many frames it serves of those sent (none may be
    dropped); against the rate of the frame engine alone in this process (same frames, same model).
    ``precision``: the node's parameter (auto: on the CPU the shipped model's INT8 companion)."""
    import tempfile
    from pathlib import Path

    from sensor_msgs.msg import Image

    from panoptic_ros.ros.conversions import array_to_image_msg
    from tests.ros.node_harness import RELIABLE, NodeProcess, Peer, header

    rgb = _frame(SIZES["640x480"])
    options = precision_options(precision)
    pipeline = PanopticPipeline(MODEL, backend="onnxruntime", device="cpu", backend_options=options)
    processor = FrameEngine(pipeline)
    print(f"network: {pipeline.backend.describe()}\n")
    alone_ms = _median_ms(lambda: processor.process([InputFrame("cam", rgb, 0, overlay=False)]), 20)
    print(
        "| input | sent (Hz) | frames sent | frames out | node output (Hz) | processor alone (Hz) "
        "| the node's final counts |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, period in (("flooded", 0.005), (f"paced {paced_hz:g} Hz", 1.0 / paced_hz)):
        with tempfile.TemporaryDirectory() as tmp:
            params = {
                "image_topics": ["/bench/image_raw"],
                "backend": "onnxruntime",
                "device": "cpu",
                "qos.mode": "explicit",
                "qos.reliability": "reliable",
                "diagnostics_period": 0.5,
                "precision": precision,
            }
            node = NodeProcess(Path(tmp), params, name="panoptic_bench")
            peer = Peer("panoptic_bench_peer")
            try:
                peer.listen("/bench/panoptic/semantic", Image)
                pub = peer.publisher("/bench/image_raw", Image, RELIABLE)
                peer.wait_for(lambda pub=pub: pub.get_subscription_count() > 0, "the node")
                for k in range(10):  # warm-up frames, not counted
                    pub.publish(array_to_image_msg(rgb, "rgb8", header(500_000_000 + k)))
                    time.sleep(0.1)
                time.sleep(1.0)
                peer.received["/bench/panoptic/semantic"].clear()
                start = time.monotonic()
                k = 0
                while time.monotonic() - start < seconds:
                    pub.publish(array_to_image_msg(rgb, "rgb8", header(1_000_000_000 + k)))
                    k += 1
                    next_at = start + k * period
                    time.sleep(max(0.0, next_at - time.monotonic()))
                time.sleep(1.0)
                got = peer.received["/bench/panoptic/semantic"]
                span = got[-1][0] - got[0][0] if len(got) > 1 else float("nan")
                rate = (len(got) - 1) / span
            finally:
                peer.close()
                node.stop()
            counts = _final_counts(node.log_path.read_text(errors="replace"))
        print(
            f"| 640x480 rgb8, 1 camera, {label} | {k / seconds:.1f} | {k} | {len(got)} | {rate:.1f} | "
            f"{1000 / alone_ms:.1f} | {counts} |"
        )


def _final_counts(log: str) -> str:
    """The node's own account of the camera at shutdown (received = published + dropped + ...), warm-up
    frames included."""
    lines = [line for line in log.splitlines() if "final counts" in line]
    return lines[-1].split(": ", 1)[-1].strip() if lines else "(no final counts in the node log)"


def gpu_latency(device: torch.device, frames: int) -> None:
    """End-to-end latency of the frame engine on a GPU (upload, inference, fusion, tracking, label
    maps back on the host), torch backend, percentiles over ``frames`` frames of a sequence."""
    pipeline = PanopticPipeline(MODEL, backend="torch", device=str(device))
    processor = FrameEngine(pipeline)
    print(f"{device_name(device)}, torch backend\n")
    print("| frame | p50 (ms) | p95 (ms) | p99 (ms) | frames/s at p50 |")
    print("|---|---|---|---|---|")
    import cv2

    for name, size in SIZES.items():
        seq = [
            np.ascontiguousarray(cv2.resize(s.image, size[::-1]))
            for s in generate(1, seed=5, sequence_length=min(frames, 60))
        ]
        processor.reset()
        for k in range(5):
            processor.process([InputFrame("cam", seq[k % len(seq)], k * 10**8, overlay=True)])
        times = []
        for k in range(frames):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            processor.process([InputFrame("cam", seq[k % len(seq)], (k + 5) * 10**8, overlay=True)])
            torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
        p50, p95, p99 = np.percentile(times, [50, 95, 99])
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {p99:.2f} | {1000 / p50:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_node")
    parser.add_argument("--device", default="all", choices=("all", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the node flood run")
    parser.add_argument("--skip-dds", action="store_true", help="skip the node process runs")
    parser.add_argument("--paced-hz", type=float, default=30.0, help="camera rate of the paced node run")
    parser.add_argument("--frames", type=int, default=200, help="frames of the GPU latency run")
    parser.add_argument(
        "--fastdds-profile",
        default=None,
        help="Fast DDS profile of the DDS runs (default: $FASTDDS_DEFAULT_PROFILES_FILE if set, else the "
        "shipped config/fastdds_large_images.xml, as the launch files and make demo load it; 'none': "
        "the middleware's defaults)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "int8"),
        default="auto",
        help="the node's precision in the DDS runs (auto: the INT8 companion on the CPU)",
    )
    args, _ = parser.parse_known_args(argv)
    devices = benchmark_devices(args.device)
    if not devices:
        return 2
    if not args.skip_dds:
        from panoptic_ros.ros.launch_support import PROFILE_ENV, use_profile

        use_profile(args.fastdds_profile)  # before any participant: the node process inherits it
        profile = os.environ.get(PROFILE_ENV) or "none (the middleware's defaults)"
        print(f"Fast DDS profile of the DDS runs: {profile}\n")
    if torch.device("cpu") in devices:
        try:
            import rclpy  # noqa: F401
        except ImportError:
            print("rclpy is not installed: the ROS-layer and node-rate runs need it (make setup)")
        else:
            ros_layer(args.repeats)
            print()
            camera_conversion(args.repeats)
            print()
            if not args.skip_dds:
                sustained_rate(args.seconds, args.paced_hz, args.precision)
                print()
    for device in devices:
        if device.type == "cuda":
            gpu_latency(device, args.frames)
    return 0
