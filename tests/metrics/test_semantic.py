"""mIoU and pixel accuracy from a confusion matrix: by hand, accumulation, errors, and a comparison
with per-class masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.data.coco_format import DatasetError, SegmentInfo
from panoptic_ros.metrics import ConfusionMatrix, confusion_from_maps, semantic_from_panoptic

V = -1  # void
IDS = (0, 1, 2, 3)
LABELS = LabelSet(
    "sem",
    tuple(Category(i, name, False, (i, i, i)) for i, name in zip(IDS, ("a", "b", "c", "d"), strict=True)),
)


def test_miou_by_hand_with_void() -> None:
    gt = np.array([[0, 0, 1], [1, V, 2]])
    pred = np.array([[0, 1, 1], [1, 2, V]])
    cm = confusion_from_maps(gt, pred, IDS)
    # rows gt 0..3, columns pred 0..3 + void; the gt-void pixel (predicted 2) is ignored
    expected = np.zeros((4, 5), dtype=np.int64)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 1] = 2
    expected[2, 4] = 1
    np.testing.assert_array_equal(cm.matrix, expected)
    result = cm.result(LABELS)
    # IoU0 = 1 / (2 + 1 - 1), IoU1 = 2 / (2 + 3 - 2), IoU2 = 0 / (1 + 0 - 0); class 3 in neither
    assert result.per_class_iou == pytest.approx({0: 0.5, 1: 2 / 3, 2: 0.0})
    assert result.n == 3
    assert result.miou == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert result.pixel_accuracy == pytest.approx(3 / 5)
    assert result.num_pixels == 5
    assert result.names == {0: "a", 1: "b", 2: "c"}
    assert result.to_dict()["per_class"]["1"]["name"] == "b"
    assert "mIoU" in result.table()


def test_class_only_predicted_counts_with_iou_zero() -> None:
    gt = np.array([[0, 0, 0, 0]])
    pred = np.array([[0, 0, 0, 3]])
    result = confusion_from_maps(gt, pred, IDS).result()
    assert result.per_class_iou == pytest.approx({0: 0.75, 3: 0.0})
    assert result.miou == pytest.approx(0.375)


def test_all_void_is_undefined() -> None:
    result = confusion_from_maps(np.full((2, 2), V), np.zeros((2, 2), dtype=int), IDS).result()
    assert result.n == 0 and math.isnan(result.miou) and math.isnan(result.pixel_accuracy)
    assert result.to_dict()["miou"] is None


def test_mono8_void_value() -> None:
    gt = np.array([[0, 255], [1, 1]], dtype=np.uint8)
    pred = np.array([[0, 1], [1, 255]], dtype=np.uint8)
    result = confusion_from_maps(gt, pred, IDS, void=255).result()
    assert result.per_class_iou == pytest.approx({0: 1.0, 1: 0.5})


def test_accumulation_equals_pooled() -> None:
    rng = np.random.default_rng(0)
    maps = [(rng.integers(-1, 4, (5, 6)), rng.integers(-1, 4, (5, 6))) for _ in range(2)]
    total = ConfusionMatrix.zeros(IDS)
    for gt, pred in maps:
        total = total + confusion_from_maps(gt, pred, IDS)
    pooled = confusion_from_maps(np.hstack([m[0] for m in maps]), np.hstack([m[1] for m in maps]), IDS)
    np.testing.assert_array_equal(total.matrix, pooled.matrix)
    assert total.result().miou == pooled.result().miou
    with pytest.raises(ValueError, match="different category"):
        total + ConfusionMatrix.zeros((0, 1))


def test_errors() -> None:
    with pytest.raises(DatasetError, match=r"pred\.png: prediction holds category ids \[7\]"):
        confusion_from_maps(np.zeros((1, 2), int), np.array([[0, 7]]), IDS, source="pred.png")
    with pytest.raises(DatasetError, match=r"ground truth holds category ids \[9\]"):
        confusion_from_maps(np.array([[9, 0]]), np.zeros((1, 2), int), IDS)
    with pytest.raises(DatasetError, match="same size"):
        confusion_from_maps(np.zeros((1, 2), int), np.zeros((2, 1), int), IDS)


def test_semantic_from_panoptic() -> None:
    ids = np.array([[0, 5, 5], [9, 9, 0]])
    segments = [SegmentInfo(5, 2), SegmentInfo(9, 0, iscrowd=True)]
    np.testing.assert_array_equal(semantic_from_panoptic(ids, segments), [[V, 2, 2], [0, 0, V]])
    np.testing.assert_array_equal(semantic_from_panoptic(ids, segments, void=255), [[255, 2, 2], [0, 0, 255]])
    np.testing.assert_array_equal(semantic_from_panoptic(np.zeros((1, 2), int), []), [[V, V]])
    with pytest.raises(DatasetError, match=r"x\.png: segment ids \[7\]"):
        semantic_from_panoptic(np.array([[7, 5]]), segments, source="x.png")


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 10), width=st.integers(1, 10))
def test_matches_per_class_masks(seed: int, height: int, width: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.integers(-1, 4, (height, width))
    pred = rng.integers(-1, 4, (height, width))
    result = confusion_from_maps(gt, pred, IDS).result()
    labeled = gt != V
    expected = {}
    for c in IDS:
        g, p = (gt == c) & labeled, (pred == c) & labeled
        union = int((g | p).sum())
        if union:
            expected[c] = int((g & p).sum()) / union
    assert result.per_class_iou == pytest.approx(expected)
    if expected:
        assert result.miou == pytest.approx(sum(expected.values()) / len(expected))
    if labeled.any():
        assert result.pixel_accuracy == pytest.approx(float((gt == pred)[labeled].mean()))
