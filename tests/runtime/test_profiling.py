"""Stage labels: free without a profiler, seen by one while it records."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from panoptic_ros.runtime.profiling import profiler_running, stage_label


def test_labels_only_while_a_profiler_records() -> None:
    assert not profiler_running()
    assert not isinstance(stage_label("panoptic::idle"), torch.profiler.record_function)
    with profile(activities=[ProfilerActivity.CPU]) as recording:
        assert profiler_running()
        with stage_label("panoptic::busy"):
            torch.ones(3).sum()
    assert not profiler_running()
    names = {event.name for event in recording.events()}
    assert "panoptic::busy" in names and "panoptic::idle" not in names
