from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.types import BBox, PanopticResult, measure_segments

SYN = load_label_set("synthetic")  # 0..4 stuff, 5 person, 6 cyclist, 7 car


def test_measure_segments_by_hand() -> None:
    semantic = np.array(
        [
            [4, 4, 4, 4],
            [7, 7, 4, 5],
            [7, 7, 255, 5],
            [0, 0, 0, 7],
        ]
    )
    instance = np.array(
        [
            [9, 9, 0, 0],  # instance ids on stuff are ignored
            [1, 1, 0, 2],
            [1, 1, 0, 2],
            [0, 0, 0, 3],
        ]
    )
    segments = {(s.category_id, s.instance_id): s for s in measure_segments(semantic, instance, SYN)}
    assert set(segments) == {(0, 0), (4, 0), (5, 2), (7, 1), (7, 3)}
    car = segments[(7, 1)]
    assert car.area == 4 and car.bbox == BBox(0, 1, 2, 2) and car.centroid == (0.5, 1.5) and car.is_thing
    sky = segments[(4, 0)]
    assert sky.area == 5 and sky.bbox == BBox(0, 0, 4, 2) and not sky.is_thing
    assert sky.centroid == pytest.approx(((0 + 1 + 2 + 3 + 2) / 5, (0 + 0 + 0 + 0 + 1) / 5))
    assert segments[(7, 3)].bbox == BBox(3, 3, 1, 1)
    assert sum(s.area for s in segments.values()) == 15  # one void pixel


def test_result_from_maps_zeroes_stuff_instances_and_encodes() -> None:
    semantic = np.array([[0, 7], [255, 7]])
    instance = np.array([[5, 2], [4, 2]])
    result = PanopticResult.from_maps(semantic, instance, SYN, scores={(7, 2): 0.75})
    assert result.instance.tolist() == [[0, 2], [0, 2]]
    assert result.panoptic().tolist() == [[0, 7002], [-1, 7002]]
    assert [s.score for s in result.things] == [0.75]
    assert (result.height, result.width) == (2, 2)


def test_all_void_and_shape_checks() -> None:
    void = np.full((3, 3), 255)
    assert measure_segments(void, np.zeros((3, 3)), SYN) == ()
    with pytest.raises(ValueError, match="equal H x W"):
        PanopticResult(np.zeros((2, 2)), np.zeros((2, 3)), ())
