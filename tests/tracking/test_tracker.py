"""The tracker case by case on hand-built frames (rectangles on a small canvas), and its parts: the
assignment solver against brute force, the joint-histogram mask IoU against a direct count, the
motion model."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from panoptic_ros.errors import ConfigError
from panoptic_ros.tracking import (
    AssignmentError,
    Tracker,
    TrackerInput,
    TrackerInputError,
    TrackerOutput,
    TrackerParams,
    TrackState,
    match,
    solve_assignment,
)
from panoptic_ros.tracking.assignment import _components, match_by_score
from panoptic_ros.tracking.association import (
    box_iou,
    center_distance,
    index_and_statistics,
    index_map,
    instance_statistics,
    joint_histogram,
    mask_iou,
    mean_colors,
)
from panoptic_ros.tracking.motion import measure_velocity, state_boxes

H, W = 64, 200
CAR, PERSON = 7, 5
MS = 1_000_000  # nanoseconds per millisecond
Box = tuple[int, int, int, int, int, int]  # instance id, category, x, y, width, height


def frame(
    objects: Sequence[Box],
    stamp_ms: float,
    *,
    scores: dict[int, float] | None = None,
    size: tuple[int, int] = (H, W),
) -> TrackerInput:
    """Rectangles painted in order (later ones in front); x may be negative or run off the image."""
    instance = np.zeros(size, np.int64)
    category = np.zeros(size, np.int64)
    for iid, cat, x, y, w, h in objects:
        x0, x1 = max(x, 0), min(x + w, size[1])
        instance[y : y + h, x0:x1] = iid
        category[y : y + h, x0:x1] = cat
    inp = TrackerInput.from_maps(torch.from_numpy(instance), torch.from_numpy(category), int(stamp_ms * MS))
    if scores:
        instance_ids = (inp.ids % 1000).tolist()
        inp = inp._replace(
            scores=torch.tensor([scores.get(i, 1.0) for i in instance_ids], dtype=torch.float32)
        )
    return inp


def track_of(out: TrackerOutput, inp: TrackerInput) -> dict[int, int]:
    """Input instance id -> track id (0 = none)."""
    return {int(i) % 1000: int(t) for i, t in zip(inp.ids, out.instance_track_ids, strict=True)}


def run(tracker: Tracker, frames: Sequence[TrackerInput]) -> list[dict[int, int]]:
    return [track_of(tracker.update(f), f) for f in frames]


def test_single_object_gets_one_id_and_the_map_is_right() -> None:
    tracker = Tracker(TrackerParams(min_hits=2))
    inp = frame([(3, CAR, 10, 10, 20, 10)], 0)
    out = tracker.update(inp)
    assert track_of(out, inp) == {3: 1}
    assert out.track_map.dtype == torch.int32 and out.track_map.shape == (H, W)
    expected = np.zeros((H, W), np.int32)
    expected[10:20, 10:30] = 1
    np.testing.assert_array_equal(out.track_map.numpy(), expected)
    assert out.tracks.track_ids.tolist() == [1] and out.tracks.states.tolist() == [TrackState.TENTATIVE]
    assert out.tracks.ages.tolist() == [1] and out.tracks.hits.tolist() == [1]
    np.testing.assert_allclose(out.tracks.bboxes[0], [10, 10, 20, 10])
    np.testing.assert_allclose(out.tracks.centroids[0], [19.5, 14.5])
    assert out.tracks.areas.tolist() == [200] and len(out.lost) == 0
    # an empty table has the columns of a full one
    for full, empty in zip(out.tracks, out.lost, strict=True):
        assert empty.dtype == full.dtype and empty.shape[1:] == full.shape[1:] and len(empty) == 0
    out = tracker.update(frame([(9, CAR, 12, 10, 20, 10)], 100))
    assert out.tracks.states.tolist() == [TrackState.CONFIRMED] and out.tracks.ages.tolist() == [2]


def test_crossing_objects_keep_their_ids() -> None:
    # two cars of one class cross; B is in front of A and hides most of it while they overlap
    tracker = Tracker()
    frames = [
        frame([(1, CAR, 10 + 8 * k, 20, 30, 16), (2, CAR, 160 - 8 * k, 24, 30, 16)], 100 * k)
        for k in range(19)
    ]
    ids = run(tracker, frames)
    assert all(i == ids[0] for i in ids)
    assert ids[0][1] != ids[0][2]


def test_crossing_with_full_occlusion_keeps_ids() -> None:
    # A (small, behind) is completely hidden by B (large, in front) for a few frames while they cross
    tracker = Tracker()
    frames = []
    for k in range(24):
        a = (1, CAR, 20 + 6 * k, 30, 16, 10)
        b = (2, CAR, 170 - 6 * k, 24, 34, 22)
        frames.append(frame([a, b], 100 * k))
    outs = [tracker.update(f) for f in frames]
    ids = [track_of(o, f) for o, f in zip(outs, frames, strict=True)]
    hidden = [k for k, f in enumerate(frames) if 1 not in (f.ids % 1000).tolist()]
    assert hidden, "the scene must hide A for some frames"
    assert {i[1] for i in ids if 1 in i} == {ids[0][1]}
    assert {i[2] for i in ids} == {ids[0][2]}
    # while hidden, A is a lost track predicted by its motion (moving right)
    lost = outs[hidden[0]].lost
    assert lost.track_ids.tolist() == [ids[0][1]] and lost.states.tolist() == [TrackState.LOST]
    assert lost.velocities[0, 0] == pytest.approx(60.0, rel=0.05) and lost.areas.tolist() == [0]


def _gap_run(gap: int, max_age: int) -> tuple[int, int]:
    """A small object moving 8 px per 100 ms vanishes for ``gap`` frames and comes back where its
    motion puts it (no overlap with its last mask); returns its track id before and after."""
    tracker = Tracker(TrackerParams(max_age=max_age))
    before = after = 0
    for k in range(6 + gap + 2):
        visible = k < 6 or k >= 6 + gap
        inp = frame([(1, PERSON, 10 + 8 * k, 20, 6, 14)] if visible else [], 100 * k)
        out = tracker.update(inp)
        if visible:
            (tid,) = track_of(out, inp).values()
            before, after = (tid, tid) if k < 6 else (before, tid)
    return before, after


def test_occlusion_up_to_max_age_keeps_the_id() -> None:
    for gap in (1, 3, 5):
        before, after = _gap_run(gap, max_age=5)
        assert before == after == 1, gap


def test_occlusion_longer_than_max_age_gives_a_new_id() -> None:
    before, after = _gap_run(6, max_age=5)
    assert before == 1 and after == 2


def test_entering_and_leaving() -> None:
    tracker = Tracker(TrackerParams(min_hits=3, max_age=3))
    states = []
    # enters from the left border, crosses, leaves at the right border
    for k in range(30):
        inp = frame([(4, CAR, -30 + 12 * k, 20, 30, 12)], 100 * k)
        out = tracker.update(inp)
        if len(out.tracks):
            assert out.tracks.track_ids.tolist() == [1]
            states.append(int(out.tracks.states[0]))
        else:
            assert inp.ids.numel() == 0
            # gone: lost while its predicted box is still in the image, then removed
            assert out.lost.track_ids.tolist() in ([1], [])
    assert states[:3] == [TrackState.TENTATIVE, TrackState.TENTATIVE, TrackState.CONFIRMED]
    assert set(states[2:]) == {TrackState.CONFIRMED}
    assert len(out.lost) == 0 and len(out.tracks) == 0


def test_lost_track_is_removed_after_max_age_missed_frames() -> None:
    tracker = Tracker(TrackerParams(min_hits=1, max_age=2))
    tracker.update(frame([(1, CAR, 50, 20, 20, 10)], 0))
    misses = []
    for k in range(1, 5):
        out = tracker.update(frame([], 100 * k))
        misses.append(out.lost.time_since_update.tolist())
    assert misses == [[1], [2], [], []]
    # a still object is predicted where it was
    tracker = Tracker(TrackerParams(min_hits=1, max_age=2))
    tracker.update(frame([(1, CAR, 50, 20, 20, 10)], 0))
    out = tracker.update(frame([], 100))
    np.testing.assert_allclose(out.lost.bboxes[0], [50, 20, 20, 10])
    np.testing.assert_allclose(out.lost.centroids[0], [59.5, 24.5])


def test_tentative_track_dies_at_its_first_miss() -> None:
    tracker = Tracker(TrackerParams(min_hits=3))
    tracker.update(frame([(1, CAR, 50, 20, 20, 10)], 0))
    out = tracker.update(frame([], 100))
    assert len(out.lost) == 0 and len(out.tracks) == 0
    out = tracker.update(frame([(1, CAR, 50, 20, 20, 10)], 200))
    assert out.tracks.track_ids.tolist() == [2]


def test_class_change_is_refused() -> None:
    tracker = Tracker(TrackerParams(min_hits=1))
    first = run(tracker, [frame([(1, CAR, 50, 20, 20, 10)], 0)])[0]
    inp = frame([(1, PERSON, 50, 20, 20, 10)], 100)
    out = tracker.update(inp)
    assert track_of(out, inp)[1] != first[1]
    assert out.tracks.category_ids.tolist() == [PERSON]
    assert out.lost.track_ids.tolist() == [first[1]] and out.lost.category_ids.tolist() == [CAR]


def test_ids_are_never_reused() -> None:
    tracker = Tracker(TrackerParams(min_hits=1, max_age=1))
    seen: list[int] = []
    stamp = 0
    for _ in range(3):
        for k in range(3):  # an object for three frames, then gone long enough to be removed
            inp = frame([(1, CAR, 50 + k, 20, 20, 10)], stamp)
            seen.extend(track_of(tracker.update(inp), inp).values())
            stamp += 100
        for _ in range(3):
            tracker.update(frame([], stamp))
            stamp += 100
    assert seen == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    tracker.reset()
    inp = frame([(1, CAR, 50, 20, 20, 10)], 0)
    assert track_of(tracker.update(inp), inp) == {1: 4}
    assert tracker.next_id == 5


def test_velocity_in_pixels_per_second_from_stamps() -> None:
    tracker = Tracker()
    # +10 px per 100 ms in x, -5 px per 100 ms in y, at irregular stamps (a frame count would be wrong)
    stamps = [0, 100, 200, 400, 440, 500]
    velocities = []
    for t in stamps:
        out = tracker.update(frame([(1, CAR, 20 + t // 10, 40 - t // 20, 20, 10)], t))  # 440 ms: +4, -2 px
        velocities.append(out.tracks.velocities[0].tolist())
    assert velocities[0] == [0.0, 0.0]  # zero until the second hit
    for v in velocities[1:]:
        assert v == pytest.approx([100.0, -50.0])
    # moving left gives a negative velocity
    tracker = Tracker()
    for t in (0, 100, 200):
        out = tracker.update(frame([(1, CAR, 150 - t // 10, 20, 20, 10)], t))
    assert out.tracks.velocities[0].tolist() == pytest.approx([-100.0, 0.0])


def test_velocity_is_smoothed() -> None:
    tracker = Tracker(TrackerParams(velocity_smoothing=0.5))
    for t, x in ((0, 20), (100, 30), (200, 50)):  # 100 px/s, then 200 px/s
        out = tracker.update(frame([(1, CAR, x, 20, 20, 10)], t))
    assert out.tracks.velocities[0, 0] == pytest.approx(150.0)


def test_stamp_going_back_resets_the_tracker() -> None:
    tracker = Tracker(TrackerParams(min_hits=1))
    for t in (0, 100, 200):
        out = tracker.update(frame([(1, CAR, 20 + t // 10, 20, 20, 10)], 10_000 + t))
    assert out.tracks.track_ids.tolist() == [1] and not out.reset
    # the bag loops: the stamp jumps back
    out = tracker.update(frame([(1, CAR, 20, 20, 20, 10)], 10_000))
    assert out.reset
    assert out.tracks.track_ids.tolist() == [2] and len(out.lost) == 0
    assert out.tracks.velocities.tolist() == [[0.0, 0.0]] and out.tracks.ages.tolist() == [1]
    out = tracker.update(frame([(1, CAR, 30, 20, 20, 10)], 10_100))
    assert not out.reset and out.tracks.velocities[0, 0] == pytest.approx(100.0)


def test_repeated_stamp_associates_without_velocity() -> None:
    tracker = Tracker()
    tracker.update(frame([(1, CAR, 20, 20, 20, 10)], 0))
    out = tracker.update(frame([(1, CAR, 30, 20, 20, 10)], 100))
    out = tracker.update(frame([(1, CAR, 31, 20, 20, 10)], 100))
    assert not out.reset and out.tracks.track_ids.tolist() == [1]
    assert out.tracks.velocities[0, 0] == pytest.approx(100.0)


def test_new_image_size_resets_the_tracker() -> None:
    tracker = Tracker()
    tracker.update(frame([(1, CAR, 20, 20, 20, 10)], 0))
    out = tracker.update(frame([(1, CAR, 20, 20, 20, 10)], 100, size=(H, W + 8)))
    assert out.reset and out.tracks.track_ids.tolist() == [2]


def test_two_stages_by_score() -> None:
    params = TrackerParams(high_score=0.5, low_score=0.1, min_hits=1)
    tracker = Tracker(params)
    run(tracker, [frame([(1, CAR, 20, 20, 20, 10)], 0)])
    # a low-score instance continues the existing track; a low-score newcomer starts none
    inp = frame([(1, CAR, 22, 20, 20, 10), (2, CAR, 120, 20, 20, 10)], 100, scores={1: 0.3, 2: 0.3})
    out = tracker.update(inp)
    assert track_of(out, inp) == {1: 1, 2: 0}
    assert out.track_map.numpy()[25, 130] == 0 and out.track_map.numpy()[25, 30] == 1
    # below low_score: ignored, and the track goes lost
    inp = frame([(1, CAR, 24, 20, 20, 10)], 200, scores={1: 0.05})
    out = tracker.update(inp)
    assert track_of(out, inp) == {1: 0} and out.lost.track_ids.tolist() == [1]
    # a high-score newcomer starts a track
    inp = frame([(1, CAR, 26, 20, 20, 10), (2, CAR, 120, 20, 20, 10)], 300, scores={2: 0.9})
    assert track_of(tracker.update(inp), inp) == {1: 1, 2: 2}


def test_high_scores_are_matched_first() -> None:
    # a low- and a high-score instance both fit the track; the high-score one gets it even though the
    # low-score one overlaps it better
    tracker = Tracker(TrackerParams(min_hits=1, min_box_iou=0.05, high_score=0.5))
    tracker.update(frame([(1, CAR, 50, 20, 20, 10)], 0))
    inp = frame([(1, CAR, 50, 20, 20, 10), (2, CAR, 56, 31, 20, 10)], 100, scores={1: 0.3, 2: 0.9})
    assert track_of(tracker.update(inp), inp) == {1: 0, 2: 1}


def test_tentative_tracks_can_be_hidden_from_the_map() -> None:
    tracker = Tracker(TrackerParams(min_hits=2, publish_tentative=False))
    out = tracker.update(frame([(1, CAR, 20, 20, 20, 10)], 0))
    assert int(out.track_map.max()) == 0 and len(out.tracks) == 0
    assert out.instance_track_ids.tolist() == [1]  # the id exists already
    out = tracker.update(frame([(1, CAR, 20, 20, 20, 10)], 100))
    assert int(out.track_map.max()) == 1 and out.tracks.states.tolist() == [TrackState.CONFIRMED]


def test_scrambled_instance_ids_do_not_matter() -> None:
    rng = np.random.default_rng(0)
    tracker = Tracker()
    ids = []
    for k in range(10):
        a, b = (int(v) for v in rng.choice(np.arange(1, 999), 2, replace=False))
        inp = frame([(a, CAR, 10 + 5 * k, 10, 20, 10), (b, PERSON, 150 - 5 * k, 30, 8, 20)], 100 * k)
        mapping = track_of(tracker.update(inp), inp)
        ids.append((mapping[a], mapping[b]))
    assert len(set(ids)) == 1 and len(set(ids[0])) == 2


def test_appearance_decides_between_equal_geometric_candidates() -> None:
    # two cars, then one instance exactly between their boxes: geometry cannot tell which car it is,
    # its color can
    def colored(objects: list[Box], stamp: float, colors: dict[int, int]) -> TrackerInput:
        inp = frame(objects, stamp)
        image = torch.zeros(H, W, 3, dtype=torch.uint8)
        inst = inp.instance_map % 1000
        for iid, value in colors.items():
            image[inst == iid] = value
        return inp._replace(image=image)

    for color, expected in ((250, 1), (10, 2)):
        tracker = Tracker(TrackerParams(min_hits=1, appearance_weight=1.0))
        first = colored([(1, CAR, 40, 20, 40, 12), (2, CAR, 100, 20, 40, 12)], 0, {1: 250, 2: 10})
        assert track_of(tracker.update(first), first) == {1: 1, 2: 2}
        inp = colored([(3, CAR, 70, 20, 40, 12)], 100, {3: color})
        assert track_of(tracker.update(inp), inp) == {3: expected}


def test_input_errors() -> None:
    good = frame([(1, CAR, 20, 20, 20, 10)], 0)
    with pytest.raises(TrackerInputError, match="scores"):
        Tracker().update(good._replace(scores=torch.ones(3)))
    with pytest.raises(TrackerInputError, match=r"instance_map must be \[H, W\]"):
        Tracker().update(good._replace(instance_map=good.instance_map[None]))
    with pytest.raises(TrackerInputError, match="stamp_ns must be an integer"):
        Tracker().update(good._replace(stamp_ns=0.5))  # type: ignore[arg-type]
    with pytest.raises(TrackerInputError, match="image must be"):
        Tracker().update(good._replace(image=torch.zeros(2, 2, 3)))
    with pytest.raises(TrackerInputError, match="below label_divisor"):
        TrackerInput.from_maps(torch.full((2, 2), 1000), torch.zeros(2, 2, dtype=torch.int64), 0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("low_score", 0.8, "must not exceed high_score"),
        ("min_hits", 0, "min_hits must be >= 1"),
        ("max_age", -1, "max_age must be >= 0"),
        ("min_box_iou", 0.0, "min_box_iou must lie in"),
        ("velocity_smoothing", 1.5, "velocity_smoothing must lie in"),
        ("partial_area_ratio", 0.5, "partial_area_ratio must lie in"),
        ("max_age", 2.5, "max_age must be an integer"),
        ("publish_tentative", 1, "publish_tentative must be true or false"),
    ],
)
def test_params_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrackerParams(**{field: value})  # type: ignore[arg-type]


def test_params_from_mapping() -> None:
    assert TrackerParams.from_mapping({"max_age": 7}).max_age == 7
    with pytest.raises(ConfigError, match=r"unknown tracker parameter.*valid: high_score"):
        TrackerParams.from_mapping({"max_agee": 7})


# --------------------------------------------------------------------------------------------------
# parts


def test_solve_assignment_is_optimal() -> None:
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(1, 6))
        m = int(rng.integers(n, 7))
        cost = rng.integers(0, 4, (n, m)).astype(float) if trial % 2 else rng.random((n, m))
        cols = solve_assignment(cost)
        assert len(set(cols.tolist())) == n
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        assert cost[np.arange(n), cols].sum() == pytest.approx(best)


def _best_partial(cost: np.ndarray, limit: float) -> float:
    rows, cols = cost.shape
    best = 0.0

    def search(i: int, used: frozenset[int], total: float) -> None:
        nonlocal best
        if i == rows:
            best = min(best, total)
            return
        search(i + 1, used, total)
        for j in range(cols):
            if j not in used and cost[i, j] < limit:
                search(i + 1, used | {j}, total + cost[i, j] - limit)

    search(0, frozenset(), 0.0)
    return best


def test_match_with_a_cost_limit_is_optimal() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        cost = rng.random((int(rng.integers(0, 5)), int(rng.integers(0, 5))))
        cost[rng.random(cost.shape) < 0.4] = np.inf
        result = match(cost, max_cost=0.8)
        total = sum(cost[r, c] - 0.8 for r, c in zip(result.rows, result.cols, strict=True))
        assert total == pytest.approx(_best_partial(cost, 0.8))
        assert sorted([*result.rows.tolist(), *result.unmatched_rows.tolist()]) == list(range(cost.shape[0]))
        assert sorted([*result.cols.tolist(), *result.unmatched_cols.tolist()]) == list(range(cost.shape[1]))
    # one cheap match beats two costly ones
    result = match(np.array([[0.1, 0.9], [0.8, np.inf]]), max_cost=1.0)
    assert result.rows.tolist() == [0] and result.cols.tolist() == [0]


def test_two_stages_by_score_are_two_matches() -> None:
    """``match_by_score`` (one compiled call) gives the pairs of :func:`match` on the high-score columns,
    then on the low-score columns against the rows left, in that order."""
    rng = np.random.default_rng(6)
    stages_seen = set()
    for _ in range(300):
        cost = rng.random((int(rng.integers(0, 7)), int(rng.integers(0, 9)))) * 1.2
        cost[rng.random(cost.shape) < 0.3] = np.inf
        scores = rng.random(cost.shape[1])
        high = np.flatnonzero(scores >= 0.6)
        low = np.flatnonzero((scores >= 0.2) & (scores < 0.6))
        first = match(cost[:, high], max_cost=1.0)
        second = match(cost[np.ix_(first.unmatched_rows, low)], max_cost=1.0)
        rows, cols, unmatched = match_by_score(cost, scores, high_score=0.6, low_score=0.2, max_cost=1.0)
        assert rows.tolist() == [*first.rows.tolist(), *first.unmatched_rows[second.rows].tolist()]
        assert cols.tolist() == [*high[first.cols].tolist(), *low[second.cols].tolist()]
        assert unmatched.tolist() == high[first.unmatched_cols].tolist()
        stages_seen |= {"first"} if first.rows.size else set()
        stages_seen |= {"second"} if second.rows.size else set()
    assert stages_seen == {"first", "second"}
    with pytest.raises(AssignmentError, match="NaN"):
        match_by_score(np.array([[np.nan]]), np.ones(1), high_score=0.5, low_score=0.1, max_cost=1.0)


def test_components_of_allowed_pairs_are_the_graph_components() -> None:
    """Rows and columns share a label exactly when a path of allowed pairs joins them (checked by a
    search from every node); isolated ones get labels of their own."""
    rng = np.random.default_rng(4)
    for _ in range(100):
        allowed = rng.random((int(rng.integers(0, 8)), int(rng.integers(0, 8)))) < rng.random() * 0.4
        rows, cols = allowed.shape
        row_label, col_label, count = _components(allowed)
        labels = np.concatenate((row_label, col_label))
        for start in range(rows + cols):
            reached, frontier = {start}, [start]
            while frontier:
                node = frontier.pop()
                if node < rows:
                    near = [rows + j for j in np.flatnonzero(allowed[node])]
                else:
                    near = list(np.flatnonzero(allowed[:, node - rows]))
                for other in near:
                    if other not in reached:
                        reached.add(other)
                        frontier.append(other)
            assert set(np.flatnonzero(labels == labels[start]).tolist()) == reached
        assert count == len(set(labels.tolist()))


def test_assignment_errors() -> None:
    with pytest.raises(AssignmentError, match="n <= m"):
        solve_assignment(np.zeros((3, 2)))
    with pytest.raises(AssignmentError, match="finite"):
        solve_assignment(np.array([[np.inf]]))
    with pytest.raises(AssignmentError, match="NaN"):
        match(np.array([[np.nan]]), max_cost=1.0)


@pytest.mark.parametrize("large_ids", [False, True])
def test_joint_histogram_mask_iou_matches_direct_count(large_ids: bool) -> None:
    rng = np.random.default_rng(3)
    prev_ids = np.array([4, 9, 17]) * (10**7 if large_ids else 1)
    cur_ids = np.array([2, 3, 9, 40]) * (10**7 if large_ids else 1)
    prev_map = rng.choice(np.concatenate([[0, -1], prev_ids]), size=(30, 40))
    cur_map = rng.choice(np.concatenate([[0, 5], cur_ids]), size=(30, 40))  # 5 is not an instance
    prev_index = index_map(torch.from_numpy(prev_map), prev_ids)
    cur_index = index_map(torch.from_numpy(cur_map), cur_ids)
    hist = joint_histogram(prev_index, cur_index, prev_ids.size, cur_ids.size).numpy()
    iou = mask_iou(hist)
    for p, pid in enumerate(prev_ids):
        for c, cid in enumerate(cur_ids):
            a, b = prev_map == pid, cur_map == cid
            assert iou[p, c] == pytest.approx((a & b).sum() / (a | b).sum())
    assert hist.sum() == prev_map.size


@pytest.mark.parametrize("fixed_shapes", [False, True], ids=["compiled", "device-ops"])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("ids", [[1, 2, 3, 4], [9, 4, 17], [3], [], [2**22 + 5, 7]], ids=str)
def test_index_map_numbers_the_given_ids_in_their_order(
    ids: list[int], dtype: torch.dtype, fixed_shapes: bool
) -> None:
    """Each pixel by hand: ``k + 1`` where the map holds ``ids[k]``, 0 for 0, ids not given, negative
    values and values past the largest id; by the CPU's compiled lookup (below 2**22) and by the
    device's ops (compact ids, a lookup table, a binary search above 2**22)."""
    rng = np.random.default_rng(len(ids))
    given = np.asarray(ids, dtype=np.int64)
    others = np.array([0, -1, 5, 6, 40, 2**22 + 9], dtype=np.int64)
    values = rng.choice(np.concatenate([given, others]), size=(13, 17))
    indices = index_map(torch.from_numpy(values).to(dtype), given, fixed_shapes=fixed_shapes)
    assert indices.dtype == torch.int64 and indices.shape == values.shape
    position = {int(v): k + 1 for k, v in enumerate(given)}
    expected = np.vectorize(lambda v: position.get(int(v), 0))(values)
    np.testing.assert_array_equal(indices.numpy(), expected)
    assert (expected > 0).any() or given.size == 0


@pytest.mark.parametrize("blocky", [False, True], ids=["scattered", "blocky"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("image_type", [None, torch.float32, torch.uint8])
def test_compiled_statistics_equal_the_tensor_ops_over_the_whole_map(
    weighted: bool, image_type: torch.dtype | None, blocky: bool
) -> None:
    """The CPU's default is one compiled pass over the pixels inside an instance of either frame
    (:mod:`panoptic_ros.tracking.association_cpu`, which keeps a run of pixels of one instance in
    registers); the fixed-shape way is PyTorch ops over every pixel. Mask IoU, areas and mean colors
    are the same numbers, bit for bit, for scattered pixels and for blocks (long runs) alike."""
    g = torch.Generator().manual_seed(5)
    previous = torch.randint(0, 4, (30, 40), generator=g) * (torch.rand(30, 40, generator=g) < 0.3)
    current = torch.randint(0, 6, (30, 40), generator=g) * (torch.rand(30, 40, generator=g) < 0.3)
    if blocky:  # blocks of 6 x 8 pixels, every instance in some: runs of one pair along the rows
        blocks = torch.arange(25).reshape(5, 5)
        previous, current = (
            m.repeat_interleave(6, 0).repeat_interleave(8, 1) for m in ((blocks * 7) % 4, blocks % 6)
        )
    image = None
    if image_type is not None:  # channel-first, as the tracker's
        image = torch.rand(3, 30, 40, generator=g).mul(255).to(image_type).permute(1, 2, 0)
    weights = torch.randint(1, 4, (30, 40), generator=g) if weighted else None
    compiled = instance_statistics(previous, current, 3, 5, image=image, weights=weights)
    tensor_ops = instance_statistics(previous, current, 3, 5, image=image, weights=weights, fixed_shapes=True)
    for a, b in zip(compiled, tensor_ops, strict=True):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert compiled[1].sum() > 0 and (compiled[0] > 0).any()
    if image is not None:
        assert (compiled[2] > 0).all()


@pytest.mark.parametrize("with_previous", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_one_pass_index_and_statistics_equal_the_two_steps(
    dtype: torch.dtype, weighted: bool, with_previous: bool
) -> None:
    """The CPU's default numbers the frame's ids and measures the pixels in one compiled pass; the
    indices, mask IoU, areas and mean colors are those of :func:`index_map` then
    :func:`instance_statistics` (compiled, and the fixed-shape tensor ops), bit for bit: ids out of
    order, ids not in the table, negative values."""
    g = torch.Generator().manual_seed(7)
    ids = np.array([9, 4, 17, 2], dtype=np.int64)
    choices = torch.tensor([0, 0, 0, 9, 4, 17, 2, 5, -1, 30])
    instance_map = choices[torch.randint(0, choices.numel(), (30, 40), generator=g)].to(dtype)
    previous = torch.randint(0, 4, (30, 40), generator=g) * (torch.rand(30, 40, generator=g) < 0.3)
    image = torch.rand(3, 30, 40, generator=g).mul(255).permute(1, 2, 0)
    weights = torch.randint(1, 4, (30, 40), generator=g) if weighted else None
    before = previous if with_previous else None
    one_pass = index_and_statistics(instance_map, ids, before, 3, image=image, weights=weights)
    for fixed_shapes in (False, True):
        index = index_map(instance_map, ids, fixed_shapes=fixed_shapes)
        two_steps = instance_statistics(
            previous if with_previous else torch.zeros_like(index), index, 3 if with_previous else 0,
            ids.size, image=image, weights=weights, fixed_shapes=fixed_shapes,
        )  # fmt: skip
        assert torch.equal(one_pass[0], index)
        for a, b in zip(one_pass[1:], two_steps, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert (one_pass[0] > 0).any() and one_pass[2].sum() > 0
    assert one_pass[1].shape == ((3 if with_previous else 0), 4)


def test_mean_colors_and_box_helpers() -> None:
    indices = torch.tensor([[1, 1, 0], [2, 0, 0]])
    image = torch.tensor([[[10, 0, 0], [30, 0, 0], [99, 99, 99]], [[0, 5, 0], [99, 99, 99], [0, 0, 0]]])
    np.testing.assert_allclose(mean_colors(image, indices, 3).numpy(), [[20, 0, 0], [0, 5, 0], [0, 0, 0]])
    boxes = np.array([[0.0, 0, 10, 10]])
    assert box_iou(boxes, np.array([[5.0, 0, 15, 10]]))[0, 0] == pytest.approx(50 / 150)
    # distance in box units, with a minimum size and the larger of two boxes
    assert center_distance(boxes, np.array([[10.0, 5]]), min_size=1)[0, 0] == pytest.approx(0.5)
    assert center_distance(np.array([[0.0, 0, 1, 1]]), np.array([[8.5, 0.5]]), min_size=16)[0, 0] == 0.5
    wide = np.array([[0.0, 0, 40, 10]])
    assert center_distance(boxes, np.array([[25.0, 5]]), wide, min_size=1)[0, 0] == pytest.approx(0.5)


def test_velocity_measurement_on_cut_and_occluded_boxes() -> None:
    def measure(prev: list[float], cur: list[float], prior: float | None) -> tuple[float, bool]:
        result = measure_velocity(
            np.array([prev]),
            np.array([cur]),
            previous_centroids=np.array([[(prev[0] + prev[2]) / 2, 5.0]]),
            centroids=np.array([[(cur[0] + cur[2]) / 2, 5.0]]),
            dt=np.array([0.1]),
            prior=np.array([[prior or 0.0, 0.0]]),
            has_prior=np.array([[prior is not None, True]]),
            image_size=(100, 200),
            size_tolerance=0.15,
            border_margin=1,
        )
        return float(result.velocity[0, 0]), bool(result.valid[0, 0])

    # steady box: the centroid
    assert measure([50, 0, 70, 10], [60, 0, 80, 10], None) == (pytest.approx(100.0), True)
    # entering at the left border (x0 = 0, growing): the uncut right edge, no prior needed
    assert measure([0, 0, 10, 10], [0, 0, 20, 10], None) == (pytest.approx(100.0), True)
    # occluded from the right while moving right at 100 px/s: the left edge agrees with the prior
    assert measure([50, 0, 80, 10], [60, 0, 70, 10], 100.0) == (pytest.approx(100.0), True)
    # both uncut edges jump far from the prior: no measurement
    assert measure([50, 0, 80, 10], [30, 0, 50, 10], 100.0)[1] is False
    # no time step: no measurement
    result = measure_velocity(
        np.array([[0.0, 0, 10, 10]]),
        np.array([[5.0, 0, 15, 10]]),
        previous_centroids=np.array([[5.0, 5]]),
        centroids=np.array([[10.0, 5]]),
        dt=np.array([0.0]),
        prior=np.zeros((1, 2)),
        has_prior=np.zeros((1, 2), bool),
        image_size=(100, 200),
        size_tolerance=0.15,
        border_margin=1,
    )
    assert not result.valid.any() and (result.velocity == 0).all()


def test_partial_observation_keeps_the_full_box() -> None:
    predicted = np.array([[40.0, 10, 80, 30], [40.0, 10, 80, 30]])
    observed = np.array([[30.0, 12, 45, 28], [50.0, 12, 60, 28]])
    boxes = state_boxes(predicted, observed, np.array([True, False]))
    np.testing.assert_allclose(boxes[0], [30, 10, 70, 30])  # shifted left to contain the visible part
    np.testing.assert_allclose(boxes[1], observed[1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_gives_the_cpu_result() -> None:
    frames = [
        frame([(1, CAR, 10 + 8 * k, 20, 30, 16), (2, CAR, 160 - 8 * k, 24, 30, 16)], 100 * k)
        for k in range(12)
    ]
    cpu, gpu = Tracker(), Tracker()
    for f in frames:
        a = cpu.update(f)
        on_gpu = f._replace(**{name: getattr(f, name).cuda() for name in f._fields[:6]})
        b = gpu.update(on_gpu)
        assert b.track_map.device.type == "cuda"
        assert torch.equal(a.track_map, b.track_map.cpu())
        np.testing.assert_allclose(a.tracks.velocities, b.tracks.velocities, atol=1e-4)
