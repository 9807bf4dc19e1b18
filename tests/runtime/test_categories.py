"""Class indices -> category ids: the host path (one compiled pass for the maps, numpy for the rows)
gives what the device's ops give (the fixed-shape path on the CPU), for maps and segment rows."""

from __future__ import annotations

import numpy as np
import torch

from panoptic_ros.backends.registry import model_spec
from panoptic_ros.fusion.center_offset import SegmentStats
from panoptic_ros.fusion.families import FusedFrame
from panoptic_ros.resources import default_model
from panoptic_ros.runtime.categories import CategoryIds

CPU = torch.device("cpu")


def _fused(label_classes: int, divisor: int, seed: int) -> FusedFrame:
    """A fused frame of random stuff and thing ids over every class, void included."""
    rng = np.random.default_rng(seed)
    rows = 12
    classes = rng.integers(0, label_classes, size=rows)
    numbers = np.where(rng.random(rows) < 0.5, rng.integers(1, 40, size=rows), 0)
    ids = classes * divisor + numbers
    panoptic = rng.choice(np.concatenate((ids, [-1])), size=(9, 13))
    segments = SegmentStats(
        ids=torch.from_numpy(ids),
        classes=torch.from_numpy(classes),
        is_thing=torch.from_numpy(numbers > 0),
        areas=torch.from_numpy(rng.integers(0, 50, size=rows)),
        bboxes=torch.from_numpy(rng.integers(0, 30, size=(rows, 4))),
        centroids=torch.from_numpy(rng.random((rows, 2)).astype(np.float32)),
        scores=torch.from_numpy(rng.random(rows).astype(np.float32)),
    )
    instance = torch.zeros((9, 13), dtype=torch.int32)
    return FusedFrame(torch.from_numpy(panoptic), instance, segments)


def test_host_and_device_paths_give_the_same_ids() -> None:
    label_set = model_spec(default_model()).label_set
    host = CategoryIds(label_set, CPU, fixed_shapes=False)
    device = CategoryIds(label_set, CPU, fixed_shapes=True)
    for divisor in (1000, 256):
        for seed in range(3):
            fused = _fused(len(label_set.class_to_id), divisor, seed)
            for a, b in zip(
                host.maps(fused.panoptic, divisor), device.maps(fused.panoptic, divisor), strict=True
            ):
                assert torch.equal(a, b) and a.dtype == torch.int64
            mine, theirs = host.table(fused, divisor), device.table(fused, divisor)
            for name in mine._fields:
                a, b = getattr(mine, name), getattr(theirs, name)
                assert a.dtype == b.dtype and torch.equal(a, b), name
            classes = fused.segments.classes.numpy()
            expected = np.asarray(label_set.class_to_id)[classes]
            assert np.array_equal(mine.category_ids.numpy(), expected)
            numbers = fused.segments.ids.numpy() % divisor
            assert np.array_equal(mine.ids.numpy(), expected * divisor + numbers)
