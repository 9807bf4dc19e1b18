"""COCO segments of published label images: one rule for ``infer`` and ``eval BAG``; things without an
id keep their category (a crowd segment), which is what keeps STQ's segmentation term intact."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core.ids import CROWD_SEGMENT_BASE, STUFF_SEGMENT_BASE
from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.data.coco_format import DatasetError
from panoptic_ros.data.label_maps import label_segments
from panoptic_ros.metrics.video import SequenceAccumulator, VideoStat, frame_labels

ROAD, PERSON, CAR = 0, 5, 7
LABELS = LabelSet(
    "label-maps-test",
    (
        Category(ROAD, "road", False, (128, 64, 128)),
        Category(PERSON, "person", True, (220, 20, 60)),
        Category(CAR, "car", True, (0, 0, 142)),
    ),
)
V = LABELS.void_semantic


def test_the_rule_pixel_by_pixel() -> None:
    semantic = np.array([[ROAD, ROAD, CAR, CAR], [V, PERSON, PERSON, CAR]], np.uint8)
    ids = np.array([[0, 0, 3, 3], [0, 4, 0, 0]], np.int32)
    segments, infos = label_segments(semantic, ids, LABELS)
    road = STUFF_SEGMENT_BASE + ROAD
    person_crowd, car_crowd = CROWD_SEGMENT_BASE + PERSON, CROWD_SEGMENT_BASE + CAR
    assert segments.tolist() == [[road, road, 3, 3], [0, 4, person_crowd, car_crowd]]
    assert [(s.id, s.category_id, s.iscrowd) for s in infos] == [
        (3, CAR, False),
        (4, PERSON, False),
        (road, ROAD, False),
        (person_crowd, PERSON, True),
        (car_crowd, CAR, True),
    ]
    assert [s.id for s in infos] == sorted(s.id for s in infos)


def test_thing_categories_given_or_most_frequent() -> None:
    semantic = np.array([[CAR, CAR, PERSON]], np.uint8)
    ids = np.array([[2, 2, 2]], np.int32)
    (info,) = label_segments(semantic, ids, LABELS)[1]
    assert (info.id, info.category_id) == (2, CAR)
    (info,) = label_segments(semantic, ids, LABELS, thing_categories={2: PERSON, 9: CAR})[1]
    assert (info.id, info.category_id) == (2, PERSON)  # the caller's table wins; absent ids are left out
    with pytest.raises(DatasetError, match=r"instance ids \[2\] have no category"):
        label_segments(semantic, ids, LABELS, thing_categories={})


def test_bad_maps_are_refused() -> None:
    with pytest.raises(DatasetError, match=r"category ids \[9\]"):
        label_segments(np.array([[9]], np.uint8), np.array([[0]], np.int32), LABELS, source="t")
    with pytest.raises(DatasetError, match="differ in size"):
        label_segments(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.int32), LABELS)
    with pytest.raises(DatasetError, match="instance ids must lie"):
        label_segments(np.array([[CAR]], np.uint8), np.array([[STUFF_SEGMENT_BASE]], np.int32), LABELS)
    with pytest.raises(DatasetError, match="instance ids must lie"):
        label_segments(np.array([[ROAD]], np.uint8), np.array([[-1]], np.int32), LABELS)


def _stq_terms(gt: tuple[np.ndarray, np.ndarray], pred: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    things = (PERSON, CAR)
    acc = SequenceAccumulator("s", (ROAD, PERSON, CAR), thing_ids=things)
    sides = [frame_labels(*label_segments(s, i, LABELS), things) for s, i in (gt, pred)]
    acc.add(*sides)
    result = VideoStat((acc.finish(),)).summarize()
    return result.sq, result.aq


def test_an_unconfirmed_thing_keeps_the_segmentation_term() -> None:
    """A car the tracker has not confirmed (id 0) is scored as its category in STQ's segmentation
    term, exactly as a tracked one; as void it would add a void class with IoU 0 to the mean."""
    semantic = np.array([[ROAD, ROAD, CAR, CAR], [ROAD, PERSON, PERSON, ROAD]], np.uint8)
    gt = (semantic, np.array([[0, 0, 1, 1], [0, 2, 2, 0]], np.int32))
    tracked = (semantic, np.array([[0, 0, 8, 8], [0, 9, 9, 0]], np.int32))
    unconfirmed = (semantic, np.array([[0, 0, 8, 8], [0, 0, 0, 0]], np.int32))
    sq_tracked, aq_tracked = _stq_terms(gt, tracked)
    sq_unconfirmed, aq_unconfirmed = _stq_terms(gt, unconfirmed)
    assert sq_tracked == sq_unconfirmed == 1.0
    assert aq_tracked == 1.0
    # the person's pixels are on predicted track (person, 0): TPA 2 of |g| 2, IoU 1 -> still 1
    assert aq_unconfirmed == pytest.approx(1.0)
    as_void = (
        np.where(unconfirmed[1] > 0, semantic, np.where(semantic == PERSON, V, semantic)),
        unconfirmed[1],
    )
    sq_void, _ = _stq_terms(gt, as_void)
    assert sq_void == pytest.approx(0.5)  # mean of road 1, car 1, person 0 and the void column 0
