"""A slot of one per camera: callbacks store the newest frame, the worker takes all pending frames.

Storing never blocks on inference: a frame that arrives while the previous one of its camera is still
waiting replaces it, and the replaced one is counted as dropped. Latency is therefore bounded by one
processing cycle however fast the input comes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SlotStats:
    """Counters of one camera's slot: frames stored, frames replaced before the worker took them."""

    received: int = 0
    dropped: int = 0


class LatestFrameSlots(Generic[T]):
    """Thread-safe newest-item-per-key store with drop counting.

    ``put`` is called from subscription callbacks, ``take`` from the worker thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[str, T] = {}
        self._stats: dict[str, SlotStats] = {}
        self._closed = False

    def put(self, key: str, item: T) -> bool:
        """Store ``item`` as ``key``'s newest; returns True when it replaced a waiting item (a drop)."""
        with self._cond:
            dropped = key in self._pending
            self._pending[key] = item
            old = self._stats.get(key, SlotStats())
            self._stats[key] = SlotStats(old.received + 1, old.dropped + int(dropped))
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> dict[str, T]:
        """Wait up to ``timeout`` seconds for pending items and take them all (empty when none came or
        the slots were closed)."""
        with self._cond:
            if not self._pending and not self._closed:
                self._cond.wait(timeout)
            items, self._pending = self._pending, {}
            return items

    def stats(self) -> dict[str, SlotStats]:
        with self._cond:
            return dict(self._stats)

    def clear(self) -> None:
        """Forget waiting items (not counted as drops) and reset the counters."""
        with self._cond:
            self._pending.clear()
            self._stats.clear()

    def close(self) -> None:
        """Wake a waiting ``take`` for good (the worker is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed
