"""Video metrics (STQ = sqrt(AQ x SQ), ID switches, fragmentations) on tiny hand-made sequences whose
values are worked out by hand in the comments, under both STQ variants, plus the COCO folder
evaluation (with VPQ). The reference's own values: test_stq_reference.py; VPQ itself: test_vpq.py."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.data.coco_format import DatasetError, SegmentInfo
from panoptic_ros.data.coco_panoptic import CocoPanopticWriter
from panoptic_ros.data.synthetic import export_coco
from panoptic_ros.metrics.folders import evaluate_video_folders
from panoptic_ros.metrics.video import FrameLabels, SequenceAccumulator, StqVariant, VideoStat, frame_labels

CAR, PERSON, ROAD = 1, 2, 3
CATEGORIES = (CAR, PERSON, ROAD)
LABELS = LabelSet(
    "video-test",
    (
        Category(CAR, "car", True, (0, 0, 142)),
        Category(PERSON, "person", True, (220, 20, 60)),
        Category(ROAD, "road", False, (128, 64, 128)),
    ),
)
V = -1  # void in semantic maps


def labels(
    semantic: Sequence[Sequence[int]],
    tracks: Sequence[Sequence[int]],
    crowd: Sequence[Sequence[int]] | None = None,
) -> FrameLabels:
    return FrameLabels(
        np.array(semantic, dtype=np.int64),
        np.array(tracks, dtype=np.int64),
        None if crowd is None else np.array(crowd, dtype=bool),
    )


def evaluate(
    frames: Sequence[tuple[FrameLabels, FrameLabels]],
    name: str = "s",
    *,
    variant: StqVariant = "reference",
    things: tuple[int, ...] | None = None,
) -> VideoStat:
    acc = SequenceAccumulator(name, CATEGORIES, thing_ids=things, variant=variant)
    for gt, pred in frames:
        acc.add(gt, pred)
    return VideoStat((acc.finish(),))


# one gt car (track 7) of 4 pixels on a road row, in every frame
GT_CAR = labels([[CAR, CAR, CAR, CAR], [ROAD, ROAD, ROAD, ROAD]], [[7, 7, 7, 7], [0, 0, 0, 0]])


def pred_ids(row: Sequence[int], semantic: Sequence[int] = (CAR, CAR, CAR, CAR)) -> FrameLabels:
    return labels([list(semantic), [ROAD] * 4], [list(row), [0, 0, 0, 0]])


def test_perfect_tracking() -> None:
    result = evaluate([(GT_CAR, pred_ids([3, 3, 3, 3]))] * 3).summarize(LABELS)
    assert result.aq == 1.0 and result.sq == 1.0 and result.stq == 1.0
    assert result.id_switches == 0 and result.fragmentations == 0
    assert result.object_frames == 3 and result.num_gt_tracks == 1 and result.num_pred_tracks == 1


def test_id_switch_halfway() -> None:
    # |g| = 8; p1 and p2 each overlap 4 pixels and have 4 pixels: IoU_id = 4 / (4 + 8 - 4) = 0.5
    # AQ = 1/8 * (4 * 0.5 + 4 * 0.5) = 0.5
    result = evaluate([(GT_CAR, pred_ids([1, 1, 1, 1])), (GT_CAR, pred_ids([2, 2, 2, 2]))]).summarize()
    assert result.aq == pytest.approx(0.5)
    assert result.stq == pytest.approx(math.sqrt(0.5))
    assert result.id_switches == 1 and result.fragmentations == 0
    assert result.id_switches_per_1000 == pytest.approx(500.0)


def test_track_split_into_two_ids() -> None:
    # per frame 3 pixels id 1 and 1 pixel id 2, over two frames: |g| = 8
    # p1: TPA 6, |p1| 6 -> IoU 6/8 = 0.75, contributes 6 * 0.75 = 4.5
    # p2: TPA 2, |p2| 2 -> IoU 2/8 = 0.25, contributes 2 * 0.25 = 0.5;  AQ = (4.5 + 0.5) / 8 = 0.625
    result = evaluate([(GT_CAR, pred_ids([1, 1, 1, 2]))] * 2).summarize()
    assert result.aq == pytest.approx(0.625)
    assert result.id_switches == 0  # id 1 covers 3 of 4 pixels: IoU 0.75 > 0.5 in both frames
    assert result.num_pred_tracks == 2


def test_one_id_over_two_gt_tracks() -> None:
    # gt 7 (2 px) and gt 8 (2 px) in one frame, both predicted as id 1 (4 px)
    # for each g: TPA 2, IoU 2 / (4 + 2 - 2) = 0.5, contributes 1/2 * 2 * 0.5 = 0.5;  AQ = (0.5 + 0.5) / 2
    gt = labels([[CAR, CAR, CAR, CAR]], [[7, 7, 8, 8]])
    result = evaluate([(gt, labels([[CAR] * 4], [[1, 1, 1, 1]]))]).summarize()
    assert result.aq == pytest.approx(0.5)


def test_crowd_is_ignored_and_void_ground_truth_counts_as_the_reference_does() -> None:
    # gt: car 7 on 2 pixels, void on 2, a car crowd region on 2 (track 0); the prediction's id 1 covers
    # all 6. Crowd is left out of |p|; void is not (reference): |p| = 4, TPA 2, IoU_id 1/2, AQ 1/2.
    # void-ignored: only the 2 pixels on gt car count in |p|, so IoU_id = 1 and AQ = 1
    gt = labels([[CAR, CAR, V, V, CAR, CAR]], [[7, 7, 0, 0, 0, 0]], crowd=[[0, 0, 0, 0, 1, 1]])
    pred = labels([[CAR] * 6], [[1] * 6])
    for things in (None, (CAR, PERSON)):  # with the thing categories, the id-0 car pixels are crowd anyway
        result = evaluate([(gt, pred)], things=things).summarize()
        assert result.aq == pytest.approx(0.5) and result.num_gt_tracks == 1
        assert evaluate([(gt, pred)], things=things, variant="void-ignored").summarize().aq == 1.0
    # with the thing categories known, a gt car pixel without id is crowd even when not flagged
    unflagged = labels([[CAR, CAR, CAR, CAR]], [[7, 7, 0, 0]])
    whole = labels([[CAR] * 4], [[1] * 4])
    assert evaluate([(unflagged, whole)], things=(CAR, PERSON)).summarize().aq == 1.0
    assert evaluate([(unflagged, whole)]).summarize().aq == pytest.approx(0.5)  # |p| = 4 without them
    # predicted pixels on gt stuff do count: |p| = 4, TPA = 2 -> IoU 0.5, AQ = 1/2 * 2 * 0.5 = 0.5
    gt_stuff = labels([[CAR, CAR, ROAD, ROAD]], [[7, 7, 0, 0]])
    assert evaluate([(gt_stuff, labels([[CAR] * 4], [[1] * 4]))]).summarize().aq == pytest.approx(0.5)


def test_aq_ignores_classes_sq_does_not() -> None:
    # right ids, wrong class (person instead of car): AQ 1; SQ: car IoU 0 (4 gt px, none predicted),
    # person IoU 0 (4 predicted px, none in gt), road IoU 1 -> SQ = 1/3; STQ = sqrt(1/3)
    result = evaluate([(GT_CAR, pred_ids([5, 5, 5, 5], semantic=[PERSON] * 4))]).summarize(LABELS)
    assert result.aq == 1.0
    assert result.sq == pytest.approx(1 / 3)
    assert result.stq == pytest.approx(math.sqrt(1 / 3))
    assert result.semantic is not None and result.semantic.per_class_iou == pytest.approx(
        {CAR: 0.0, PERSON: 0.0, ROAD: 1.0}
    )


def test_sq_is_accumulated_class_miou_with_void() -> None:
    # frame 1: gt car car road road | pred car road road void  (void gt pixels are ignored elsewhere)
    # frame 2: gt void car road road | pred car car road road
    # confusion over both frames (gt void ignored): car: hits 2, gt 3, pred 2 -> IoU 2/3
    # road: hits 3, gt 4, pred 4 -> IoU 3 / (4 + 4 - 3) = 3/5; person absent. Predicted void on a labeled
    # pixel: under the reference one more class of IoU 0 -> SQ = (2/3 + 3/5) / 3; void-ignored: / 2
    f1 = (labels([[CAR, CAR, ROAD, ROAD]], [[7, 7, 0, 0]]), labels([[CAR, ROAD, ROAD, V]], [[1, 0, 0, 0]]))
    f2 = (labels([[V, CAR, ROAD, ROAD]], [[0, 7, 0, 0]]), labels([[CAR, CAR, ROAD, ROAD]], [[1, 1, 0, 0]]))
    result = evaluate([f1, f2]).summarize()
    assert result.sq == pytest.approx((2 / 3 + 3 / 5) / 3)
    assert result.semantic is not None and result.semantic.miou == pytest.approx((2 / 3 + 3 / 5) / 2)
    # AQ: |g| = 3, p1 has 3 pixels (frame 1 one on car; frame 2 one on void gt, one on car) -> TPA 2,
    # IoU 2 / (3 + 3 - 2) = 1/2;  AQ = 1/3 * 2 * 1/2 = 1/3
    assert result.aq == pytest.approx(1 / 3)
    assert result.stq == pytest.approx(math.sqrt(1 / 3 * (2 / 3 + 3 / 5) / 3))
    # void-ignored: the pixel on void gt is left out of |p| -> |p| 2, IoU 2/3, AQ = 1/3 * 2 * 2/3 = 4/9
    ignored = evaluate([f1, f2], variant="void-ignored").summarize()
    assert ignored.sq == pytest.approx((2 / 3 + 3 / 5) / 2) and ignored.aq == pytest.approx(4 / 9)
    assert ignored.stq == pytest.approx(math.sqrt(4 / 9 * (2 / 3 + 3 / 5) / 2))
    assert ignored.variant == "void-ignored" and "void-ignored" in ignored.table()
    with pytest.raises(ValueError, match="different STQ variants"):
        (evaluate([f1], "a") + evaluate([f1], "b", variant="void-ignored")).summarize()


def test_id_switches_and_fragmentations_by_hand() -> None:
    frames = [
        [1, 1, 1, 1],  # tracked by 1
        [1, 1, 0, 0],  # IoU 2/4 = 0.5, not > 0.5: untracked
        [1, 1, 1, 0],  # tracked by 1 again: fragmentation 1
        [2, 2, 2, 2],  # tracked by 2: ID switch 1
        None,  # the object is absent: neither tracked nor untracked
        [2, 2, 2, 2],  # tracked by 2, no event (absence does not break tracking)
        [0, 0, 0, 0],  # untracked
        [1, 1, 1, 1],  # tracked by 1: ID switch 2 (last was 2), fragmentation 2
    ]
    empty = labels([[ROAD] * 4, [ROAD] * 4], [[0] * 4, [0] * 4])
    seq = [(GT_CAR, pred_ids(row)) if row is not None else (empty, empty) for row in frames]
    result = evaluate(seq).summarize()
    assert result.id_switches == 2
    assert result.fragmentations == 2
    assert result.object_frames == 7
    assert result.num_frames == 8


def test_a_region_without_id_counts_in_aq_but_tracks_nothing() -> None:
    # the car is first predicted without an id (a thing the tracker has not confirmed), then as 5
    seq = [
        (GT_CAR, pred_ids([0, 0, 0, 0])),
        (GT_CAR, pred_ids([5, 5, 5, 5])),
        (GT_CAR, pred_ids([5, 5, 5, 5])),
    ]
    result = evaluate(seq, things=(CAR, PERSON)).summarize()
    assert (result.id_switches, result.fragmentations) == (0, 0)  # (car, 0) never tracked the car
    assert result.num_pred_tracks == 1
    # AQ as the reference: (car, 0) TPA 4, IoU 4/12; (car, 5) TPA 8, IoU 8/12; |g| = 12
    assert result.aq == pytest.approx((4 * 4 / 12 + 8 * 8 / 12) / 12)


def test_tracked_needs_the_best_overlap_above_half() -> None:
    # id 1 covers 3 of 4 gt pixels but has 3 more pixels on stuff: IoU 3 / (4 + 6 - 3) < 0.5 -> untracked
    gt = labels([[CAR, CAR, CAR, CAR, ROAD, ROAD, ROAD]], [[7, 7, 7, 7, 0, 0, 0]])
    wide = labels([[CAR] * 7], [[1, 1, 1, 0, 1, 1, 1]])
    tight = labels([[CAR] * 7], [[2, 2, 2, 0, 0, 0, 0]])
    # frame 1 tracked by 2; frame 2 untracked (id 1 too wide); frame 3 tracked by 2 -> one fragmentation
    result = evaluate([(gt, tight), (gt, wide), (gt, tight)]).summarize()
    assert result.fragmentations == 1 and result.id_switches == 0


def test_aq_over_sequences_weights_gt_tracks() -> None:
    # sequence a: one gt track, perfect (numerator 1); sequence b: three gt tracks, each with its id
    # switched halfway (numerator 0.5 each). AQ = (1 + 1.5) / 4 = 0.625, not the mean of 1 and 0.5.
    a = evaluate([(GT_CAR, pred_ids([1, 1, 1, 1]))], name="a")
    gt_b = labels([[CAR, CAR, PERSON, PERSON, CAR, CAR]], [[1, 1, 2, 2, 3, 3]])
    first = labels([[CAR, CAR, PERSON, PERSON, CAR, CAR]], [[4, 4, 5, 5, 6, 6]])
    second = labels([[CAR, CAR, PERSON, PERSON, CAR, CAR]], [[7, 7, 8, 8, 9, 9]])
    b = evaluate([(gt_b, first), (gt_b, second)], name="b")
    result = (a + b).summarize()
    assert result.aq == pytest.approx(0.625)
    assert [s.aq for s in result.per_sequence] == pytest.approx([1.0, 0.5])
    assert result.id_switches == 3 and result.object_frames == 1 + 6
    assert result.num_sequences == 2
    with pytest.raises(ValueError, match="in both"):
        a + a


def test_no_gt_tracks_is_undefined() -> None:
    road = labels([[ROAD, ROAD]], [[0, 0]])
    result = evaluate([(road, road)]).summarize()
    assert math.isnan(result.aq) and math.isnan(result.stq) and result.sq == 1.0
    data = json.loads(result.to_json())
    assert data["aq"] is None and data["stq"] is None
    assert "STQ" in result.table()


def test_shape_mismatch_is_an_error() -> None:
    acc = SequenceAccumulator("s", CATEGORIES)
    with pytest.raises(DatasetError, match="one size"):
        acc.add(GT_CAR, labels([[CAR]], [[1]]))


def test_frame_labels_from_segments() -> None:
    segment_map = np.array([[0, 5, 5, 9], [12, 12, 9, 9]])
    segments = [SegmentInfo(5, CAR), SegmentInfo(9, PERSON, iscrowd=True), SegmentInfo(12, ROAD)]
    frame = frame_labels(segment_map, segments, {CAR, PERSON})
    np.testing.assert_array_equal(frame.semantic, [[V, CAR, CAR, PERSON], [ROAD, ROAD, PERSON, PERSON]])
    np.testing.assert_array_equal(frame.tracks, [[0, 5, 5, 0], [0, 0, 0, 0]])
    assert frame.crowd is not None
    np.testing.assert_array_equal(frame.crowd, [[0, 0, 0, 1], [0, 0, 1, 1]])
    with pytest.raises(DatasetError, match="not in segments_info"):
        frame_labels(segment_map, segments[:2], {CAR, PERSON})


# --------------------------------------------------------------------------------------------------
# folders


def _write_sequence(root: Path, frames: Sequence[tuple[np.ndarray, dict[int, int]]]) -> None:
    with CocoPanopticWriter(root, LABELS) as writer:
        for k, (segment_map, categories) in enumerate(frames):
            infos = [SegmentInfo(i, c) for i, c in categories.items() if (segment_map == i).any()]
            writer.add(f"{k:06d}", None, segment_map, infos)


def test_evaluate_video_folders(tmp_path: Path) -> None:
    # gt: car 7 (4 px) over road 100 in two frames; prediction: ids 1 then 2 (a switch), road as 50
    gt_map = np.array([[7, 7, 7, 7], [100, 100, 100, 100]])
    _write_sequence(tmp_path / "gt" / "seq_0000", [(gt_map, {7: CAR, 100: ROAD})] * 2)
    _write_sequence(tmp_path / "gt" / "seq_0001", [(gt_map, {7: CAR, 100: ROAD})] * 2)
    frames = [np.where(gt_map == 7, i, 50) for i in (1, 2)]
    _write_sequence(tmp_path / "pred" / "seq_0000", [(f, {1: CAR, 2: CAR, 50: ROAD}) for f in frames])
    _write_sequence(tmp_path / "pred" / "seq_0001", [(np.where(gt_map == 7, 3, 50), {3: CAR, 50: ROAD})] * 2)
    result = evaluate_video_folders(tmp_path / "gt", tmp_path / "pred")
    # AQ = (0.5 + 1) / 2 gt tracks; SQ = 1
    assert result.aq == pytest.approx(0.75)
    assert result.sq == 1.0
    assert result.stq == pytest.approx(math.sqrt(0.75))
    assert result.id_switches == 1 and result.object_frames == 4 and result.num_frames == 4
    assert [s.name for s in result.per_sequence] == ["seq_0000", "seq_0001"]
    data = json.loads(result.to_json())
    assert data["aq"] == pytest.approx(0.75) and data["per_sequence"][0]["name"] == "seq_0000"
    assert data["stq_variant"] == "reference"
    # VPQ: k = 0 over the 4 frames is perfect; two frames are too few for k = 5, so VPQ is undefined
    assert result.vpq is not None and result.vpq.per_window[0].windows == 4
    assert data["vpq"]["per_window"][0]["All"]["pq"] == 1.0 and data["vpq"]["vpq"]["All"] is None
    assert data["per_sequence"][0]["vpq"] is None
    table = result.table(per_sequence=True)
    assert "seq_0001" in table and "STQ" in table and "VPQ" in table
    # a single sequence folder works too
    single = evaluate_video_folders(tmp_path / "gt" / "seq_0001", tmp_path / "pred" / "seq_0001")
    assert single.aq == 1.0


def test_missing_predictions_are_errors(tmp_path: Path) -> None:
    gt_map = np.array([[7, 7], [100, 100]])
    _write_sequence(tmp_path / "gt" / "seq_0000", [(gt_map, {7: CAR, 100: ROAD})] * 2)
    (tmp_path / "pred").mkdir()
    with pytest.raises(DatasetError, match="no prediction for sequence 'seq_0000'"):
        evaluate_video_folders(tmp_path / "gt", tmp_path / "pred")
    _write_sequence(tmp_path / "pred" / "seq_0000", [(gt_map, {7: CAR, 100: ROAD})])  # one frame only
    with pytest.raises(DatasetError, match="no prediction for 1 of the 2"):
        evaluate_video_folders(tmp_path / "gt", tmp_path / "pred")
    with pytest.raises(DatasetError, match="holds no sequence"):
        evaluate_video_folders(tmp_path / "pred" / "seq_0000" / "panoptic", tmp_path / "pred")


def test_synthetic_ground_truth_against_itself(tmp_path: Path) -> None:
    folders = export_coco(tmp_path / "gt", 2, seed=3, height=48, width=96, sequence_length=3)
    assert [f.name for f in folders] == ["seq_0000", "seq_0001"]
    result = evaluate_video_folders(tmp_path / "gt", tmp_path / "gt")
    assert result.stq == 1.0 and result.aq == 1.0 and result.id_switches == 0
    assert result.num_frames == 6 and result.object_frames > 0


def test_synthetic_sequence_vpq_against_itself(tmp_path: Path) -> None:
    export_coco(tmp_path / "gt", 1, seed=4, height=32, width=64, sequence_length=16)
    result = evaluate_video_folders(tmp_path / "gt", tmp_path / "gt")
    assert result.vpq is not None and result.vpq.vpq == (1.0, 1.0, 1.0)
    assert [w.windows for w in result.vpq.per_window] == [16, 11, 6, 1]
    assert result.per_sequence[0].vpq == 1.0 and result.stq == 1.0
    step5 = evaluate_video_folders(tmp_path / "gt", tmp_path / "gt", frame_step=5, variant="void-ignored")
    assert step5.vpq is not None and [w.windows for w in step5.vpq.per_window] == [16, 15, 14, 13]
    assert step5.variant == "void-ignored"
