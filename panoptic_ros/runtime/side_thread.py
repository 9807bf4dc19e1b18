"""A second thread for the frame engine's camera-size passes, beside the thread serving the frame.

The network runs on every core (ONNX Runtime's threads), the work after it on one thread. Most of that
work is Python and small compiled steps at the model's resolution (fusion, tracking, the instance
table); the passes over whole camera frames (the label images expanded to the camera's size, a few
MB each at 1080p) are compiled loops that release the GIL and depend on nothing but their inputs.
:class:`SideThread` runs such a pass on a thread of its own while the serving thread goes on, so the
frame's wall time no longer adds them up. The work done is the same; where the side thread is off
(``enabled=False``), or a pass is too small to be worth handing over (``beside=False``: waking the
thread and taking the result back cost about 0.06 ms on the 2-core development machine), the pass
runs on the calling thread when submitted.

The hand-over is kept to a few C-level calls (a ``SimpleQueue`` and a lock per pass): every Python
step the side thread takes holds the GIL, which the serving thread then waits for.
"""

from __future__ import annotations

import _thread
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from panoptic_ros.runtime.os_threads import name_os_thread

T = TypeVar("T")

#: The side thread's name (``top -H``, ``ps -L``).
THREAD_NAME = "panoptic_side"


class Pending(Generic[T]):
    """A pass submitted to a :class:`SideThread`: :meth:`result` waits for it and returns its value
    (or raises its error)."""

    __slots__ = ("_args", "_done", "_error", "_value", "_work")

    def __init__(self, work: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._work = work
        self._args = args
        self._value: T | None = None
        self._error: BaseException | None = None
        self._done = _thread.allocate_lock()
        self._done.acquire()  # released once the pass has run

    def run(self) -> None:
        try:
            self._value = self._work(*self._args)
        except BaseException as err:  # handed to whoever takes the result
            self._error = err
        finally:
            self._work = self._args = None  # type: ignore[assignment]  # nothing held past the pass
            self._done.release()

    def result(self) -> T:
        with self._done:  # waits until the pass has run (the lock stays free afterwards)
            pass
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set by the pass


class SideThread:
    """One thread, started on the first pass submitted, that runs passes in submission order.

    Args:
        enabled: run passes on the side thread; False: on the calling thread, at once.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._passes: queue.SimpleQueue[Pending[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ending: weakref.finalize | None = None
        self._starting = threading.Lock()

    def submit(self, work: Callable[..., T], *args: object, beside: bool = True) -> Pending[T]:
        """Run ``work(*args)`` beside the caller (it must not touch what the caller changes meanwhile);
        on the calling thread, at once, where ``beside`` is False or the side thread is off."""
        pending = Pending(work, args)
        if not (self.enabled and beside):
            pending.run()
            return pending
        if self._thread is None:
            with self._starting:  # the camera threads may submit their first passes at once
                if self._thread is None:
                    # the thread holds the queue, not this object: one dropped without close() ends it too
                    thread = threading.Thread(
                        target=_serve, args=(self._passes,), name=THREAD_NAME, daemon=True
                    )
                    self._ending = weakref.finalize(self, self._passes.put, None)
                    thread.start()
                    self._thread = thread
        self._passes.put(pending)
        return pending

    def close(self) -> None:
        """Wait for the passes submitted and end the thread (a later pass starts another)."""
        if self._thread is not None:
            self._ending()  # the end of the queue, once
            self._thread.join()
            self._thread = None


def _serve(passes: queue.SimpleQueue[Pending[Any] | None]) -> None:
    """The side thread: the passes in order, until the end of the queue (None)."""
    name_os_thread(THREAD_NAME)
    take = passes.get
    while (pending := take()) is not None:
        pending.run()
