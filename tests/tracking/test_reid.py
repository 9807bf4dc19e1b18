"""Re-identification case by case on hand-built colored frames: a thing that leaves the view or is
hidden for a while gets its old id back when its color and motion agree, and only then."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from panoptic_ros.errors import ConfigError
from panoptic_ros.tracking import (
    Tracker,
    TrackerInput,
    TrackerParams,
    TrackState,
    association,
    association_cpu,
)
from tests.tracking.test_tracker import CAR, PERSON, Box, W, frame, track_of

RED, BLUE = (200, 30, 30), (30, 60, 200)
Colored = tuple[Box, tuple[int, int, int]]


def colored(objects: Sequence[Colored], stamp_ms: float) -> TrackerInput:
    """Rectangles as in :func:`frame`, each filled with its color in the image."""
    inp = frame([box for box, _ in objects], stamp_ms)
    image = np.full((*inp.instance_map.shape, 3), 90, dtype=np.uint8)  # gray background
    instance = (inp.instance_map % 1000).numpy()
    for (iid, *_), color in objects:
        image[instance == iid] = color
    return inp._replace(image=torch.from_numpy(image))


def exit_and_return(
    params: TrackerParams,
    *,
    away_ms: int,
    color: tuple[int, int, int] = RED,
    category: int = PERSON,
    back_x: int | None = None,
) -> tuple[int, int]:
    """A red person walks out through the right border (8 px per 100 ms, last seen at 600 ms cut by
    the border), is out of view for ``away_ms``, and walks back in through the same border (or, with
    ``back_x``, appears there); the returning thing has ``color`` and ``category``. Returns its track
    id before and after."""
    tracker = Tracker(params)
    before = 0
    for k in range(7):
        inp = colored([((1, PERSON, 150 + 8 * k, 20, 10, 20), RED)], 100 * k)
        before = track_of(tracker.update(inp), inp)[1]
    back = 600 + away_ms
    for stamp in range(700, back, 100):  # out of view: the track leaves the association at once
        tracker.update(colored([], stamp))
    after = 0
    for k in range(4):
        x = (W - 4 - 8 * k) if back_x is None else back_x
        inp = colored([((2, category, x, 20, 10, 20), color)], back + 100 * k)
        ids = track_of(tracker.update(inp), inp)
        after = after or ids[2]
        assert ids[2] == after, "the returning thing keeps one id"
    return before, after


def test_a_thing_back_after_one_second_gets_its_old_id() -> None:
    before, after = exit_and_return(TrackerParams(), away_ms=1000)
    assert before == after == 1


def test_a_thing_back_after_reid_seconds_gets_a_new_id() -> None:
    before, after = exit_and_return(TrackerParams(reid_seconds=2.0), away_ms=2600)
    assert (before, after) == (1, 2)
    # the same gap inside a longer window keeps it
    assert exit_and_return(TrackerParams(reid_seconds=3.0), away_ms=2600) == (1, 1)


def test_another_color_or_class_where_it_left_gets_a_new_id() -> None:
    assert exit_and_return(TrackerParams(), away_ms=1000, color=BLUE) == (1, 2)
    assert exit_and_return(TrackerParams(), away_ms=1000, category=CAR) == (1, 2)


def test_the_same_color_far_from_where_it_left_gets_a_new_id() -> None:
    # back after 0.5 s at the left border, 190 px from where it left: the motion gate refuses it
    assert exit_and_return(TrackerParams(), away_ms=500, back_x=0) == (1, 2)
    # the gate widens with the gap (box sizes per second)
    wide = TrackerParams(reid_distance_growth=50.0)
    assert exit_and_return(wide, away_ms=500, back_x=0) == (1, 1)


def test_reid_seconds_zero_is_the_tracker_without_re_identification() -> None:
    assert exit_and_return(TrackerParams(reid_seconds=0.0), away_ms=1000) == (1, 2)
    assert exit_and_return(TrackerParams(reid_seconds=0.0), away_ms=300) == (1, 2)


def test_a_thing_hidden_longer_than_max_age_keeps_its_id() -> None:
    # a red car passes behind an occluder for 1.2 s, twice max_age at 10 Hz, and comes out where its
    # motion puts it
    def run(params: TrackerParams) -> list[int]:
        tracker = Tracker(params)
        ids = []
        for k in range(30):
            hidden = 8 <= k < 20
            objects = [] if hidden else [((1, CAR, 10 + 5 * k, 20, 16, 10), RED)]
            out = tracker.update(inp := colored(objects, 100 * k))
            if not hidden:
                ids.append(track_of(out, inp)[1])
            elif k == 12:
                assert out.lost.track_ids.tolist() == ([1] if params.max_age >= 5 else [])
        return sorted(set(ids))

    assert run(TrackerParams(max_age=6, reid_seconds=0.0)) == [1, 2]
    assert run(TrackerParams(max_age=6)) == [1]
    # tracks kept only for re-identification are not listed as lost
    assert run(TrackerParams(max_age=3)) == [1]


def test_re_identified_track_is_confirmed_with_a_fresh_velocity() -> None:
    tracker = Tracker(TrackerParams())
    stamp = 0
    for k in range(7):
        tracker.update(colored([((1, PERSON, 150 + 8 * k, 20, 10, 20), RED)], stamp))
        stamp += 100
    for _ in range(6):
        out = tracker.update(colored([], stamp))
        stamp += 100
    assert len(out.lost) == 0  # out of the association: its predicted box left the image
    out = tracker.update(inp := colored([((2, PERSON, W - 4, 20, 10, 20), RED)], stamp))
    assert track_of(out, inp) == {2: 1}
    assert out.tracks.states.tolist() == [TrackState.CONFIRMED] and out.tracks.hits.tolist() == [8]
    assert out.tracks.velocities.tolist() == [[0.0, 0.0]] and out.tracks.ages.tolist() == [14]
    out = tracker.update(colored([((2, PERSON, W - 12, 20, 10, 20), RED)], stamp + 100))
    assert out.tracks.velocities[0, 0] == pytest.approx(-80.0)


def test_without_the_image_there_is_no_re_identification() -> None:
    tracker = Tracker(TrackerParams())
    for k in range(7):
        tracker.update(frame([(1, PERSON, 150 + 8 * k, 20, 10, 20)], 100 * k))
    for stamp in range(700, 1200, 100):
        tracker.update(frame([], stamp))
    out = tracker.update(inp := frame([(2, PERSON, W - 4, 20, 10, 20)], 1200))
    assert track_of(out, inp) == {2: 2}


def test_colors_are_computed_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = association_cpu.index_statistics

    def statistics(*args: object, image: object = None, **kwargs: object) -> object:
        calls.extend([1] if image is not None else [])
        return real(*args, image=image, **kwargs)

    monkeypatch.setattr(association, "index_statistics", statistics)  # the CPU's colors, where called
    inp = colored([((1, PERSON, 50, 20, 10, 20), RED)], 0)
    Tracker(TrackerParams(appearance_weight=0.0, reid_seconds=0.0)).update(inp)
    assert calls == []
    Tracker(TrackerParams(appearance_weight=0.0)).update(inp)
    Tracker(TrackerParams(reid_seconds=0.0)).update(inp)
    assert calls == [1, 1]


def test_reset_forgets_the_remembered_tracks() -> None:
    tracker = Tracker(TrackerParams())
    for k in range(7):
        tracker.update(colored([((1, PERSON, 150 + 8 * k, 20, 10, 20), RED)], 100 * k))
    tracker.reset()
    out = tracker.update(inp := colored([((2, PERSON, W - 4, 20, 10, 20), RED)], 900))
    assert track_of(out, inp) == {2: 2}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reid_seconds", -1.0, "reid_seconds must lie in"),
        ("reid_seconds", float("inf"), "reid_seconds must be finite"),
        ("reid_max_color_distance", 1.5, "reid_max_color_distance must lie in"),
        ("reid_max_distance", 0.0, "reid_max_distance must lie in"),
        ("reid_distance_growth", -0.5, "reid_distance_growth must lie in"),
        ("reid_seconds", "2", "reid_seconds must be a number"),
    ],
)
def test_reid_params_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrackerParams.from_mapping({field: value})


def test_reid_params_from_mapping() -> None:
    params = TrackerParams.from_mapping({"reid_seconds": 0, "reid_max_color_distance": 0.2})
    assert params.reid_seconds == 0 and not params.reid and params.reid_max_color_distance == 0.2
    assert TrackerParams().reid and TrackerParams().reid_seconds == 2.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_re_identification_on_cuda_gives_the_cpu_result() -> None:
    frames = [colored([((1, PERSON, 150 + 8 * k, 20, 10, 20), RED)], 100 * k) for k in range(7)]
    frames += [colored([], stamp) for stamp in range(700, 1600, 100)]
    frames += [colored([((2, PERSON, W - 4 - 8 * k, 20, 10, 20), RED)], 1600 + 100 * k) for k in range(3)]
    cpu, gpu = Tracker(), Tracker()
    for f in frames:
        a = cpu.update(f)
        b = gpu.update(f._replace(**{name: getattr(f, name).cuda() for name in (*f._fields[:6], "image")}))
        assert a.instance_track_ids.tolist() == b.instance_track_ids.tolist()
        assert torch.equal(a.track_map, b.track_map.cpu())
    assert a.instance_track_ids.tolist() == [1]
