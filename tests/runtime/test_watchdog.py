"""The over-budget watchdog: WARN when the p95 frame time exceeds the frame period over the window,
ERROR when it lasts, OK again when it stops; the message names the stage that grew."""

from __future__ import annotations

from panoptic_ros.runtime.watchdog import ERROR, OK, WARN, Watchdog, frame_ms


def _frames(start: float, end: float, period: float, stages: dict[str, float]) -> list[tuple[float, dict]]:
    count = round((end - start) / period)
    return [
        (start + k * period, {**stages, "queue": 50.0, "total": 50.0 + sum(stages.values())})
        for k in range(count)
    ]


HEALTHY = {"decode": 2.0, "inference": 40.0, "fusion": 10.0, "tracking": 5.0, "outputs": 8.0, "publish": 1.0}
SLOW = {**HEALTHY, "tracking": 95.0}


def test_frame_time_leaves_out_the_wait_in_the_slot() -> None:
    assert frame_ms({"queue": 300.0, "inference": 40.0, "total": 345.0}) == 45.0
    assert frame_ms({"inference": 40.0, "fusion": 5.0}) == 45.0


def test_over_budget_warns_names_the_stage_that_grew_and_escalates() -> None:
    dog = Watchdog(window=10.0, error_after=20.0)
    samples = _frames(0.0, 10.0, 0.1, HEALTHY)  # 66 ms a frame at 10 Hz: within 100 ms
    assert dog.check(10.0, samples, [], target_rate=10.0).level == OK
    samples += _frames(10.0, 30.0, 0.1, SLOW)  # tracking grows: 156 ms a frame
    verdict = dog.check(20.0, samples, [], target_rate=10.0)
    assert verdict.level == WARN and verdict.budget_ms == 100.0 and verdict.p95_ms > 100.0
    assert "grew most: tracking (median 95 ms, was 5 ms)" in verdict.message
    assert "target_rate 10 Hz" in verdict.message
    assert dog.check(30.0, samples, [], target_rate=10.0).level == WARN  # 10 s over
    assert dog.check(40.0, samples + _frames(30.0, 40.0, 0.1, SLOW), [], target_rate=10.0).level == ERROR
    samples += _frames(30.0, 40.0, 0.1, SLOW) + _frames(40.0, 50.0, 0.1, HEALTHY)
    assert dog.check(50.0, samples, [], target_rate=10.0).level == OK
    assert dog.over_since is None


def test_a_new_target_rate_starts_the_count_again() -> None:
    dog = Watchdog(window=10.0, error_after=5.0)
    samples = _frames(0.0, 30.0, 0.1, SLOW)
    assert dog.check(10.0, samples, [], target_rate=10.0).level == WARN
    assert dog.check(20.0, samples, [], target_rate=10.0).level == ERROR  # 10 s over
    verdict = dog.check(21.0, samples, [], target_rate=1000.0)  # another budget: WARN first
    assert verdict.level == WARN and "for 0 s" in verdict.message and "target_rate 1000 Hz" in verdict.message
    assert dog.check(27.0, samples, [], target_rate=1000.0).level == ERROR


def test_the_cameras_own_rate_is_the_default_budget() -> None:
    dog = Watchdog(window=10.0, error_after=0.0)
    samples = _frames(0.0, 10.0, 0.2, HEALTHY)  # served at 5 Hz, 66 ms each
    arrivals_30hz = [k / 30 for k in range(300)]
    verdict = dog.check(10.0, samples, arrivals_30hz, target_rate=0.0)
    assert (verdict.level == WARN and verdict.budget_ms == round(1000 / 30, 6)) or abs(
        verdict.budget_ms - 33.3
    ) < 0.1
    assert "the camera's 30.0 Hz" in verdict.message
    assert "costliest: inference" in verdict.message  # over budget from the start: nothing grew
    assert dog.check(10.0, samples, [k / 5 for k in range(50)], target_rate=0.0).level == OK  # a 5 Hz camera
    for _ in range(5):  # error_after 0: never ERROR
        assert dog.check(10.0, samples, arrivals_30hz, target_rate=0.0).level == WARN


def test_too_few_frames_are_not_judged() -> None:
    dog = Watchdog()
    samples = _frames(0.0, 0.4, 0.1, SLOW)
    assert dog.check(1.0, samples, [], target_rate=100.0).level == OK
    assert dog.check(1.0, [], [k / 10 for k in range(3)], target_rate=0.0).level == OK
