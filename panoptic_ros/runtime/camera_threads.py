"""A batch's per-camera work on several threads: each camera's frames in order on one thread, the
cameras side by side.

After a batch's one pass through the network (and, on a GPU, its one CUDA graph), each frame's
result is made on the host: the tracker's update, the instance table, 3D positions, the overlay, the
label images at the camera's size. Those steps write only their camera's state (its tracker, its
stream check) and their own frame (what they share is read, or a queue: the side thread's), and most
of their time is spent in compiled loops and PyTorch ops that release the GIL. :class:`CameraThreads`
runs them for several cameras at once, where the machine has the cores for it; one camera's frames
always run one after another, in the order given, so its tracks are what they are on one thread.

On the 2-core development machine two threads made a batch of 8 cameras slower (7.42 against 6.96 ms,
docs/BENCHMARKS.md); what more cores give is measured by ``bench_engine``'s batched rows. The engine
runs one thread unless asked (the node's ``camera_threads``); :func:`auto_threads` (0) takes one
thread below :data:`AUTO_MIN_CORES` cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from panoptic_ros.runtime.os_threads import name_os_thread

R = TypeVar("R")

#: Cores from which :func:`auto_threads` spreads a batch's cameras over threads.
AUTO_MIN_CORES = 8
#: Threads :func:`auto_threads` never goes past.
AUTO_MAX_THREADS = 8
#: The threads' names (``top -H``, ``ps -L``).
THREAD_NAME = "panoptic_camera"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_threads(cores: int | None = None) -> int:
    """Threads for a batch's per-camera work where none are asked for: 1 with fewer than
    :data:`AUTO_MIN_CORES` cores, else half of them (the network and the side thread keep the
    others), at most :data:`AUTO_MAX_THREADS`."""
    cores = usable_cores() if cores is None else cores
    return 1 if cores < AUTO_MIN_CORES else min(AUTO_MAX_THREADS, cores // 2)


class CameraThreads:
    """Runs a batch's per-frame work, cameras side by side on up to ``threads`` threads.

    Args:
        threads: at most this many cameras at once; 0: :func:`auto_threads`; 1: every frame on the
            calling thread, in order.

    Raises:
        ValueError: a negative number of threads.
    """

    def __init__(self, threads: int = 1) -> None:
        if threads < 0:
            raise ValueError(f"camera threads must be 0 (automatic) or more, got {threads}")
        self.threads = threads if threads > 0 else auto_threads()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, cameras: Sequence[str], work: Callable[[int], R]) -> Generator[R | Exception, None, None]:
        """``work(i)`` for each frame ``i`` of a batch whose frame ``i`` came from ``cameras[i]``; yields
        each frame's result, or the exception its work raised, in frame order, each as soon as it
        and the frames before it are done.

        The frames of one camera run one after another in their order (on one thread); those of
        different cameras may run at the same time. On one thread (or with one camera), a frame's
        work starts only when the frame before it has been yielded, so a caller that stops at the
        first exception leaves the later frames undone; on several, every frame is worked on, and
        closing the generator waits for all of it (a caller that stops early must close it, so that
        no camera's work runs on into its next batch).
        """
        order: dict[str, list[int]] = {}
        for index, camera in enumerate(cameras):
            order.setdefault(camera, []).append(index)
        if self.threads == 1 or len(order) < 2:
            for index in range(len(cameras)):
                outcome: R | Exception
                try:
                    outcome = work(index)
                except Exception as err:  # handed to the caller with the frame it belongs to
                    outcome = err
                yield outcome
            return
        outcomes: list[Future[R | Exception]] = [Future() for _ in cameras]

        def serve(indices: list[int]) -> None:
            for index in indices:
                try:
                    outcomes[index].set_result(work(index))
                except Exception as err:  # the frame's outcome; the camera's next frames go on
                    outcomes[index].set_result(err)

        def settle(task: Future[None], indices: list[int]) -> None:
            """A camera's task that ended without all its outcomes (a BaseException, cancelled, a
            broken pool): its frames left are told, so that no one waits for them forever."""
            reason = None if task.cancelled() else task.exception()
            for index in indices:
                if not outcomes[index].done():
                    outcomes[index].set_exception(reason or RuntimeError("a camera's task did not run"))

        pool = self._executor()
        for indices in order.values():
            pool.submit(serve, indices).add_done_callback(lambda task, indices=indices: settle(task, indices))
        try:
            for outcome in outcomes:
                yield outcome.result()
        finally:  # closed early (a caller stopping at a failure): no camera's work runs into the next batch
            wait(outcomes)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.threads,
                    thread_name_prefix=THREAD_NAME,
                    initializer=name_os_thread,
                    initargs=(THREAD_NAME,),
                )
            return self._pool

    def close(self) -> None:
        """Wait for the work started and end the threads (a later batch starts others)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
