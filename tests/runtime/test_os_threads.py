"""Threads named in the operating system: ``top -H`` and ``ps -L`` show the node's worker threads by
name (read back from ``/proc``, where the kernel keeps a thread's name)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine
from panoptic_ros.runtime.os_threads import MAX_NAME_BYTES, name_os_thread
from panoptic_ros.runtime.pipeline import PanopticPipeline
from panoptic_ros.runtime.slots import LatestFrameSlots
from panoptic_ros.runtime.worker import Worker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names via /proc: Linux")


def _os_names() -> set[str]:
    names = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            names.add((task / "comm").read_text().strip())
        except OSError:  # the thread ended meanwhile
            continue
    return names


def test_a_thread_names_itself_and_long_names_are_cut_to_what_the_kernel_keeps() -> None:
    seen: list[str] = []

    def run(name: str) -> None:
        assert name_os_thread(name)
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    for name in ("short", "a_name_longer_than_fifteen"):
        thread = threading.Thread(target=run, args=(name,))
        thread.start()
        thread.join()
    assert seen == ["short", "a_name_longer_than_fifteen"[:MAX_NAME_BYTES]]


def test_the_workers_threads_carry_their_names_in_the_os() -> None:
    engine = FrameEngine(PanopticPipeline(default_model(), backend="onnxruntime", device="cpu"))
    worker = Worker(
        LatestFrameSlots(),
        engine,
        decode=lambda camera, item: None,
        publish=lambda *args: None,
        trouble=lambda *args, **kwargs: None,
        overlap=True,
    )
    worker.start()
    try:
        names = _os_names()
        for _ in range(100):  # the threads name themselves as they start
            if {"panoptic_worker", "panoptic_result"} <= names:
                break
            threading.Event().wait(0.02)
            names = _os_names()
    finally:
        worker.stop()
        engine.close()
    assert {"panoptic_worker", "panoptic_result"} <= names, names
