"""The engine's side thread: passes run on a thread of their own, in order, with their values and
errors handed back; inline where it is off or a pass is kept on the caller."""

from __future__ import annotations

import threading

import pytest

from panoptic_ros.runtime.side_thread import THREAD_NAME, SideThread


def _where(value: int) -> tuple[str, int]:
    return threading.current_thread().name, value


def test_passes_run_beside_the_caller_in_order_and_hand_back_values() -> None:
    side = SideThread()
    try:
        order: list[int] = []
        pending = [side.submit(lambda k: (order.append(k), _where(k))[1], k) for k in range(5)]
        results = [p.result() for p in pending]
        assert [value for _, value in results] == list(range(5))
        assert order == list(range(5))
        assert {name for name, _ in results} == {THREAD_NAME}
        assert threading.current_thread().name not in {name for name, _ in results}
    finally:
        side.close()


def test_an_error_in_a_pass_reaches_whoever_takes_its_result() -> None:
    side = SideThread()
    try:
        pending = side.submit(int, "not a number")
        with pytest.raises(ValueError, match="not a number"):
            pending.result()
        assert side.submit(int, "7").result() == 7, "the thread serves on after a failed pass"
    finally:
        side.close()


@pytest.mark.parametrize("enabled, beside", [(False, True), (True, False)], ids=["off", "kept-on-the-caller"])
def test_inline_passes_run_on_the_caller_at_once(enabled: bool, beside: bool) -> None:
    side = SideThread(enabled=enabled)
    ran: list[int] = []
    pending = side.submit(lambda: (ran.append(1), _where(3))[1], beside=beside)
    assert ran == [1], "run when submitted"
    assert pending.result() == (threading.current_thread().name, 3)
    failed = side.submit(int, "x", beside=beside)
    with pytest.raises(ValueError):
        failed.result()  # raised where the result is taken, as from the side thread
    side.close()


def test_close_waits_for_the_passes_and_a_later_pass_starts_another_thread() -> None:
    side = SideThread()
    started, release = threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    pending = side.submit(slow)
    assert started.wait(5)
    closer = threading.Thread(target=side.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close waits for the pass in hand"
    release.set()
    closer.join(5)
    assert not closer.is_alive() and pending.result() == 1
    assert side.submit(_where, 2).result()[1] == 2
    side.close()


def test_a_side_thread_dropped_without_close_ends_its_thread() -> None:
    import gc

    side = SideThread()
    thread = side.submit(threading.current_thread).result()
    assert thread.name == THREAD_NAME and thread.is_alive()
    del side
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
