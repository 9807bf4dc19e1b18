"""The newest-frame slots: one waiting item per camera, replacements counted as drops."""

from __future__ import annotations

import threading

from panoptic_ros.runtime.slots import LatestFrameSlots


def test_newest_item_wins_and_replacements_are_drops() -> None:
    slots: LatestFrameSlots[int] = LatestFrameSlots()
    assert not slots.put("a", 1)
    assert slots.put("a", 2)  # replaced 1 before the worker took it
    assert not slots.put("b", 10)
    assert slots.take(timeout=0) == {"a": 2, "b": 10}
    assert slots.take(timeout=0) == {}
    stats = slots.stats()
    assert (stats["a"].received, stats["a"].dropped) == (2, 1)
    assert (stats["b"].received, stats["b"].dropped) == (1, 0)


def test_take_waits_for_a_put_from_another_thread() -> None:
    slots: LatestFrameSlots[str] = LatestFrameSlots()
    timer = threading.Timer(0.05, slots.put, args=("cam", "frame"))
    timer.start()
    assert slots.take(timeout=30) == {"cam": "frame"}
    timer.join()


def test_close_wakes_a_waiting_take_and_reopen_restores() -> None:
    slots: LatestFrameSlots[int] = LatestFrameSlots()
    result: list[dict[str, int]] = []
    worker = threading.Thread(target=lambda: result.append(slots.take(timeout=30)))
    worker.start()
    slots.close()
    worker.join(timeout=30)
    assert not worker.is_alive() and result == [{}]
    assert slots.closed
    slots.reopen()
    slots.put("x", 1)
    assert slots.take(timeout=0) == {"x": 1}


def test_many_producers_lose_nothing_uncounted() -> None:
    slots: LatestFrameSlots[int] = LatestFrameSlots()
    taken: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set() or not slots.closed:
            taken.extend(slots.take(timeout=0.01).values())
            if stop.is_set():
                taken.extend(slots.take(timeout=0).values())
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [
        threading.Thread(target=lambda k=k: [slots.put(f"cam{k}", i) for i in range(2000)]) for k in range(4)
    ]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    stop.set()
    slots.close()
    consumer.join(timeout=30)
    stats = slots.stats()
    received = sum(s.received for s in stats.values())
    dropped = sum(s.dropped for s in stats.values())
    assert received == 8000
    assert len(taken) + dropped == received
