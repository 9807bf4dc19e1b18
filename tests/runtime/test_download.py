"""A frame's download: the segment table and the label maps in one transfer, bit for bit; the track map
made on the host from it equals the tracker's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from benchmarks.counting import count_host_reads
from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.runtime.download import download, tracker_input
from panoptic_ros.runtime.instances import HostSegments, segment_columns
from panoptic_ros.runtime.pipeline import PanopticPipeline
from panoptic_ros.tracking import Tracker, TrackerParams


@pytest.fixture(scope="module")
def outputs() -> list:
    pipeline = PanopticPipeline(default_model(), backend="onnxruntime", device="cpu")
    images = [
        np.ascontiguousarray(cv2.resize(s.image, (640, 480))) for s in generate(1, seed=8, sequence_length=4)
    ]
    result = [pipeline([image])[0] for image in images]
    pipeline.close()
    return result


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("panoptic", [False, True])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "viewed"])
def test_the_download_holds_the_table_and_the_maps_exactly(
    outputs: list, dtype: torch.dtype, panoptic: bool, packed: bool
) -> None:
    out = outputs[0]
    with count_host_reads() as reads:
        host = download(out, panoptic=panoptic, dtype=dtype, packed=packed)
    assert dict(reads) == ({"cpu": 1} if packed else {}), "one transfer (what a GPU does), or none"
    if packed:
        assert host.semantic.dtype == host.instance.dtype == (np.int32 if dtype == torch.int32 else np.int64)
    else:  # viewed in their own type, not converted (the same memory)
        assert np.shares_memory(host.semantic, out.semantic.numpy())
        assert np.shares_memory(host.instance, out.instance.numpy())
    assert np.array_equal(host.semantic, out.semantic.numpy())
    assert np.array_equal(host.instance, out.instance.numpy())
    assert (host.panoptic is not None) == panoptic
    if panoptic:
        assert np.array_equal(host.panoptic, out.panoptic.numpy())
    expected = HostSegments(out.segments)  # its own transfer (on the CPU: the table's arrays viewed)
    from_columns = HostSegments(segment_columns(out.segments).numpy())  # the packed buffer's way
    for name in ("row", "category_ids", "is_thing", "areas", "bboxes", "centroids", "scores"):
        assert np.array_equal(getattr(host.segments, name), getattr(expected, name)), name
        assert np.array_equal(getattr(from_columns, name), getattr(expected, name)), name
        assert getattr(from_columns, name).dtype == getattr(expected, name).dtype, name
    assert host.segments.row.size > 3


def test_an_empty_table_downloads(outputs: list) -> None:
    out = outputs[0]
    table = type(out.segments)(*(t[:0] for t in out.segments))
    host = download(out._replace(segments=table), panoptic=False)
    assert host.segments.row.size == 0 and host.semantic.shape == tuple(out.semantic.shape)


def test_the_host_track_map_equals_the_tracker_s(outputs: list) -> None:
    tracker = Tracker(TrackerParams(min_hits=2, publish_tentative=False))  # first frame: tentative, not shown
    for k, out in enumerate(outputs):
        host = download(out, panoptic=False)
        inp = tracker_input(out, k * 100_000_000, host.segments)
        tracked = tracker.update(inp)
        on_host = tracked.host_track_map(host.instance, np.asarray(inp.ids))
        assert np.array_equal(on_host, tracked.track_map.numpy())
        if k == 0:
            assert not on_host.any(), "first frame: every track tentative"
    assert on_host.any()
