"""``make demo``: the node live, over real DDS, on a synthetic camera bag.

1. ``bag synth``: a bag of synthetic driving cameras with depth, camera_info and ground truth;
2. the node (``panoptic_node``) in its own process, configured for those cameras;
3. a recorder subscribed to the node's outputs and the bag's ground truth;
4. ``bag play`` of the bag into the node with its original timing (scaled by ``rate``);
5. from the recorded bag: overlays (PNG), frames in / out, rate, drops, latency percentiles (publish
   of a frame to its label image's receipt by DDS in the recorder), PQ / STQ against ground truth.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from panoptic_ros.apps.bag_eval import evaluate_bag
from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.topics import (
    camera_info_topic,
    depth_topic,
    ground_truth_topic,
    join_topic,
    output_namespace,
)
from panoptic_ros.data.bag_io import read_messages
from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag
from panoptic_ros.errors import PanopticRosError
from panoptic_ros.ros.bag_player import Published, play
from panoptic_ros.ros.bag_recorder import record
from panoptic_ros.ros.launch_support import PROFILE_ENV, use_profile
from panoptic_ros.runtime.memory import freeze_long_lived
from panoptic_ros.runtime.os_threads import name_os_thread

IMAGE = "sensor_msgs/msg/Image"
#: The stream's start-up, reported apart: frames published within this of the first (ns).
START_NS = 1_000_000_000
NODE_NAME = "panoptic_demo"


@dataclass
class DemoSummary:
    """The numbers ``make demo`` prints and writes to ``summary.json``."""

    cameras: int
    frames_in: int
    frames_out: int
    frames_dropped: int
    bad_frames: int
    seconds: float
    received: int
    published: int
    failed: int
    in_flight: int
    lost_before_callback: int
    output_rate_hz: float
    latency_ms: dict[str, float]
    pq: float
    pq_things: float
    pq_stuff: float
    stq: float
    aq: float
    backend: str
    dds_profile: str = ""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def balances(self) -> bool:
        """Whether the node's final counts account for every frame it received."""
        return self.received == (
            self.published + self.frames_dropped + self.bad_frames + self.failed + self.in_flight
        )

    @property
    def undelivered(self) -> int:
        """Frames sent that neither reached the node's callback nor show as a gap in the sequence
        numbers there: a publisher's first messages, if lost (the node cannot tell them from messages
        sent before it subscribed), and frames still in the middleware when the node stopped."""
        return self.frames_in - self.received - self.lost_before_callback

    def table(self) -> str:
        lat = self.latency_ms
        return "\n".join(
            [
                f"cameras            {self.cameras}",
                f"frames in / out    {self.frames_in} / {self.frames_out} "
                f"({self.frames_dropped} dropped by the node's newest-frame slots, {self.bad_frames} bad)",
                f"accounted for      sent {self.frames_in} = received {self.received} + lost before the "
                f"node's callback {self.lost_before_callback} + not delivered {self.undelivered}; received "
                f"{self.received} = published {self.published} + dropped {self.frames_dropped} + bad "
                f"{self.bad_frames} + failed {self.failed} + in flight {self.in_flight}"
                f"{'' if self.balances else ' (does not balance: see the node log)'}",
                f"output rate        {self.output_rate_hz:.1f} frames/s over {self.seconds:.1f} s "
                f"({self.backend})",
                f"latency (ms)       p50 {lat['p50']:.0f}  p90 {lat['p90']:.0f}  p99 {lat['p99']:.0f}  "
                f"max {lat['max']:.0f}  (bag publish -> label image received by DDS in the recorder); "
                f"the stream's first second: max {lat['start_max']:.0f}",
                f"DDS profile        {self.dds_profile or 'the middleware defaults'}",
                f"PQ                 {self.pq:.1f} (things {self.pq_things:.1f}, stuff {self.pq_stuff:.1f})",
                f"STQ                {self.stq:.1f} (AQ {self.aq:.1f})",
            ]
        )


def _node_params(cameras: list[str], backend: str, device: str, model: str) -> dict[str, Any]:
    return {
        "image_topics": cameras,
        "camera_info_topics": [camera_info_topic(c) for c in cameras],
        "depth_topics": [depth_topic(c) for c in cameras],
        "backend": backend,
        "device": device,
        "model": model,
        # the player publishes reliably: a reliable subscription loses no fragments of large images
        "qos.mode": "explicit",
        "qos.reliability": "reliable",
        "qos.depth": 1,  # only the newest frame waits in DDS too
        # the recorder shares the two cores with the node: a reliable writer keeping only the last 2
        # samples can replace one the recorder has not acknowledged yet (seen: one label image of 16
        # missing from the recording); 10 gives it two seconds of slack at 5 Hz
        "output_qos_depth": 10,
        "diagnostics_period": 0.5,
    }


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the demo process dies, so no node outlives an interrupted demo."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_node(out: Path, params: dict[str, Any]) -> tuple[subprocess.Popen[bytes], Path]:
    params_file = out / "node_params.yaml"
    params_file.write_text(yaml.safe_dump({NODE_NAME: {"ros__parameters": params}}))
    log_path = out / "node.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panoptic_ros.ros.executables",
                "--ros-args",
                "-r",
                f"__node:={NODE_NAME}",
                "--params-file",
                str(params_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
    return proc, log_path


def _stop_node(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _contact_sheet(bag: Path, overlays: list[str], path: Path, per_camera: int = 4) -> int:
    """Tile ``per_camera`` evenly spaced overlays of each camera (rows) into one PNG; returns tiles."""
    frames: dict[str, list[np.ndarray]] = defaultdict(list)
    for message in read_messages(bag, overlays):
        if message.msg is not None:
            frames[message.topic].append(image_to_array(message.msg))
    rows = []
    for topic in overlays:
        images = frames.get(topic, [])
        if not images:
            continue
        picks = [images[int(k)] for k in np.linspace(0, len(images) - 1, min(per_camera, len(images)))]
        h, w = picks[0].shape[:2]
        tiles = [cv2.resize(p, (w, h)) for p in picks] + [np.zeros((h, w, 3), np.uint8)] * (
            per_camera - len(picks)
        )
        row = np.concatenate(tiles, axis=1)
        cv2.putText(row, topic, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(row)
    if not rows:
        return 0
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    cv2.imwrite(str(path), sheet)  # overlays are bgr8: OpenCV's order
    return sum(min(per_camera, len(frames.get(t, []))) for t in overlays)


def _latencies(
    bag: Path, semantic_topics: dict[str, str], published: dict[tuple[str, int], int]
) -> list[tuple[int, float]]:
    """Each input frame's publish time (ns) and the milliseconds from it to its label image's bag time
    (DDS receipt)."""
    out = []
    for message in read_messages(bag, list(semantic_topics)):
        stamp = message.stamp_ns
        sent = published.get((semantic_topics[message.topic], stamp)) if stamp is not None else None
        if sent is not None:
            out.append((sent, (message.log_time_ns - sent) / 1e6))
    return out


def _last_diagnostics(bag: Path, cameras: list[str]) -> tuple[dict[str, dict[str, str]], str]:
    """Each camera's last diagnostics values (the node's final counts, published at its shutdown)."""
    values: dict[str, dict[str, str]] = {}
    backend = ""
    for message in read_messages(bag, ["/diagnostics"]):
        for status in message.msg.status if message.msg is not None else []:
            kv = {v.key: v.value for v in status.values}
            camera = status.name.split(": ", 1)[-1]
            if camera in cameras:
                values[camera] = kv
            backend = kv.get("backend", backend)
    return values, backend


def run_live_demo(
    out: Path,
    *,
    cameras: int = 3,
    frames: int = 40,
    size: tuple[int, int] = (240, 480),
    rate: float = 1.0,
    fastdds_profile: str | None = None,
    model: str = "",
    backend: str = "auto",
    device: str = "auto",
) -> DemoSummary:
    """Run the live demo into ``out`` (see the module docstring) and return its summary.

    ``fastdds_profile``: the Fast DDS XML profile of the node, player and recorder, as the launch files
    give it; None: ``$FASTDDS_DEFAULT_PROFILES_FILE`` if set, else the shipped one; '' or 'none': the
    middleware's defaults, whose 512 KB shared-memory segment overflows with three cameras' images
    and depth (frames lost before the node, others resent seconds late: ``docs/BENCHMARKS.md``)."""
    out.mkdir(parents=True, exist_ok=True)
    use_profile(fastdds_profile)
    for stale in ("input_bag", "recorded_bag", "contact_sheet.png", "summary.json", "summary.txt"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    synth = write_synthetic_bag(
        out / "input_bag", SynthBagConfig(cameras=cameras, frames=frames, size=size, seed=1000)
    )
    image_topics = list(synth.image_topics)
    print(
        f"wrote {synth.messages} messages ({cameras} cameras x {frames} frames, {size[1]}x{size[0]}) "
        f"to {synth.path}"
    )

    outputs = ("semantic", "instance_ids", "instances", "overlay", "markers")
    types = {
        "semantic": IMAGE,
        "instance_ids": IMAGE,
        "instances": "panoptic_ros/msg/PanopticInstanceArray",
        "overlay": IMAGE,
        "markers": "visualization_msgs/msg/MarkerArray",
    }
    specs = [
        f"{join_topic(output_namespace(c), 'panoptic', o)}={types[o]}" for c in image_topics for o in outputs
    ]
    specs += [
        f"{ground_truth_topic(c, g)}={IMAGE}" for c in image_topics for g in ("semantic", "instance_ids")
    ]
    specs += [
        f"{join_topic(output_namespace(c), 'panoptic', 'categories')}=panoptic_ros/msg/CategoryArray"
        for c in image_topics
    ]
    specs += ["/diagnostics=diagnostic_msgs/msg/DiagnosticArray"]

    node, node_log = _start_node(out, _node_params(image_topics, backend, device, model))
    stop, ready = threading.Event(), threading.Event()
    recorded: dict[str, Any] = {}
    last_message = [time.monotonic()]

    def recorder() -> None:
        name_os_thread("demo_recorder")

        def seen(topic: str, received_ns: int) -> None:
            if topic != "/diagnostics":  # periodic: not a sign of frames still coming
                last_message[0] = time.monotonic()

        recorded["report"] = record(out / "recorded_bag", specs, stop=stop, ready=ready, on_message=seen)

    thread = threading.Thread(target=recorder, name="recorder", daemon=True)
    thread.start()
    published: dict[tuple[str, int], int] = {}
    try:
        if not ready.wait(60):
            raise PanopticRosError("the recorder did not start within 60 s")

        def sent(item: Published) -> None:
            if item.stamp_ns is not None and item.topic in image_topics:
                published[(item.topic, item.stamp_ns)] = time.time_ns()

        freeze_long_lived()  # no full collection pauses the player (frames would leave late, bunched)
        start = time.monotonic()
        report = play(
            synth.path, rate=rate, on_publish=sent, wait_for=image_topics, wait_s=120.0, settle_s=1.0
        )
        print(report.summary())
        # let the last frames through the node, then stop recording
        while time.monotonic() - last_message[0] < 2.0 and time.monotonic() - start < 600:
            time.sleep(0.1)
        seconds = time.monotonic() - start
    finally:
        code = _stop_node(node)  # first: the node publishes its final counts while the recorder runs
        time.sleep(1.0)
        stop.set()
        thread.join(timeout=60)
    if code not in (0, None):
        print(f"note: the node exited with {code}; see {node_log}")
    bag = out / "recorded_bag"

    semantic_topics = {join_topic(output_namespace(c), "panoptic", "semantic"): c for c in image_topics}
    timed = _latencies(bag, semantic_topics, published)
    latencies = [ms for _, ms in timed]
    first = min(published.values(), default=0)  # the first frame sent, served or not
    start = [ms for sent, ms in timed if sent - first < START_NS] or [float("nan")]
    evaluation = evaluate_bag(bag, _label_set(model), progress=False)
    diagnostics, backend_name = _last_diagnostics(bag, image_topics)
    overlays = [join_topic(output_namespace(c), "panoptic", "overlay") for c in image_topics]
    sheet = out / "contact_sheet.png"
    _contact_sheet(bag, overlays, sheet)
    frames_out = len(latencies)
    pct = np.percentile(latencies, [50, 90, 99]) if latencies else [float("nan")] * 3
    pq, video = evaluation.pq, evaluation.video

    def total(key: str) -> int:  # over the cameras, from the node's final counts
        return sum(int(v.get(key, 0)) for v in diagnostics.values())

    summary = DemoSummary(
        cameras=cameras,
        frames_in=sum(1 for topic, _ in published if topic in image_topics),
        frames_out=frames_out,
        frames_dropped=total("frames_dropped"),
        bad_frames=total("frames_bad"),
        received=total("frames_received"),
        published=total("frames_published"),
        failed=total("frames_failed"),
        in_flight=total("frames_in_flight"),
        lost_before_callback=total("frames_lost_before_callback"),
        seconds=seconds,
        output_rate_hz=frames_out / seconds if seconds > 0 else 0.0,
        latency_ms={
            **{f"p{q}": float(v) for q, v in zip((50, 90, 99), pct, strict=True)},
            "max": float(max(latencies)) if latencies else float("nan"),
            "start_max": float(max(start)),
        },
        pq=100 * pq.all.pq,
        pq_things=100 * pq.things.pq,
        pq_stuff=100 * pq.stuff.pq,
        stq=100 * video.stq,
        aq=100 * video.aq,
        backend=backend_name,
        dds_profile=os.environ.get(PROFILE_ENV, ""),
        files={
            "input bag": str(synth.path),
            "recorded bag": str(bag),
            "contact sheet": str(sheet),
            "node log": str(node_log),
            "summary": str(out / "summary.json"),
        },
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=1) + "\n")
    (out / "summary.txt").write_text(summary.table() + "\n\n" + evaluation.table() + "\n")
    return summary


def _label_set(model: str) -> LabelSet:
    """The label set of the model the node runs (the recorded categories topic says the same)."""
    from panoptic_ros.backends.registry import model_spec
    from panoptic_ros.resources import engines_dir

    return model_spec(Path(model) if model else engines_dir() / "panoptic_synthetic.onnx").label_set
