"""Video Panoptic Quality: hand-made windows for each rule (a track switch inside a window, stuff tubes,
void, crowd, the first frame's category), the windowing (sizes, frame step, too-short sequences),
k = 0 against image PQ, and property tests against a straightforward per-window implementation."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.data.coco_format import SegmentInfo
from panoptic_ros.metrics.panoptic_quality import PQStat, pair_histogram, pq_from_maps
from panoptic_ros.metrics.vpq import VPQ_WINDOWS, VPQAccumulator, VPQStat

CAR, PERSON, ROAD, SKY = 1, 2, 3, 4
LABELS = LabelSet(
    "vpq-test",
    (
        Category(CAR, "car", True, (0, 0, 142)),
        Category(PERSON, "person", True, (220, 20, 60)),
        Category(ROAD, "road", False, (128, 64, 128)),
        Category(SKY, "sky", False, (70, 130, 180)),
    ),
)
#: one frame: gt map, gt segments, predicted map, predicted segments
Frame = tuple[np.ndarray, list[SegmentInfo], np.ndarray, list[SegmentInfo]]


def frame(
    gt: Sequence[int], gt_cat: dict[int, int], pred: Sequence[int], pred_cat: dict[int, int], crowd=()
) -> Frame:
    gt_map, pred_map = np.array([gt], dtype=np.int64), np.array([pred], dtype=np.int64)
    gt_segs = [SegmentInfo(i, c, i in crowd) for i, c in gt_cat.items() if (gt_map == i).any()]
    pred_segs = [SegmentInfo(i, c) for i, c in pred_cat.items() if (pred_map == i).any()]
    return gt_map, gt_segs, pred_map, pred_segs


def counts(frames: Sequence[Frame], windows: Sequence[int] = (0, 1), frame_step: int = 1) -> VPQStat:
    acc = VPQAccumulator(LABELS, frame_step=frame_step, windows=windows)
    for gt_map, gt_segs, pred_map, pred_segs in frames:
        acc.add(pair_histogram(gt_map, gt_segs, pred_map, pred_segs, label_set=LABELS))
    return acc.finish()


# gt: car 7 on 4 pixels, road 100 on 4, in every frame
GT = ([7, 7, 7, 7, 100, 100, 100, 100], {7: CAR, 100: ROAD})


def car_as(track: int) -> Frame:
    return frame(*GT, [track] * 4 + [50] * 4, {track: CAR, 50: ROAD})


def test_a_track_switch_inside_a_window_costs_a_tp() -> None:
    stat = counts([car_as(1), car_as(2)])
    single, pair = stat.stats
    # k = 0: two frames, each a perfect car and road
    assert single.counts(CAR) == (2, 0, 0, 2.0) and single.num_images == 2
    # k = 1: the gt car tube (8 px) against tubes 1 and 2 (4 px each): IoU 4/8 = 0.5, not > 0.5, so no
    # TP: one FN and two FP; the road tube still matches
    assert pair.counts(CAR) == (0, 2, 1, 0.0) and pair.counts(ROAD) == (1, 0, 0, 1.0)
    result = stat.summarize()
    assert [w.result.all.pq for w in result.per_window] == pytest.approx([1.0, 0.5])
    assert result.vpq == pytest.approx((0.75, 0.5, 1.0))
    # a switch after two of three frames: tube 1 keeps IoU 8/12 > 0.5 (a TP of IoU 2/3), tube 2 is an FP
    three = counts([car_as(1), car_as(1), car_as(2)], windows=(2,)).stats[0]
    assert three.counts(CAR) == pytest.approx((1, 1, 0, 2 / 3))


def test_stuff_tubes_follow_their_ids() -> None:
    # the prediction numbers road 50 then 51: over two frames the road tube splits like a track
    frames = [
        frame(*GT, [1] * 4 + [50] * 4, {1: CAR, 50: ROAD}),
        frame(*GT, [1] * 4 + [51] * 4, {1: CAR, 51: ROAD}),
    ]
    pair = counts(frames).stats[1]
    assert pair.counts(ROAD) == (0, 2, 1, 0.0) and pair.counts(CAR) == (1, 0, 0, 1.0)


def test_void_is_left_out_of_the_union_and_excuses_false_positives() -> None:
    # gt car 7 on 2 px, void on 4; predicted car 1 over the car and 2 void pixels:
    # IoU 2 / (4 + 2 - 2 - 2) = 1; predicted car 9 lies on void only: not an FP
    f = frame([7, 7, 0, 0, 0, 0], {7: CAR}, [1, 1, 1, 1, 9, 9], {1: CAR, 9: CAR})
    stat = counts([f, f]).stats
    assert stat[0].counts(CAR) == (2, 0, 0, 2.0) and stat[1].counts(CAR) == (1, 0, 0, 1.0)


def test_crowd_is_neither_matched_nor_missed() -> None:
    # gt: car 7 (2 px), car crowd 8 (4 px); predicted car 1 on car 7, car 2 on the crowd (ignored), person 3
    # on the crowd (another category: an FP)
    f = frame(
        [7, 7, 8, 8, 8, 8], {7: CAR, 8: CAR}, [1, 1, 2, 2, 3, 3], {1: CAR, 2: CAR, 3: PERSON}, crowd={8}
    )
    stat = counts([f, f]).stats
    for window in stat:
        assert window.counts(CAR)[:3] == (window.num_images, 0, 0)
        assert window.counts(PERSON) == (0, window.num_images, 0, 0.0)


def test_a_tube_takes_the_category_of_its_first_frame() -> None:
    # predicted id 1 is a car in frame 1 and a person in frame 2: the window's tube is a car and matches
    frames = [
        frame(*GT, [1] * 4 + [50] * 4, {1: CAR, 50: ROAD}),
        frame(*GT, [1] * 4 + [50] * 4, {1: PERSON, 50: ROAD}),
    ]
    single, pair = counts(frames).stats
    assert pair.counts(CAR) == (1, 0, 0, 1.0) and pair.counts(PERSON) == (0, 0, 0, 0.0)
    assert single.counts(CAR) == (1, 0, 1, 1.0) and single.counts(PERSON) == (0, 1, 0, 0.0)


def test_windows_and_frame_step() -> None:
    perfect = [car_as(1)] * 16
    result = counts(perfect, windows=VPQ_WINDOWS).summarize()  # k + 1 consecutive frames
    assert [(w.k, w.windows) for w in result.per_window] == [(0, 16), (5, 11), (10, 6), (15, 1)]
    assert result.vpq == (1.0, 1.0, 1.0)
    # frames 5 video frames apart (Cityscapes-VPS): windows of 1, 2, 3, 4 given frames
    step5 = counts(perfect[:6], windows=VPQ_WINDOWS, frame_step=5).summarize()
    assert [w.windows for w in step5.per_window] == [6, 5, 4, 3] and step5.vpq.all == 1.0
    # too short for k = 15: VPQ is undefined, the other window sizes are still reported
    short = counts(perfect[:12], windows=VPQ_WINDOWS).summarize()
    assert short.per_window[3].windows == 0 and math.isnan(short.vpq.all)
    assert short.per_window[2].result.all.pq == 1.0
    assert short.to_dict()["vpq"]["All"] is None and "VPQ" in short.table()
    with pytest.raises(ValueError, match="multiples of the frame step"):
        VPQAccumulator(LABELS, frame_step=5, windows=(0, 3))


def test_merging_sequences_adds_counts() -> None:
    a, b = counts([car_as(1), car_as(2)]), counts([car_as(3)] * 3)
    merged = (a + b).stats[1]
    assert merged.counts(CAR) == (2, 2, 1, 2.0) and merged.num_images == 1 + 2
    with pytest.raises(ValueError, match="different windows"):
        a + counts([car_as(1)], windows=(0,))


# --------------------------------------------------------------------------------------------------
# random sequences


@st.composite
def sequences(draw: st.DrawFn) -> list[Frame]:
    """1-5 frames of up to 3 x 4 pixels; ids 0..4 (0 void) whose category (and gt crowd flag) may
    change from frame to frame."""
    height, width = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    frames = []
    for _ in range(draw(st.integers(1, 5))):
        maps = [
            np.array(draw(st.lists(st.integers(0, 4), min_size=height * width, max_size=height * width)))
            .reshape(height, width)
            .astype(np.int64)
            for _ in range(2)
        ]
        segs = []
        for side, segment_map in enumerate(maps):
            segs.append(
                [
                    SegmentInfo(
                        int(i),
                        draw(st.sampled_from((CAR, PERSON, ROAD, SKY))),
                        side == 0 and draw(st.booleans()),
                    )
                    for i in np.unique(segment_map)
                    if i
                ]
            )
        frames.append((maps[0], segs[0], maps[1], segs[1]))
    return frames


def slow_window(frames: Sequence[Frame]) -> dict[int, tuple[int, int, int, float]]:
    """(tp, fp, fn, iou_sum) per category of one window: frames stacked, every (gt, pred) segment pair
    tried, areas counted pixel by pixel."""
    gt = np.concatenate([f[0] for f in frames])
    pred = np.concatenate([f[2] for f in frames])
    gt_info: dict[int, tuple[int, bool]] = {}
    pred_info: dict[int, int] = {}
    for _, gt_segs, _, pred_segs in frames:
        for s in gt_segs:
            gt_info.setdefault(s.id, (s.category_id, s.iscrowd))
        for s in pred_segs:
            pred_info.setdefault(s.id, s.category_id)
    tp: Counter[int] = Counter()
    fp: Counter[int] = Counter()
    fn: Counter[int] = Counter()
    iou_sum: Counter[int] = Counter()
    gt_matched, pred_matched = set(), set()
    for g, (g_cat, crowd) in gt_info.items():
        for p, p_cat in pred_info.items():
            if crowd or g_cat != p_cat:
                continue
            inter = int(((gt == g) & (pred == p)).sum())
            union = int((gt == g).sum() + (pred == p).sum()) - inter - int(((gt == 0) & (pred == p)).sum())
            if inter and inter / union > 0.5:
                tp[g_cat] += 1
                iou_sum[g_cat] += inter / union
                gt_matched.add(g)
                pred_matched.add(p)
    for g, (g_cat, crowd) in gt_info.items():
        if g not in gt_matched and not crowd:
            fn[g_cat] += 1
    for p, p_cat in pred_info.items():
        if p in pred_matched:
            continue
        excused = int(((gt == 0) & (pred == p)).sum())
        excused += sum(
            int(((gt == g) & (pred == p)).sum())
            for g, (g_cat, crowd) in gt_info.items()
            if crowd and g_cat == p_cat
        )
        if excused / (pred == p).sum() <= 0.5:
            fp[p_cat] += 1
    return {c.id: (tp[c.id], fp[c.id], fn[c.id], iou_sum[c.id]) for c in LABELS}


@settings(max_examples=120, deadline=None)
@given(frames=sequences(), step=st.sampled_from([1, 2]))
def test_matches_the_straightforward_implementation(frames: list[Frame], step: int) -> None:
    windows = (0, step, 2 * step)
    stat = counts(frames, windows=windows, frame_step=step)
    for k, window_stat in zip(windows, stat.stats, strict=True):
        length = k // step + 1
        expected: dict[int, list[float]] = {c.id: [0, 0, 0, 0.0] for c in LABELS}
        starts = range(len(frames) - length + 1)
        for start in starts:
            for cid, values in slow_window(frames[start : start + length]).items():
                expected[cid] = [a + b for a, b in zip(expected[cid], values, strict=True)]
        assert window_stat.num_images == len(starts)
        for c in LABELS:
            tp, fp, fn, iou = window_stat.counts(c.id)
            assert (tp, fp, fn) == tuple(expected[c.id][:3]) and iou == pytest.approx(expected[c.id][3])


@settings(max_examples=60, deadline=None)
@given(frames=sequences())
def test_k0_is_image_pq_of_the_same_frames(frames: list[Frame]) -> None:
    image = PQStat.zeros([c.id for c in LABELS])
    for gt_map, gt_segs, pred_map, pred_segs in frames:
        image = image + pq_from_maps(gt_map, gt_segs, pred_map, pred_segs, label_set=LABELS)
    (k0,) = counts(frames, windows=(0,)).stats
    assert k0.num_images == image.num_images
    np.testing.assert_array_equal(np.stack([k0.tp, k0.fp, k0.fn]), np.stack([image.tp, image.fp, image.fn]))
    np.testing.assert_allclose(k0.iou_sum, image.iou_sum)
    assert counts(frames, windows=(0,)).summarize().per_window[0].result.all == image.summarize(LABELS).all
