"""A second thread for the frame engine's camera-size passes, beside the thread serving the frame.

The network runs on every core (ONNX Runtime's threads), the work after it on one thread. Most of that
work is Python and small compiled steps at the model's resolution (fusion, tracking, the instance
table); the passes over whole camera frames (the label images expanded to the camera's size, a few
MB each at 1080p) are compiled loops that release the GIL and depend on nothing but their inputs.
:class:`SideThread` runs such a pass on a thread of its own while the serving thread goes on (the
semantic image while the tracker runs, the instance id image while the overlay is drawn), so the
frame's wall time no longer adds them up. The work done is the same; where the side thread is off
(``enabled=False``), or a pass is too small to be worth handing over (``beside=False``: waking the
thread and taking the result back cost about 0.06 ms on the 2-core development machine), the pass
runs on the calling thread when submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from panoptic_ros.runtime.os_threads import name_os_thread

T = TypeVar("T")

#: The side thread's name (``top -H``, ``ps -L``).
THREAD_NAME = "panoptic_side"


class Pending(Generic[T]):
    """A pass submitted to a :class:`SideThread`: :meth:`result` waits for it and returns its value
    (or raises its error)."""

    __slots__ = ("_future", "_value")

    def __init__(self, future: Future[T] | None, value: T | None = None) -> None:
        self._future = future
        self._value = value

    def result(self) -> T:
        if self._future is not None:
            return self._future.result()
        return self._value  # type: ignore[return-value]  # set where there is no future


class SideThread:
    """One thread, started on the first pass submitted, that runs passes in submission order.

    Args:
        enabled: run passes on the side thread; False: on the calling thread, at once.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, work: Callable[..., T], *args: object, beside: bool = True) -> Pending[T]:
        """Run ``work(*args)`` beside the caller (it must not touch what the caller changes meanwhile);
        on the calling thread, at once, where ``beside`` is False or the side thread is off."""
        if not (self.enabled and beside):
            return Pending(None, work(*args))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=THREAD_NAME,
                initializer=name_os_thread,
                initargs=(THREAD_NAME,),
            )
        return Pending(self._pool.submit(work, *args))

    def close(self) -> None:
        """Wait for the passes submitted and end the thread (a later pass starts another)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
