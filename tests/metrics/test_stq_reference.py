"""STQ as its reference computes it (deeplab2 ``evaluation/numpy/segmentation_and_tracking_quality.py``):
the published values of the reference's unit tests (its complex three-frame example and its basic
examples, inputs rebuilt here from the test's description), and property tests against a
straightforward per-pixel implementation of the reference's rules on random small sequences, for both
variants."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.metrics.video import FrameLabels, SequenceAccumulator, StqVariant, VideoStat

# --------------------------------------------------------------------------------------------------
# the reference's complex example: classes sky 0, vegetation 1, car 2 (the only thing), 8 x 8, 3 frames.
# One string per row; the semantic digit is the class, the instance digit the id (0 where none).

GT_SEMANTIC = (
    ("00000000", "00000000", "00020111", "02222111", "22222211", "22222221", "22222221", "22222211"),
    ("00000000", "00000000", "02001100", "22211110", "22221111", "22222111", "22222111", "22221111"),
    ("00000000", "00000000", "00000000", "20111000", "22111100", "22211110", "22211111", "22211111"),
)
GT_INSTANCE = (
    ("00000000", "00000000", "00020000", "02222000", "22222200", "22222220", "22222220", "22222200"),
    ("00000000", "00000000", "02000000", "22200000", "22220000", "22222000", "22222000", "22220000"),
    ("00000000", "00000000", "00000000", "20000000", "22000000", "22200000", "22200000", "22200000"),
)
PRED_SEMANTIC = (
    ("00000000", "00000000", "00000100", "00022111", "02222211", "22222221", "22222221", "22222221"),
    ("00000000", "00000000", "00001100", "02221111", "22221111", "22222111", "22222211", "22222111"),
    ("00000000", "00000000", "00001000", "00111100", "22211100", "22211111", "22221111", "22221111"),
)
PRED_INSTANCE = (
    ("00000000", "00000000", "00000000", "00022000", "02222100", "22222110", "22221110", "22221110"),
    ("00000000", "00000000", "00000000", "02220000", "22220000", "22222000", "22221100", "22221000"),
    ("00000000", "00000000", "00000000", "00000000", "22200000", "22200000", "22220000", "22220000"),
)


def grid(rows: Sequence[str]) -> np.ndarray:
    return np.array([[int(c) for c in row] for row in rows], dtype=np.int64)


def test_the_reference_complex_example() -> None:
    acc = SequenceAccumulator("1", [0, 1, 2], thing_ids=[2])
    for k in range(3):
        acc.add(
            FrameLabels(grid(GT_SEMANTIC[k]), grid(GT_INSTANCE[k])),
            FrameLabels(grid(PRED_SEMANTIC[k]), grid(PRED_INSTANCE[k])),
        )
    result = VideoStat((acc.finish(),)).summarize()
    # the values the reference's unit test asserts
    assert result.stq == pytest.approx(0.66841773352, abs=1e-10)
    assert result.aq == pytest.approx(0.55366581415, abs=1e-10)
    assert result.sq == pytest.approx(0.8069529580309542, abs=1e-12)
    (seq,) = result.per_sequence
    assert (seq.stq, seq.aq, seq.sq) == pytest.approx((result.stq, result.aq, result.sq))
    assert seq.frames == 3
    # and the straightforward implementation below agrees
    frames = [
        (grid(GT_SEMANTIC[k]), grid(GT_INSTANCE[k]), grid(PRED_SEMANTIC[k]), grid(PRED_INSTANCE[k]))
        for k in range(3)
    ]
    assert slow_stq([frames], 3, {2}) == pytest.approx((result.stq, result.aq, result.sq))


# --------------------------------------------------------------------------------------------------
# the reference's basic examples: car 0 (the thing), sky 1; one row of pixels. A digit d is a car pixel
# with id d (for ground truth, id 0 is crowd); "s" is sky (id 0).


def row(pixels: str) -> FrameLabels:
    semantic = np.array([[1 if c == "s" else 0 for c in pixels]], dtype=np.int64)
    ids = np.array([[0 if c == "s" else int(c) for c in pixels]], dtype=np.int64)
    return FrameLabels(semantic, ids)


@pytest.mark.parametrize(
    ("gt", "pred", "expected"),
    [
        ("11111", "11111", (1.0, 1.0, 1.0)),
        ("11111", "11222", (0.72111026, 0.52, 1.0)),
        ("11111", "12222", (0.82462113, 0.68, 1.0)),
        ("11111", "12345", (0.447213596, 0.2, 1.0)),
        ("11111", "12122", (0.72111026, 0.52, 1.0)),
        ("11111", "s1111", (0.50596443, 0.64, 0.4)),
        ("011111", "111111", (1.0, 1.0, 1.0)),
        ("011111", "222211", (0.72111026, 0.52, 1.0)),
        ("011111", "22s111", (0.40824829, 0.4, 5.0 / 12.0)),
        ("s1111", "11111", (0.56568542, 0.8, 0.4)),
        ("s1111", "22211", (0.42426407, 0.45, 0.4)),
        ("s1111", "22s11", (0.3, 0.3, 0.3)),
    ],
)
def test_the_reference_basic_examples(gt: str, pred: str, expected: tuple[float, float, float]) -> None:
    acc = SequenceAccumulator("1", [0, 1], thing_ids=[0])
    acc.add(row(gt), row(pred))
    result = VideoStat((acc.finish(),)).summarize()
    assert (result.stq, result.aq, result.sq) == pytest.approx(expected, abs=1e-7)


def test_predicted_void_is_one_more_class_in_sq() -> None:
    # car 0 (thing), sky 1, void -1: gt [car 1, car 1, sky, sky], pred [car 1, void, sky, sky]
    # reference: car IoU 1/2, sky 1, void column (1 pixel) -> one more class, IoU 0: SQ = 1.5 / 3
    gt = FrameLabels(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 0, 0]]))
    pred = FrameLabels(np.array([[0, -1, 1, 1]]), np.array([[1, 0, 0, 0]]))
    for variant, sq in (("reference", 0.5), ("void-ignored", 0.75)):
        acc = SequenceAccumulator("s", [0, 1], thing_ids=[0], variant=variant)  # type: ignore[arg-type]
        acc.add(gt, pred)
        result = VideoStat((acc.finish(),)).summarize()
        assert result.sq == pytest.approx(sq) and result.variant == variant
        assert result.semantic is not None and result.semantic.miou == pytest.approx(0.75)
    with pytest.raises(ValueError, match="STQ variant"):
        SequenceAccumulator("s", [0, 1], variant="other")  # type: ignore[arg-type]


def test_predicted_things_on_void_ground_truth_count_in_aq() -> None:
    # gt [car 1, car 1, void, void]; pred car 1 everywhere. Reference: |p| = 4, TPA 2, IoU_id 1/2,
    # AQ = 1/2 * 2 * 1/2 = 1/2. void-ignored: |p| = 2, AQ 1.
    gt = FrameLabels(np.array([[0, 0, -1, -1]]), np.array([[1, 1, 0, 0]]))
    pred = FrameLabels(np.array([[0, 0, 0, 0]]), np.array([[1, 1, 1, 1]]))
    for variant, aq in (("reference", 0.5), ("void-ignored", 1.0)):
        acc = SequenceAccumulator("s", [0, 1], thing_ids=[0], variant=variant)  # type: ignore[arg-type]
        acc.add(gt, pred)
        assert VideoStat((acc.finish(),)).summarize().aq == pytest.approx(aq)


def test_a_track_that_changes_class_is_two_tracks() -> None:
    # cars 0 and 1 are both things; the predicted id 5 is car 0 in frame 1 and car 1 in frame 2: two
    # tracks of 2 pixels each against one gt track of 4: AQ = 1/4 * (2 * 2/4 + 2 * 2/4) = 1/2
    gt = FrameLabels(np.array([[0, 0]]), np.array([[1, 1]]))
    acc = SequenceAccumulator("s", [0, 1], thing_ids=[0, 1])
    acc.add(gt, FrameLabels(np.array([[0, 0]]), np.array([[5, 5]])))
    acc.add(gt, FrameLabels(np.array([[1, 1]]), np.array([[5, 5]])))
    result = VideoStat((acc.finish(),)).summarize()
    assert result.aq == pytest.approx(0.5) and result.num_pred_tracks == 2


# --------------------------------------------------------------------------------------------------
# a straightforward implementation: a Python loop over every pixel, dictionaries of counts

Frame = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # gt semantic, gt ids, pred semantic, pred ids
VOID = -1


def slow_stq(
    sequences: Sequence[Sequence[Frame]], num_classes: int, things: set[int], variant: str = "reference"
) -> tuple[float, float, float]:
    """(STQ, AQ, SQ) by the reference's rules, class ids 0..num_classes - 1, void -1; NaN where the
    reference divides by its epsilon (no gt track) or by zero (no class)."""
    confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)  # void is the last index
    aq_sum, tubes = 0.0, 0
    for frames in sequences:
        gt_size: Counter[tuple[int, int]] = Counter()
        pred_size: Counter[tuple[int, int]] = Counter()
        overlap: Counter[tuple[tuple[int, int], tuple[int, int]]] = Counter()
        for gt_sem, gt_ids, pred_sem, pred_ids in frames:
            for y in range(gt_sem.shape[0]):
                for x in range(gt_sem.shape[1]):
                    g, gi, p, pi = (
                        int(gt_sem[y, x]),
                        int(gt_ids[y, x]),
                        int(pred_sem[y, x]),
                        int(pred_ids[y, x]),
                    )
                    if g != VOID:  # the void row is removed
                        confusion[g, num_classes if p == VOID else p] += 1
                    crowd = g in things and gi == 0
                    gt_track = g in things and not crowd
                    pred_track = p in things and not crowd and not (variant == "void-ignored" and g == VOID)
                    if gt_track:
                        gt_size[(g, gi)] += 1
                    if pred_track:
                        pred_size[(p, pi)] += 1
                    if gt_track and pred_track:
                        overlap[((g, gi), (p, pi))] += 1
        for g_key, g_size in gt_size.items():
            inner = 0.0
            for p_key, p_size in pred_size.items():
                tpa = overlap.get((g_key, p_key), 0)
                if tpa:
                    inner += tpa * tpa / (tpa + (p_size - tpa) + (g_size - tpa))
            aq_sum += inner / g_size
        tubes += len(gt_size)
    classes = num_classes + 1 if variant == "reference" else num_classes
    ious = []
    for c in range(classes):
        tp = confusion[c, c]
        union = confusion[:, c].sum() + confusion[c, :].sum() - tp
        if union:
            ious.append(tp / union)
    aq = aq_sum / tubes if tubes else math.nan
    sq = sum(ious) / len(ious) if ious else math.nan
    return math.sqrt(aq * sq), aq, sq


NUM_CLASSES = 4
THINGS = {2, 3}


@st.composite
def sequences(draw: st.DrawFn) -> list[list[Frame]]:
    height, width = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    cells = height * width

    def plane(values: st.SearchStrategy[int]) -> np.ndarray:
        return np.array(draw(st.lists(values, min_size=cells, max_size=cells)), dtype=np.int64).reshape(
            height, width
        )

    classes = st.integers(-1, NUM_CLASSES - 1)
    ids = st.integers(0, 3)
    return [
        [(plane(classes), plane(ids), plane(classes), plane(ids)) for _ in range(draw(st.integers(1, 3)))]
        for _ in range(draw(st.integers(1, 3)))
    ]


def fast_stq(seqs: list[list[Frame]], variant: StqVariant) -> VideoStat:
    stat = VideoStat()
    for n, frames in enumerate(seqs):
        acc = SequenceAccumulator(f"s{n}", range(NUM_CLASSES), thing_ids=THINGS, variant=variant)
        for gt_sem, gt_ids, pred_sem, pred_ids in frames:
            # ids only where the reference reads them (thing classes); elsewhere they must not matter
            acc.add(FrameLabels(gt_sem, gt_ids), FrameLabels(pred_sem, pred_ids))
        stat = stat + VideoStat((acc.finish(),))
    return stat


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(seqs=sequences(), variant=st.sampled_from(["reference", "void-ignored"]))
def test_matches_the_straightforward_implementation(seqs: list[list[Frame]], variant: StqVariant) -> None:
    result = fast_stq(seqs, variant).summarize()
    expected = slow_stq(seqs, NUM_CLASSES, THINGS, variant)
    assert all(same(a, b) for a, b in zip((result.stq, result.aq, result.sq), expected, strict=True)), (
        (result.stq, result.aq, result.sq),
        expected,
    )
    for frames, seq in zip(seqs, result.per_sequence, strict=True):
        one = slow_stq([frames], NUM_CLASSES, THINGS, variant)
        assert all(same(a, b) for a, b in zip((seq.stq, seq.aq, seq.sq), one, strict=True))
