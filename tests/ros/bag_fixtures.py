"""A small bag for the player and recorder tests: two synthetic cameras with depth, camera_info and
ground truth, cam0's outputs in this package's types (hand-made, no model), one corrupt record."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.topics import output_topic
from panoptic_ros.data.bag_io import BagWriter, read_messages
from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag
from panoptic_ros.data.bag_types import (
    CATEGORY_ARRAY_TYPE,
    INSTANCE_ARRAY_TYPE,
)
from tests.data.bag_samples import category_array, frame_result, instance_array

FRAMES = 6
#: The record left corrupt (truncated CDR): the player skips it.
CORRUPT = ("/cam1/camera_info", 2)
INSTANCES = output_topic("/cam0/image_raw", "instances")
CATEGORIES = output_topic("/cam0/image_raw", "categories")


def write_test_bag(root: Path) -> Path:
    source = root / "source"
    write_synthetic_bag(source, SynthBagConfig(cameras=2, frames=FRAMES, size=(32, 64), seed=21))
    path = root / "bag"
    labels = load_label_set("synthetic")
    seen: dict[str, int] = defaultdict(int)
    with BagWriter(path) as writer:
        for m in read_messages(source):
            index = seen[m.topic]
            seen[m.topic] += 1
            raw = m.raw[:40] if (m.topic, index) == CORRUPT else m.raw
            writer.write_raw(m.topic, m.msgtype, raw, m.log_time_ns)
            if m.topic == "/cam0/image_raw":
                result = frame_result(int(m.stamp_ns or 0), seed=index)
                if index == 0:
                    writer.write(
                        CATEGORIES,
                        CATEGORY_ARRAY_TYPE,
                        category_array(labels, result.stamp_ns, result.frame_id),
                        m.log_time_ns + 1,
                    )
                writer.write(
                    INSTANCES, INSTANCE_ARRAY_TYPE, instance_array(result, labels), m.log_time_ns + 2
                )
    return path
