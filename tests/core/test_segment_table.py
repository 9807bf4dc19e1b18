"""segment_table against a plain numpy measurement, on both id paths (lookup table and sort)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.core.pipeline import _MAX_LUT_ID, segment_table


def _reference(panoptic: np.ndarray) -> dict[int, tuple[int, tuple[int, int, int, int], tuple[float, float]]]:
    out = {}
    for value in np.unique(panoptic[panoptic >= 0]).tolist():
        ys, xs = np.nonzero(panoptic == value)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        out[value] = (int(xs.size), box, (float(xs.mean()), float(ys.mean())))
    return out


@pytest.mark.parametrize("offset", [0, _MAX_LUT_ID], ids=["lookup-table", "sorted"])
@pytest.mark.parametrize("seed", range(4))
def test_segment_table_matches_numpy(seed: int, offset: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 40, size=2)
    values = np.array([-1, 7000, 7001, 7003, 12000, 3000]) + np.array([0, *[offset] * 5])
    panoptic = values[rng.integers(0, values.size, size=(h, w))]
    panoptic[: h // 3, : w // 2] = values[1 + seed % 5]  # one large block
    thing_lut = torch.zeros(max(values.max() // 1000 + 1, 16), dtype=torch.bool)
    thing_lut[7] = True
    table = segment_table(torch.from_numpy(panoptic), 1000, thing_lut)
    expected = _reference(panoptic)
    assert table.ids.tolist() == sorted(expected)
    for k, value in enumerate(table.ids.tolist()):
        area, box, centroid = expected[value]
        assert table.areas[k].item() == area
        assert tuple(table.bboxes[k].tolist()) == box
        assert table.centroids[k].tolist() == pytest.approx(centroid, rel=1e-5)


def test_all_void_map_has_no_segments() -> None:
    table = segment_table(torch.full((4, 5), -1), 1000, torch.zeros(2, dtype=torch.bool))
    assert table.ids.numel() == 0 and table.areas.numel() == 0
