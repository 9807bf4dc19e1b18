"""Panoptic Quality: hand-computed cases for each rule of the COCO reference evaluation, accumulation,
folder evaluation, and property tests against an independent straightforward implementation."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.data.coco_format import DatasetError, SegmentInfo, segments_from_map
from panoptic_ros.data.coco_panoptic import CocoPanopticWriter, read_dataset
from panoptic_ros.metrics import PQResult, PQStat, evaluate_datasets, evaluate_folders, pq_from_maps

CAR, PERSON, ROAD, SKY, TREE = 1, 2, 3, 4, 5
LABELS = LabelSet(
    "test",
    (
        Category(CAR, "car", True, (0, 0, 142)),
        Category(PERSON, "person", True, (220, 20, 60)),
        Category(ROAD, "road", False, (128, 64, 128)),
        Category(SKY, "sky", False, (70, 130, 180)),
        Category(TREE, "tree", False, (107, 142, 35)),
    ),
)


def seg(segment_id: int, category_id: int, crowd: bool = False) -> SegmentInfo:
    return SegmentInfo(segment_id, category_id, crowd)


def pq(
    gt: list[list[int]],
    gt_segs: Sequence[SegmentInfo],
    pred: list[list[int]],
    pred_segs: Sequence[SegmentInfo],
) -> PQResult:
    stat = pq_from_maps(np.array(gt), gt_segs, np.array(pred), pred_segs, label_set=LABELS)
    return stat.summarize(LABELS)


# --------------------------------------------------------------------------------------------------
# hand-computed cases


def test_perfect_match_is_100() -> None:
    gt = [[1, 1, 2, 2], [3, 3, 3, 0]]
    segs = [seg(1, CAR), seg(2, PERSON), seg(3, ROAD)]
    result = pq(gt, segs, gt, segs)
    assert result.all == (1.0, 1.0, 1.0, 3)
    assert result.things == (1.0, 1.0, 1.0, 2)
    assert result.stuff == (1.0, 1.0, 1.0, 1)
    assert {c.tp for c in result.per_class.values()} == {1}


def test_iou_exactly_half_is_not_a_match() -> None:
    # car: gt 4 px, pred 2 px inside it -> IoU 2/4 = 0.5, not > 0.5: one FN and one FP
    # road: gt 4 px, pred 6 px covering it -> IoU 4/6, a match
    gt = [[1, 1, 1, 1, 2, 2, 2, 2]]
    pred = [[1, 1, 2, 2, 2, 2, 2, 2]]
    result = pq(gt, [seg(1, CAR), seg(2, ROAD)], pred, [seg(1, CAR), seg(2, ROAD)])
    car, road = result.per_class[CAR], result.per_class[ROAD]
    assert (car.tp, car.fp, car.fn, car.pq, car.sq, car.rq) == (0, 1, 1, 0.0, 0.0, 0.0)
    assert (road.tp, road.fp, road.fn) == (1, 0, 0)
    assert road.pq == pytest.approx(2 / 3) and road.sq == pytest.approx(2 / 3) and road.rq == 1.0
    assert result.all.pq == pytest.approx(1 / 3) and result.all.n == 2
    assert result.things.pq == 0.0 and result.things.n == 1
    assert result.stuff.pq == pytest.approx(2 / 3) and result.stuff.n == 1


def test_iou_just_above_half_is_a_match() -> None:
    # car: gt 5 px, pred 3 of them -> IoU 3/5 > 0.5
    gt = [[1, 1, 1, 1, 1, 2]]
    pred = [[1, 1, 1, 2, 2, 2]]
    result = pq(gt, [seg(1, CAR), seg(2, ROAD)], pred, [seg(1, CAR), seg(2, ROAD)])
    assert result.per_class[CAR][6:] == (1, 0, 0, pytest.approx(0.6))


def test_predicted_pixels_on_void_are_left_out_of_the_union() -> None:
    # the car covers 3 gt car pixels and 3 void pixels: plain IoU = 3/6 (no match), but without the
    # void pixels the union is 3 and IoU = 1
    gt = [[1, 1, 1, 0, 0, 0]]
    pred = [[1, 1, 1, 1, 1, 1]]
    result = pq(gt, [seg(1, CAR)], pred, [seg(1, CAR)])
    assert result.per_class[CAR][6:] == (1, 0, 0, 1.0)
    assert result.all == (1.0, 1.0, 1.0, 1)


def test_void_exclusion_only_for_void_not_for_other_segments() -> None:
    # same shape, but the three extra pixels are gt road: the union keeps them -> IoU 0.5, no match
    gt = [[1, 1, 1, 2, 2, 2]]
    pred = [[1, 1, 1, 1, 1, 1]]
    result = pq(gt, [seg(1, CAR), seg(2, ROAD)], pred, [seg(1, CAR)])
    assert result.per_class[CAR][6:9] == (0, 1, 1)
    assert result.per_class[ROAD][6:9] == (0, 0, 1)


def test_crowd_regions() -> None:
    # gt: 5 = crowd car (8 px), 1 = car (4 px)
    # pred: 7 = car lying on the crowd car (IoU 6/8 but crowd is never matched; not a FP either),
    #       8 = person on the crowd car (crowd of another class: a FP), 1 = the car, exact
    gt = [[5, 5, 5, 5, 1, 1], [5, 5, 5, 5, 1, 1]]
    pred = [[7, 7, 7, 8, 1, 1], [7, 7, 7, 8, 1, 1]]
    result = pq(gt, [seg(5, CAR, crowd=True), seg(1, CAR)], pred, [seg(7, CAR), seg(1, CAR), seg(8, PERSON)])
    assert result.per_class[CAR][6:] == (1, 0, 0, 1.0)  # crowd gt is no FN, pred 7 no FP
    assert result.per_class[PERSON][6:] == (0, 1, 0, 0.0)
    assert result.things == (0.5, 0.5, 0.5, 2)


def test_crowd_and_void_add_up_for_the_false_positive_rule() -> None:
    # pred car 9 (4 px): 1 px on void + 2 px on crowd car + 1 px on road -> 3/4 > 0.5: not a FP
    # pred person 8 (4 px): 1 px on void + 2 px on crowd car (other class) + 1 road -> 1/4: a FP
    gt = [[0, 5, 5, 3], [0, 5, 5, 3]]
    pred = [[9, 9, 9, 9], [8, 8, 8, 8]]
    result = pq(gt, [seg(5, CAR, crowd=True), seg(3, ROAD)], pred, [seg(9, CAR), seg(8, PERSON)])
    assert CAR not in result.per_class  # no TP, FP or FN: left out
    assert result.per_class[PERSON][6:9] == (0, 1, 0)
    assert result.per_class[ROAD][6:9] == (0, 0, 1)


def test_prediction_mostly_on_void_is_not_a_false_positive() -> None:
    # road: gt 12 px, pred 10 of them -> a match
    # sky A: 5 px, 3 on void -> 3/5 > 0.5: ignored; sky B: 4 px, 2 on void -> exactly half: a FP
    gt = [[3, 3, 3, 3, 3, 3, 0, 0, 0], [3, 3, 3, 3, 3, 3, 0, 0, 0]]
    pred_a = [[3, 3, 3, 3, 4, 4, 4, 4, 4], [3, 3, 3, 3, 3, 3, 0, 0, 0]]
    pred_b = [[3, 3, 3, 3, 4, 4, 4, 4, 0], [3, 3, 3, 3, 3, 3, 0, 0, 0]]
    gt_segs, pred_segs = [seg(3, ROAD)], [seg(3, ROAD), seg(4, SKY)]
    result_a = pq(gt, gt_segs, pred_a, pred_segs)
    assert SKY not in result_a.per_class and result_a.all.n == 1
    result_b = pq(gt, gt_segs, pred_b, pred_segs)
    assert result_b.per_class[SKY][6:9] == (0, 1, 0)
    assert result_b.all.n == 2


def test_absent_class_is_left_out_of_the_averages() -> None:
    gt = [[1, 1, 3, 3]]
    pred = [[1, 1, 3, 3]]
    result = pq(gt, [seg(1, CAR), seg(3, ROAD)], pred, [seg(1, CAR), seg(3, ROAD)])
    assert set(result.per_class) == {CAR, ROAD}  # person, sky, tree: in neither
    assert result.all == (1.0, 1.0, 1.0, 2)
    # a class with only a FP is averaged in with PQ = SQ = RQ = 0
    pred2 = [[1, 1, 3, 4]]
    result2 = pq(gt, [seg(1, CAR), seg(3, ROAD)], pred2, [seg(1, CAR), seg(3, ROAD), seg(4, SKY)])
    assert result2.all.n == 3 and result2.per_class[SKY][3:6] == (0.0, 0.0, 0.0)


def test_no_segments_at_all_gives_undefined_averages() -> None:
    result = pq([[0, 0]], [], [[0, 0]], [])
    assert result.all.n == 0 and math.isnan(result.all.pq)
    assert "All" in result.table()
    assert json.loads(result.to_json())["All"]["pq"] is None


def test_things_stuff_split_and_table() -> None:
    # car perfect (things 100), road IoU 4/6 (stuff), sky missed (stuff FN)
    gt = [[1, 1, 3, 3, 3, 3, 4, 4]]
    pred = [[1, 1, 3, 3, 3, 3, 3, 3]]
    result = pq(gt, [seg(1, CAR), seg(3, ROAD), seg(4, SKY)], pred, [seg(1, CAR), seg(3, ROAD)])
    assert result.things == (1.0, 1.0, 1.0, 1)
    assert result.stuff.n == 2
    assert result.stuff.pq == pytest.approx((2 / 3 + 0) / 2)
    assert result.stuff.sq == pytest.approx((2 / 3 + 0) / 2)
    assert result.stuff.rq == pytest.approx(0.5)
    assert result.all.pq == pytest.approx((1 + 2 / 3) / 3)
    lines = result.table().splitlines()
    assert lines[0].split() == ["|", "PQ", "SQ", "RQ", "N"]
    assert lines[2].split() == ["All", "|", "55.6", "55.6", "66.7", "3"]
    assert lines[3].split() == ["Things", "|", "100.0", "100.0", "100.0", "1"]
    assert lines[4].split() == ["Stuff", "|", "33.3", "33.3", "50.0", "2"]
    assert "road" in result.table(per_class=True)
    data = json.loads(result.to_json())
    assert data["Stuff"]["n"] == 2 and data["per_class"]["3"]["tp"] == 1


# --------------------------------------------------------------------------------------------------
# sanity rules of the reference


def test_pred_id_in_png_but_not_in_segments_info() -> None:
    with pytest.raises(DatasetError, match=r"pred\.png.*\[7\].*not in segments_info"):
        pq_from_maps(
            np.array([[1, 1]]),
            [seg(1, CAR)],
            np.array([[1, 7]]),
            [seg(1, CAR)],
            label_set=LABELS,
            pred_source="pred.png",
        )


def test_segments_info_id_without_pixels() -> None:
    with pytest.raises(DatasetError, match=r"pred\.png: segments_info lists ids \[2\] that have no pixels"):
        pq_from_maps(
            np.array([[1, 1]]),
            [seg(1, CAR)],
            np.array([[1, 1]]),
            [seg(1, CAR), seg(2, ROAD)],
            label_set=LABELS,
            pred_source="pred.png",
        )


def test_unknown_category_and_duplicates_and_sizes() -> None:
    gt, segs = np.array([[1, 1]]), [seg(1, CAR)]
    with pytest.raises(DatasetError, match=r"p\.png.*category_id \[99\]"):
        pq_from_maps(gt, segs, gt, [seg(1, 99)], label_set=LABELS, pred_source="p.png")
    with pytest.raises(DatasetError, match="twice"):
        pq_from_maps(gt, segs, gt, [seg(1, CAR), seg(1, ROAD)], label_set=LABELS)
    with pytest.raises(DatasetError, match="size of the ground truth"):
        pq_from_maps(gt, segs, np.array([[1], [1]]), segs, label_set=LABELS)
    with pytest.raises(DatasetError, match=r"gt\.png.*not in segments_info"):
        pq_from_maps(np.array([[1, 2]]), segs, gt, segs, label_set=LABELS, gt_source="gt.png")


def test_stat_merge_checks_categories() -> None:
    with pytest.raises(ValueError, match="different category"):
        PQStat.zeros([1, 2]) + PQStat.zeros([1, 3])


# --------------------------------------------------------------------------------------------------
# an independent, straightforward implementation (masks and loops) to compare with


def naive_counts(
    gt: np.ndarray, gt_segs: Sequence[SegmentInfo], pred: np.ndarray, pred_segs: Sequence[SegmentInfo]
) -> dict[int, list[float]]:
    counts = {c.id: [0, 0, 0, 0.0] for c in LABELS}  # tp, fp, fn, iou_sum
    void = gt == 0
    matched_gt: set[int] = set()
    matched_pred: set[int] = set()
    for g in gt_segs:
        g_mask = gt == g.id
        for p in pred_segs:
            p_mask = pred == p.id
            if g.iscrowd or g.category_id != p.category_id:
                continue
            inter = int((g_mask & p_mask).sum())
            union = int((g_mask | p_mask).sum()) - int((p_mask & void).sum())
            if union and inter / union > 0.5:
                counts[g.category_id][0] += 1
                counts[g.category_id][3] += inter / union
                matched_gt.add(g.id)
                matched_pred.add(p.id)
    for g in gt_segs:
        if g.id not in matched_gt and not g.iscrowd:
            counts[g.category_id][2] += 1
    for p in pred_segs:
        if p.id in matched_pred:
            continue
        p_mask = pred == p.id
        ignored = int((p_mask & void).sum())
        for g in gt_segs:
            if g.iscrowd and g.category_id == p.category_id:
                ignored += int((p_mask & (gt == g.id)).sum())
        if ignored / p_mask.sum() <= 0.5:
            counts[p.category_id][1] += 1
    return counts


def assert_same_counts(stat: PQStat, expected: dict[int, list[float]]) -> None:
    for category_id, (tp, fp, fn, iou) in expected.items():
        got = stat.counts(category_id)
        assert got[:3] == (tp, fp, fn), (category_id, got, (tp, fp, fn))
        assert got[3] == pytest.approx(iou)


def random_image(
    rng: np.random.Generator, shape: tuple[int, int], noise: float, crowd_p: float
) -> tuple[np.ndarray, list[SegmentInfo], np.ndarray, list[SegmentInfo]]:
    """A blocky gt map with some void and crowd, and a prediction that perturbs and relabels it."""
    height, width = shape
    cells = rng.integers(0, 7, size=(3, 4))  # 0 = void
    gt = np.kron(cells, np.ones((height // 3 + 1, width // 4 + 1), dtype=np.int64))[:height, :width]
    gt_ids = [int(i) for i in np.unique(gt) if i]
    category_ids = [c.id for c in LABELS]
    gt_segs = [seg(i, int(rng.choice(category_ids)), bool(rng.random() < crowd_p)) for i in gt_ids]
    pred = gt.copy()
    flip = rng.random(gt.shape) < noise
    pred[flip] = rng.integers(0, 9, size=int(flip.sum()))
    pred = pred * 3 + 100 * (pred > 0)  # different id values than the gt
    pred_ids = [int(i) for i in np.unique(pred) if i]
    category_of = {s.id * 3 + 100: s.category_id for s in gt_segs}
    pred_segs = [seg(i, category_of.get(i, int(rng.choice(category_ids)))) for i in pred_ids]
    if rng.random() < 0.3 and pred_segs:  # sometimes relabel one prediction
        k = int(rng.integers(len(pred_segs)))
        pred_segs[k] = seg(pred_segs[k].id, int(rng.choice(category_ids)))
    return gt, gt_segs, pred, pred_segs


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    noise=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
    crowd_p=st.sampled_from([0.0, 0.3]),
)
def test_matches_naive_implementation(
    seed: int, height: int, width: int, noise: float, crowd_p: float
) -> None:
    rng = np.random.default_rng(seed)
    gt, gt_segs, pred, pred_segs = random_image(rng, (height, width), noise, crowd_p)
    stat = pq_from_maps(gt, gt_segs, pred, pred_segs, label_set=LABELS)
    assert_same_counts(stat, naive_counts(gt, gt_segs, pred, pred_segs))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    height=st.integers(1, 16),
    width=st.integers(1, 16),
    n_ids=st.integers(1, 12),
)
def test_prediction_against_itself_is_100(seed: int, height: int, width: int, n_ids: int) -> None:
    rng = np.random.default_rng(seed)
    segment_map = rng.integers(0, n_ids + 1, size=(height, width)) * 1000  # ids 0 (void) .. n*1000
    category_ids = [c.id for c in LABELS]
    category_of = {int(i): int(rng.choice(category_ids)) for i in np.unique(segment_map) if i}
    segments = segments_from_map(segment_map, category_of)
    result = pq_from_maps(segment_map, segments, segment_map, segments, label_set=LABELS).summarize(LABELS)
    if not segments:
        assert result.all.n == 0
        return
    assert (result.all.pq, result.all.sq, result.all.rq) == (1.0, 1.0, 1.0)
    assert result.all.n == len(set(category_of.values()))
    for c in result.per_class.values():
        assert (c.pq, c.sq, c.rq, c.fp, c.fn) == (1.0, 1.0, 1.0, 0, 0)


def test_two_images_accumulate_like_one_pooled_image() -> None:
    rng = np.random.default_rng(7)
    a = random_image(rng, (9, 12), 0.2, 0.3)
    b = random_image(rng, (9, 12), 0.3, 0.3)
    stat_a = pq_from_maps(a[0], a[1], a[2], a[3], label_set=LABELS)
    stat_b = pq_from_maps(b[0], b[1], b[2], b[3], label_set=LABELS)
    total = stat_a + stat_b
    assert total.num_images == 2

    # pooled: the two images side by side, the second one's ids shifted so none collide
    def shifted(m: np.ndarray, segs: list[SegmentInfo]) -> tuple[np.ndarray, list[SegmentInfo]]:
        return np.where(m > 0, m + 5000, 0), [
            SegmentInfo(s.id + 5000, s.category_id, s.iscrowd) for s in segs
        ]

    gt_b, gt_segs_b = shifted(b[0], b[1])
    pred_b, pred_segs_b = shifted(b[2], b[3])
    pooled = pq_from_maps(
        np.hstack([a[0], gt_b]),
        a[1] + gt_segs_b,
        np.hstack([a[2], pred_b]),
        a[3] + pred_segs_b,
        label_set=LABELS,
    )
    np.testing.assert_array_equal(total.tp, pooled.tp)
    np.testing.assert_array_equal(total.fp, pooled.fp)
    np.testing.assert_array_equal(total.fn, pooled.fn)
    np.testing.assert_allclose(total.iou_sum, pooled.iou_sum)
    assert total.summarize(LABELS).all == pytest.approx(pooled.summarize(LABELS).all)
    # and the sum of the naive per-image counts
    expected = naive_counts(*a)
    for category_id, counts in naive_counts(*b).items():
        expected[category_id] = [x + y for x, y in zip(expected[category_id], counts, strict=True)]
    assert_same_counts(total, expected)


# --------------------------------------------------------------------------------------------------
# folders


def _write(root: Path, images: list[tuple[str, np.ndarray, list[SegmentInfo]]]) -> None:
    with CocoPanopticWriter(root, LABELS) as writer:
        for stem, segment_map, segments in images:
            writer.add(stem, None, segment_map, segments)


def test_evaluate_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    samples = [random_image(rng, (10, 12), 0.25, 0.3) for _ in range(3)]
    _write(tmp_path / "gt", [(f"im{k}", s[0], s[1]) for k, s in enumerate(samples)])
    # predictions written in another order, plus one image without ground truth (ignored)
    extra = random_image(rng, (10, 12), 0.0, 0.0)
    _write(
        tmp_path / "pred",
        [(f"im{k}", samples[k][2], samples[k][3]) for k in (2, 0, 1)] + [("x", extra[2], extra[3])],
    )
    result = evaluate_folders(tmp_path / "gt", tmp_path / "pred", progress=False)
    expected = PQStat.zeros([c.id for c in LABELS])
    for s in samples:
        expected = expected + pq_from_maps(s[0], s[1], s[2], s[3], label_set=LABELS)
    assert result.num_images == 3
    assert result.per_class == expected.summarize(LABELS).per_class
    assert result.semantic is not None and 0.0 <= result.semantic.miou <= 1.0
    assert "mIoU" in result.table()
    data = json.loads(result.to_json())
    assert data["num_images"] == 3 and data["semantic"]["n"] == result.semantic.n

    # against itself: 100
    self_result = evaluate_folders(tmp_path / "gt", tmp_path / "gt", progress=False)
    assert self_result.all.pq == 1.0 and self_result.semantic is not None
    assert self_result.semantic.miou == 1.0 and self_result.semantic.pixel_accuracy == 1.0


def test_evaluate_folders_missing_prediction(tmp_path: Path) -> None:
    m = np.array([[1, 1], [0, 3]])
    segs = [seg(1, CAR), seg(3, ROAD)]
    _write(tmp_path / "gt", [("a", m, segs), ("b", m, segs)])
    _write(tmp_path / "pred", [("a", m, segs)])
    with pytest.raises(DatasetError, match=r"no prediction for 1 .*'b\.png'"):
        evaluate_folders(tmp_path / "gt", tmp_path / "pred", progress=False)


def test_evaluate_folders_size_mismatch_and_bad_prediction(tmp_path: Path) -> None:
    m = np.array([[1, 1], [0, 3]])
    segs = [seg(1, CAR), seg(3, ROAD)]
    _write(tmp_path / "gt", [("a", m, segs)])
    _write(tmp_path / "small", [("a", m[:1], [seg(1, CAR)])])
    with pytest.raises(DatasetError, match="size of the ground truth"):
        evaluate_folders(tmp_path / "gt", tmp_path / "small", progress=False)
    # a prediction JSON that forgets a segment that is in its PNG
    _write(tmp_path / "pred", [("a", m, segs)])
    json_path = tmp_path / "pred" / "panoptic.json"
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"] = data["annotations"][0]["segments_info"][:1]
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"pred/panoptic/a\.png.*\[3\].*not in segments_info"):
        evaluate_folders(tmp_path / "gt", tmp_path / "pred", progress=False)


def test_evaluate_datasets_needs_gt_categories(tmp_path: Path) -> None:
    m = np.array([[1, 1]])
    _write(tmp_path / "gt", [("a", m, [seg(1, CAR)])])
    json_path = tmp_path / "gt" / "panoptic.json"
    data = json.loads(json_path.read_text())
    del data["categories"]
    json_path.write_text(json.dumps(data))
    dataset = read_dataset(tmp_path / "gt")
    with pytest.raises(DatasetError, match="no 'categories'"):
        evaluate_datasets(dataset, dataset, progress=False)
