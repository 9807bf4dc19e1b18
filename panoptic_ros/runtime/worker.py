"""The node's worker thread, supervised: no exception ends it silently.

The worker takes the pending frames of every camera from the newest-frame slots, decodes them, runs
one batched inference and builds each camera's result, and hands it to ``publish``. An error on one
frame (decoding, inference, building or publishing the outputs) is counted for that frame's camera
(``trouble``) and the worker goes on with the next. When the worker cannot go on (its own loop
raised, or ``max_failures`` batches in a row failed entirely, e.g. a lost GPU) it stops and reports
the fault (``on_fault``): the node then reports ERROR and exits non-zero, so launch ``respawn`` and
supervisors notice. ROS-free; the node supplies the callbacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.records import FrameResult, InputFrame
from panoptic_ros.runtime.slots import LatestFrameSlots

#: decode(camera, pending item) -> frame, or None when it was refused (and counted)
Decode = Callable[[str, Any], InputFrame | None]
#: publish(result, batch started ns, batch decoded ns)
Publish = Callable[[FrameResult, int, int], None]
#: trouble(camera, kind, text, error=...)
Trouble = Callable[..., None]


class Worker:
    """Serves the slots on a thread of its own (see the module docstring)."""

    def __init__(
        self,
        slots: LatestFrameSlots[Any],
        engine: FrameEngine,
        *,
        decode: Decode,
        publish: Publish,
        trouble: Trouble,
        before_batch: Callable[[], None] = lambda: None,
        on_fault: Callable[[str], None] = lambda reason: None,
        max_failures: int = 20,
    ) -> None:
        self.slots = slots
        self.engine = engine
        self._decode = decode
        self._publish = publish
        self._trouble = trouble
        self._before_batch = before_batch
        self._on_fault = on_fault
        self.max_failures = max_failures
        self.fault = ""
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unserved: dict[str, Any] = {}

    def start(self) -> None:
        self._stop.clear()
        self._unserved = {}
        self.slots.reopen()
        self._thread = threading.Thread(target=self._run, name="panoptic_worker", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, int]:
        """Stop and join the thread; the frames not served (in flight) per camera are returned: those
        still waiting in the slots (taken out) and those the thread had taken when the stop came."""
        self._stop.set()
        self.slots.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        in_flight: dict[str, int] = {}
        for pending in (self._unserved, self.slots.take(timeout=0)):
            for camera in pending:
                in_flight[camera] = in_flight.get(camera, 0) + 1
        self._unserved = {}
        return in_flight

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                pending = self.slots.take(timeout=0.2)
                if pending and self._stop.is_set():
                    self._unserved = pending  # taken as the stop came: reported in flight by stop()
                elif pending:
                    self.serve(pending)
        except BaseException as err:  # the loop itself broke: nothing more can be served
            self._fail(f"{type(err).__name__}: {err}")

    def _fail(self, reason: str) -> None:
        self.fault = reason
        self._on_fault(reason)

    def serve(self, pending: dict[str, Any]) -> None:
        """One batch: decode, infer, build and publish every pending camera's frame."""
        self._before_batch()
        started = time.monotonic_ns()
        frames = []
        for camera, item in pending.items():
            try:
                frame = self._decode(camera, item)
            except Exception as err:  # not a refusal the decoder knows (e.g. out of memory)
                self._trouble(camera, "processing_error", f"decoding failed: {err!r}", error=True)
                continue
            if frame is not None:
                frames.append(frame)
        decoded = time.monotonic_ns()
        if not frames:
            return
        try:
            outputs, batch_times = self.engine.infer(frames)
        except Exception as err:
            for frame in frames:
                self._trouble(frame.camera, "processing_error", f"inference failed: {err!r}", error=True)
            self._failures += 1
            if self._failures >= self.max_failures:
                raise RuntimeError(
                    f"{self._failures} inferences in a row failed, the last with {err!r}"
                ) from err
            return
        self._failures = 0
        for frame, output in zip(frames, outputs, strict=True):
            try:
                result = self.engine.result(frame, output, batch_times)
                self._publish(result, started, decoded)
            except Exception as err:
                self._trouble(frame.camera, "processing_error", f"processing failed: {err!r}", error=True)
