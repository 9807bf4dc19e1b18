"""Hand-made frame results (no model) for the bag tests, ROS-free; shared with tests/ros."""

from __future__ import annotations

from typing import Any

import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.messages import header_message
from panoptic_ros.data.bag_types import to_rosbags
from panoptic_ros.runtime import outputs
from panoptic_ros.runtime.records import FrameResult, InstanceTable, clip_boxes

HEIGHT, WIDTH = 12, 16


def instance_table() -> InstanceTable:
    """Three rows: a confirmed car, a lost person with a box reaching outside the image, and road."""
    return InstanceTable(
        ids=np.array([3, 9, 10], dtype=np.uint32),
        category_ids=np.array([7, 5, 0], dtype=np.int64),
        is_thing=np.array([True, True, False]),
        scores=np.array([0.75, 0.5, 1.0], dtype=np.float32),
        states=np.array([1, 2, 1], dtype=np.uint8),
        areas=np.array([20, 0, 100], dtype=np.int64),
        # as the engine clips them: a lost track's predicted box (-4, 10, 8, 6) in a 16 x 12 image
        bboxes=clip_boxes(np.array([[2, 3, 4, 5], [-4, 10, 8, 6], [0, 6, 16, 6]]), 16, 12),
        centroids=np.array([[3.5, 5.0], [0.0, 12.5], [7.5, 9.0]], dtype=np.float32),
        velocities=np.array([[12.5, -2.0], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32),
        ages=np.array([4, 7, 1], dtype=np.int64),
        positions=np.array([[0.5, 1.25, 8.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32),
        position_valid=np.array([True, False, False]),
    )


def frame_result(
    stamp_ns: int = 1_700_000_001_250_000_000,
    *,
    frame_id: str = "cam0_optical_frame",
    semantic_dtype: type = np.uint8,
    overlay: bool = True,
    seed: int = 0,
) -> FrameResult:
    """A result of camera ``/cam0/image_raw`` with a random label map and :func:`instance_table`."""
    rng = np.random.default_rng(seed)
    semantic = rng.integers(0, 8, (HEIGHT, WIDTH)).astype(semantic_dtype)
    semantic[0, 0] = 255 if semantic_dtype == np.uint8 else 65535
    instance_ids = np.where(semantic >= 5, rng.integers(1, 4, (HEIGHT, WIDTH)), 0).astype(np.int32)
    return FrameResult(
        camera="/cam0/image_raw",
        stamp_ns=stamp_ns,
        frame_id=frame_id,
        received_ns=0,
        semantic=semantic,
        instance_ids=instance_ids,
        instances=instance_table(),
        overlay_bgr=rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) if overlay else None,
        events=(),
        times={},
        size=(HEIGHT, WIDTH),
    )


def instance_array(result: FrameResult, label_set: LabelSet) -> Any:
    """The ``rosbags`` ``panoptic/instances`` message of a result, as ``bag process`` writes it."""
    return to_rosbags(outputs.instances(result, outputs.OutputContext(label_set, 1000)))


def category_array(label_set: LabelSet, stamp_ns: int = 0, frame_id: str = "") -> Any:
    """The ``rosbags`` ``panoptic/categories`` message of a label set."""
    header = header_message(stamp_ns, frame_id)
    return to_rosbags(outputs.categories(header, outputs.OutputContext(label_set, 1000)))
