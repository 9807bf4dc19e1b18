"""rosbag2 files (sqlite3 and MCAP) written and read with the rosbags package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core.image_codec import compressed_to_color, image_to_array
from panoptic_ros.core.image_encode import array_to_compressed, array_to_image
from panoptic_ros.data.bags import BagError, FrameToWrite, image_topics, read_images, write_images


def _frames() -> list[FrameToWrite]:
    rng = np.random.default_rng(1)
    frames = []
    for k in range(4):
        raw = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        frames.append(
            FrameToWrite("/cam/image_raw", 1_000_000_000 * (k + 1) + k, "cam", array_to_image(raw, "rgb8"))
        )
        frames.append(
            FrameToWrite(
                "/cam/image_raw/compressed",
                1_000_000_000 * (k + 1) + 500,
                "cam",
                array_to_compressed(raw, codec="png", order="rgb"),
            )
        )
    return frames


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_write_then_read(tmp_path: Path, storage: str) -> None:
    frames = _frames()
    bag = tmp_path / "bag"
    assert write_images(bag, frames, storage=storage) == len(frames)  # type: ignore[arg-type]
    assert image_topics(bag) == {
        "/cam/image_raw": "sensor_msgs/msg/Image",
        "/cam/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
    }
    read = list(read_images(bag))
    assert [(r.topic, r.stamp_ns, r.log_time_ns) for r in read] == [
        (f.topic, f.stamp_ns, f.stamp_ns) for f in frames
    ]
    raw_by_second = {f.stamp_ns // 10**9: f for f in frames if f.topic == "/cam/image_raw"}
    for frame, item in zip(frames, read, strict=True):
        assert item.msg.header.frame_id == "cam" and not item.error
        if item.compressed:  # lossless PNG of the raw frame recorded in the same second
            expected = image_to_array(raw_by_second[frame.stamp_ns // 10**9].fields)
            assert np.array_equal(compressed_to_color(item.msg, "rgb"), expected)
        else:
            assert np.array_equal(image_to_array(item.msg), image_to_array(frame.fields))
    only = list(read_images(bag, ["/cam/image_raw"]))
    assert len(only) == 4 and all(not r.compressed for r in only)


def test_errors(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    write_images(bag, _frames())
    with pytest.raises(BagError, match="exists"):
        write_images(bag, _frames())
    with pytest.raises(BagError, match="no image topic"):
        list(read_images(bag, ["/nope"]))
    with pytest.raises(BagError, match="does not exist"):
        image_topics(tmp_path / "missing")
    mixed = [_frames()[0], FrameToWrite("/cam/image_raw", 5, "cam", _frames()[1].fields)]
    with pytest.raises(BagError, match="already holds sensor_msgs/msg/Image, cannot write"):
        write_images(tmp_path / "mixed", mixed)
