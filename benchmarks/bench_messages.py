"""Filling and reading large ROS image messages from Python (real rclpy message classes).

Ours: ``array_to_image_msg`` (one copy into ``array.array('B')``, which the generated class accepts
without checking element by element) and ``image_to_array`` (a zero-copy view of ``msg.data``).
References, measured in the same run: assigning ``bytes`` to ``msg.data`` (fast when the generated
setter does not validate element by element, as in Kilted by default; slow where it does), assigning
a Python list (``array.tolist()``, the naive way), and reading with ``np.array(msg.data)`` (a copy
through the sequence protocol).

Then the per-instance outputs of a crowded frame (10 and 100 things: ``instances``, and ``markers``
with two markers per thing) wrapped by ``to_ros`` against the generated constructors and setters.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def _time(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    from sensor_msgs.msg import Image

    from panoptic_ros.core.image_codec import image_to_array
    from panoptic_ros.ros.conversions import array_to_image_msg

    rows = []
    cases = {
        "1920x1080 bgr8 camera image": (
            np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), np.uint8),
            "bgr8",
        ),
        "1920x1080 32SC1 instance ids": (
            np.random.default_rng(1).integers(0, 500, (1080, 1920), np.int32),
            "32SC1",
        ),
        "1920x1080 mono8 semantic": (
            np.random.default_rng(2).integers(0, 19, (1080, 1920), np.uint8),
            "mono8",
        ),
    }
    for label, (pixels, encoding) in cases.items():
        ours_fill = _time(lambda p=pixels, e=encoding: array_to_image_msg(p, e), 7)

        def naive_fill(p: np.ndarray = pixels, e: str = encoding) -> Image:
            msg = Image(
                height=p.shape[0],
                width=p.shape[1],
                encoding=e,
                step=p.shape[1] * p.itemsize * (p.shape[2] if p.ndim == 3 else 1),
            )
            msg.data = p.tobytes()
            return msg

        ref_fill = _time(naive_fill, 2)

        def list_fill(p: np.ndarray = pixels, e: str = encoding) -> Image:
            msg = naive_fill(p[:1], e)
            msg.data = p.view(np.uint8).ravel().tolist()
            return msg

        list_ref = _time(list_fill, 2)
        msg = array_to_image_msg(pixels, encoding)
        ours_read = _time(lambda m=msg: image_to_array(m), 50)
        ref_read = _time(lambda m=msg: np.array(m.data, dtype=np.uint8), 3)
        assert np.array_equal(image_to_array(msg), pixels)
        rows.append((label, ref_fill / ours_fill, list_ref / ours_fill, ref_read / ours_read))
    print(
        "| message | fill: vs `msg.data = bytes` | fill: vs `msg.data = list` "
        "| read: vs `np.array(msg.data)` |"
    )
    print("|---|---:|---:|---:|")
    for label, fill, fill_list, read in rows:
        print(f"| {label} | {fill:,.1f}x | {fill_list:,.0f}x | {read:,.0f}x |")
    print()
    trees()
    return 0


def trees() -> None:
    """The per-instance outputs (``instances``, ``markers``) of frames with 10 and 100 things made into
    rclpy messages by ``to_ros``, against the generated constructors
    (``tests/ros/samples.generated_message``)."""
    from panoptic_ros.core.labels import load_label_set
    from panoptic_ros.ros.conversions import to_ros
    from panoptic_ros.runtime.outputs import OUTPUTS, OutputContext
    from panoptic_ros.runtime.records import FrameResult, InstanceTable
    from tests.ros.samples import generated_message

    context = OutputContext(load_label_set("synthetic"), 1000, 0.3, "10.0 Hz")
    print("| output | things | `to_ros` vs the generated constructors |")
    print("|---|---:|---:|")
    for things in (10, 100):
        rng = np.random.default_rng(things)
        table = InstanceTable(
            ids=np.arange(1, things + 1, dtype=np.uint32),
            category_ids=rng.integers(5, 8, things),
            is_thing=np.ones(things, dtype=bool),
            scores=rng.random(things).astype(np.float32),
            states=np.ones(things, dtype=np.uint8),
            areas=np.full(things, 100),
            bboxes=np.tile([10, 10, 20, 20], (things, 1)),
            centroids=rng.random((things, 2)).astype(np.float32),
            velocities=np.zeros((things, 2), dtype=np.float32),
            ages=np.ones(things, dtype=np.int64),
            positions=(rng.random((things, 3)) + 1).astype(np.float32),
            position_valid=np.ones(things, dtype=bool),
        )
        result = FrameResult(
            camera="cam", stamp_ns=1, frame_id="camera", received_ns=0, semantic=None, instance_ids=None,
            instances=table, overlay_bgr=None, events=(), times={}, size=(480, 640),
        )  # fmt: skip
        for name in ("instances", "markers"):
            message = OUTPUTS[name].describe(result, context)
            ours = _time(lambda m=message: to_ros(m), 15)
            reference = _time(lambda m=message: generated_message(m), 15)
            print(f"| {name} | {things} | {reference / ours:.2f}x faster |")
