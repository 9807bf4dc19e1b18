"""A camera's diagnostics level names every reason it is not OK, the worst deciding the level."""

from __future__ import annotations

from panoptic_ros.runtime.diagnostics import ERROR, OK, WARN, _camera_level


def test_every_reason_is_named_and_the_worst_decides() -> None:
    assert _camera_level("", (OK, ""), waiting=False, recent=0, window_s=10.0) == (OK, "ok")
    assert _camera_level("", (OK, ""), waiting=True, recent=0, window_s=10.0) == (
        WARN,
        "no frames received yet",
    )
    level, message = _camera_level("", (WARN, "over budget: ..."), waiting=False, recent=3, window_s=2.0)
    assert level == WARN and message == "over budget: ...; 3 bad, failed or depth-less frames in the last 2 s"
    level, message = _camera_level(
        "", (ERROR, "over budget for 31 s"), waiting=False, recent=1, window_s=10.0
    )
    assert level == ERROR and message.startswith("over budget for 31 s; 1 bad")
    # a watch that explains the silence replaces the generic "nothing yet"
    level, message = _camera_level(
        "", (WARN, "/cam: no frame arrived"), waiting=True, recent=0, window_s=10.0
    )
    assert (level, message) == (WARN, "/cam: no frame arrived")
    level, message = _camera_level("CUDA lost", (WARN, "x"), waiting=False, recent=5, window_s=10.0)
    assert level == ERROR and message == "not served: the worker stopped (CUDA lost)"
