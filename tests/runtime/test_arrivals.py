"""The subscription's reliability follows the publishers; a topic whose frames do not arrive is
reported once, with the publishers' QoS, the likely cause and the fix."""

from __future__ import annotations

from panoptic_ros.runtime.arrivals import BEST_EFFORT, RELIABLE, ArrivalWatch, Offer, adopted_reliability

CAMERA = Offer("/camera_driver", RELIABLE, "volatile", 10)
LOSSY = Offer("/lossy_driver", BEST_EFFORT, "volatile", 1)


def test_match_publisher_adopts_the_publishers_reliability() -> None:
    assert adopted_reliability("match_publisher", BEST_EFFORT, [CAMERA]) == RELIABLE
    assert adopted_reliability("match_publisher", BEST_EFFORT, [CAMERA, CAMERA]) == RELIABLE
    # one best-effort publisher: best effort, which every publisher can match
    assert adopted_reliability("match_publisher", RELIABLE, [CAMERA, LOSSY]) == BEST_EFFORT
    assert adopted_reliability("match_publisher", RELIABLE, []) == BEST_EFFORT  # none yet
    assert adopted_reliability("sensor_data", RELIABLE, [CAMERA]) == BEST_EFFORT
    assert adopted_reliability("explicit", RELIABLE, [LOSSY]) == RELIABLE
    assert adopted_reliability("explicit", BEST_EFFORT, [CAMERA]) == BEST_EFFORT


def test_silence_is_reported_once_after_the_timeout_and_clears_when_frames_arrive() -> None:
    watch = ArrivalWatch("/cam/image_raw", timeout=3.0)
    assert watch.update(0.0, 0, [], BEST_EFFORT, profile=False) == (None, False)  # no publisher: no problem
    assert watch.update(1.0, 0, [LOSSY], BEST_EFFORT, profile=False) == (None, False)  # silence starts
    assert watch.update(3.9, 0, [LOSSY], BEST_EFFORT, profile=False) == (None, False)
    problem, new = watch.update(4.0, 0, [LOSSY], BEST_EFFORT, profile=False)
    assert new and problem is not None and problem.kind == "no_frames"
    assert "/cam/image_raw: 1 publisher(s) (/lossy_driver: best effort, volatile, depth 1)" in problem.text
    assert "no frame arrived for 3 s" in problem.text and "fastdds_large_images.xml" in problem.text
    problem, new = watch.update(5.0, 0, [LOSSY], BEST_EFFORT, profile=False)
    assert problem is not None and not new and "for 4 s" in problem.text  # reported, not logged again
    assert watch.update(6.0, 1, [LOSSY], BEST_EFFORT, profile=False) == (None, False)  # a frame came
    assert watch.problem is None
    # frames arriving: no problem however long the watch runs
    assert all(
        watch.update(6.0 + k, 1 + k, [LOSSY], BEST_EFFORT, profile=False)[0] is None for k in range(10)
    )


def test_the_cause_depends_on_the_subscription_and_the_profile() -> None:
    def text(requested: str, profile: bool) -> str:
        watch = ArrivalWatch("/cam/image_raw", timeout=1.0)
        watch.update(0.0, 5, [CAMERA], requested, profile=profile)
        problem, _ = watch.update(2.0, 5, [CAMERA], requested, profile=profile)
        assert problem is not None
        return problem.text

    assert "builtin transports" in text(BEST_EFFORT, False)
    assert "camera driver's process needs the large-image profile too" in text(BEST_EFFORT, True)
    assert "publisher is not sending" in text(RELIABLE, False)


def test_incompatible_publishers_are_reported_at_once() -> None:
    watch = ArrivalWatch("/cam/image_raw", timeout=3.0)
    problem, new = watch.update(0.0, 0, [CAMERA, LOSSY], RELIABLE, profile=False)
    assert new and problem is not None and problem.kind == "incompatible_qos"
    assert "/lossy_driver: best effort" in problem.text and "/camera_driver" not in problem.text
    assert "qos.mode match_publisher" in problem.text
    assert watch.update(1.0, 3, [CAMERA, LOSSY], RELIABLE, profile=False)[1] is False  # still, not new
    assert watch.update(2.0, 3, [CAMERA], RELIABLE, profile=False) == (None, False)  # it left


def test_timeout_zero_never_reports_silence() -> None:
    watch = ArrivalWatch("/cam/image_raw", timeout=0.0)
    assert all(watch.update(float(t), 0, [LOSSY], BEST_EFFORT, profile=False)[0] is None for t in range(100))
