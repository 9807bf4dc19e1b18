"""The node's worker thread, supervised: no exception ends it silently.

The worker takes the pending frames of every camera from the newest-frame slots, decodes them, runs
one batched inference and builds each camera's result, and hands it to ``publish``; with ``overlap``
the network of a batch runs on one thread while another fuses, tracks and publishes the batch before.
Before the first frames it takes warm-up frames (``warmup_frames``, :mod:`~panoptic_ros.runtime.warm_up`)
through the threads that will serve, as the camera frames will go (network on one, fusion and outputs
on the other), publishing nothing of them, and takes camera frames only once they went through: in
the node, a new thread's first frames cost many times the later ones (``docs/BENCHMARKS.md``), and
the warm-up on the main thread at configure did not spare the serving threads that. A warm-up that
fails is given up (``warm_up_error``) and the camera frames are served without it.

An error on one frame (decoding, inference, building or publishing the outputs) is counted for that
frame's camera (``trouble``) and the worker goes on with the next. When the worker cannot go on (its
own loop raised, or ``max_failures`` batches in a row failed entirely, e.g. a lost GPU) it stops and
reports the fault (``on_fault``): the node then reports ERROR and exits non-zero, so launch
``respawn`` and supervisors notice. ROS-free; the node supplies the callbacks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.os_threads import name_os_thread
from panoptic_ros.runtime.pipeline import NetworkBatch
from panoptic_ros.runtime.records import FrameResult, InputFrame
from panoptic_ros.runtime.slots import LatestFrameSlots
from panoptic_ros.runtime.warm_up import warm_up_batches

#: decode(camera, pending item) -> frame, or None when it was refused (and counted)
Decode = Callable[[str, Any], InputFrame | None]
#: publish(result, batch started ns, batch decoded ns)
Publish = Callable[[FrameResult, int, int], None]
#: trouble(camera, kind, text, error=...)
Trouble = Callable[..., None]


#: With ``overlap``, the next network starts this fraction of (fusing time - network time) after the
#: fusing thread took a batch (a little early: the estimates are averages).
JUST_IN_TIME = 0.8
#: How long the node waits at activate for the warm-up on the serving threads (seconds).
WARM_UP_WAIT_S = 60.0


class _Average:
    """An exponential moving average of durations (seconds), 0 until the first one."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self.value = 0.0
        self._seen = False

    def add(self, seconds: float) -> None:
        self.value = seconds if not self._seen else (1 - self.weight) * self.value + self.weight * seconds
        self._seen = True


@dataclass(frozen=True)
class _Batch:
    """Frames through the network, waiting to be fused, tracked and published."""

    frames: list[InputFrame]
    network: list[NetworkBatch]
    started_ns: int
    decoded_ns: int
    warm_up: bool = False  # warm-up frames: fused and built, not published
    last: bool = False  # the last warm-up batch: the engine forgets the warm-up after it


class Worker:
    """Serves the slots on a thread of its own (see the module docstring).

    With ``overlap``, two threads: one decodes the pending frames and runs the network, the other
    fuses, tracks and publishes the previous batch meanwhile (one batch handed over at a time), so the
    network (ONNX Runtime, TensorRT, CUDA) and the Python work around it use the cores together.
    Parameter changes (``before_batch``) are taken by the thread that fuses, between batches.
    """

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
        overlap: bool = False,
        warmup_frames: int = 0,
        cameras: int = 1,
    ) -> None:
        self.slots = slots
        self.engine = engine
        self._decode = decode
        self._publish = publish
        self._trouble = trouble
        self._before_batch = before_batch
        self._on_fault = on_fault
        self.max_failures = max_failures
        self.overlap = overlap
        self.warmup_frames = warmup_frames
        self.cameras = cameras
        self.fault = ""
        self.warm_up_error = ""  # why the warm-up on the threads was given up, if it was
        self._failures = 0
        self._stop = threading.Event()
        self._warm = threading.Event()  # the warm-up went through both threads (or there is none)
        self._threads: list[threading.Thread] = []
        self._unserved: dict[str, Any] = {}
        self._handoff: queue.Queue[_Batch] = queue.Queue(maxsize=1)
        self._taken = threading.Event()  # the fusing thread took the batch handed over
        self._held: _Batch | None = None  # through the network when the stop came, not handed over
        self._torch_threads: int | None = None  # PyTorch's threads before an overlapping start
        self._network_s = _Average()  # seconds of a batch's network stage, and of its fusing stage
        self._results_s = _Average()

    def start(self, *, wait_warm: float = 0.0) -> bool:
        """Start the threads; with ``wait_warm`` (seconds) also wait until they took the warm-up
        frames. Returns False where that wait ended first (see :meth:`wait_warm`)."""
        if self.overlap and self.engine.device.type == "cpu" and self._torch_threads is None:
            # the two threads share the cores: PyTorch's own thread pool would only compete with the
            # network's (and spin); one thread for the fusion and tracking serves more frames
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        self._stop.clear()
        self._warm.clear()
        self.warm_up_error = ""
        self._unserved = {}
        self._held = None
        self._handoff = queue.Queue(maxsize=1)
        self.slots.reopen()
        self._threads = [threading.Thread(target=self._run, name="panoptic_worker", daemon=True)]
        if self.overlap:
            self._threads.append(
                threading.Thread(target=self._run_results, name="panoptic_result", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self.wait_warm(wait_warm) if wait_warm > 0 else True

    def stop(self) -> dict[str, int]:
        """Stop and join the threads; the frames not served (in flight) per camera are returned: those
        still waiting in the slots (taken out), those a thread had taken when the stop came, and those
        through the network but not fused."""
        self._stop.set()
        self.slots.close()
        for thread in self._threads:
            thread.join()
        self._threads = []
        if not self._warm.is_set():
            self.engine.forget_warm_up()  # a warm-up cut short by the stop
        if self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)
            self._torch_threads = None
        waiting = [self._held] if self._held is not None else []
        while not self._handoff.empty():
            waiting.append(self._handoff.get_nowait())
        in_flight: dict[str, int] = {}
        cameras = [camera for pending in (self._unserved, self.slots.take(timeout=0)) for camera in pending]
        cameras += [frame.camera for batch in waiting if not batch.warm_up for frame in batch.frames]
        for camera in cameras:
            in_flight[camera] = in_flight.get(camera, 0) + 1
        self._unserved = {}
        self._held = None
        return in_flight

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        name_os_thread(threading.current_thread().name)
        try:
            self._warm_up()
            while not self._stop.is_set():
                pending = self.slots.take(timeout=0.2)
                if pending and self._stop.is_set():
                    self._unserved = pending  # taken as the stop came: reported in flight by stop()
                elif pending and not self.overlap:
                    self.serve(pending)
                elif pending:
                    started = time.monotonic()
                    batch = self._network_stage(pending)
                    self._network_s.add(time.monotonic() - started)
                    if batch is not None:
                        self._hand_over(batch)
                        # start the next network so that it ends as the fusing thread gets free: the
                        # frames it takes are the newest then, and wait less behind the batch before
                        lead = self._results_s.value - self._network_s.value
                        self._stop.wait(max(0.0, JUST_IN_TIME * lead))
        except BaseException as err:  # the loop itself broke: nothing more can be served
            self._fail(f"{type(err).__name__}: {err}")

    def _warm_up(self) -> None:
        """The warm-up frames through the serving threads (see the module docstring): the network here,
        the rest on the fusing thread with ``overlap``, else here too; camera frames are taken only
        once the last one went through. Not timed into the estimates that pace the network. A warm-up
        that fails is given up (:attr:`warm_up_error`): the camera frames are served without it."""
        batches = list(warm_up_batches(self.engine.pipeline, self.warmup_frames, self.cameras))
        for index, frames in enumerate(batches):
            if self._stop.is_set() or self._warm.is_set():  # stopped, or the fusing side gave up
                break
            try:
                network = self.engine.network(frames)
            except Exception as err:
                self._warm_up_failed(err)
                break
            batch = _Batch(frames, network, 0, 0, warm_up=True, last=index == len(batches) - 1)
            if self.overlap:
                self._hand_over(batch)
            else:
                self._warm_up_results(batch)
        if not batches:
            self._warm.set()
        self.wait_warm(float("inf"))  # the fusing thread may still be on the last warm-up batch

    def _warm_up_results(self, batch: _Batch) -> None:
        """Fuse and build a warm-up batch, publishing nothing; after the last, the engine forgets them."""
        if self._warm.is_set():
            return  # the warm-up was given up
        try:
            outputs, batch_times = self.engine.fuse(batch.network)
            self.engine.collect(batch.frames, outputs, batch_times)
        except Exception as err:
            self._warm_up_failed(err)
            return
        if batch.last:
            self._end_warm_up()

    def _warm_up_failed(self, err: Exception) -> None:
        """Give the warm-up up, saying why (:attr:`warm_up_error`)."""
        self.warm_up_error = f"{type(err).__name__}: {err}"
        self._end_warm_up()

    def _end_warm_up(self) -> None:
        """The engine forgets the warm-up; camera frames may be taken."""
        self.engine.forget_warm_up()
        self._warm.set()

    def wait_warm(self, timeout: float) -> bool:
        """Wait until the warm-up went through the threads (at once without one); False: it did not
        within ``timeout`` seconds (a stop or a fault also ends the wait)."""
        deadline = time.monotonic() + timeout
        while not self._warm.wait(0.05):
            if self._stop.is_set() or self.fault or time.monotonic() > deadline:
                return False
        return True

    def _hand_over(self, batch: _Batch) -> None:
        """Give the batch to the thread that fuses and wait until it took it: the next frames are taken
        from the slots only then (the newest ones), so no batch waits behind another."""
        self._taken.clear()
        while True:
            if self._stop.is_set():
                self._held = batch
                return
            try:
                self._handoff.put(batch, timeout=0.05)
                break
            except queue.Full:
                continue
        while not self._taken.wait(0.05) and not self._stop.is_set():
            pass  # left in the hand-over at a stop: in flight

    def _run_results(self) -> None:
        name_os_thread(threading.current_thread().name)
        try:
            while not self._stop.is_set() and not self.fault:  # batches left at the stop are in flight
                try:
                    batch = self._handoff.get(timeout=0.05)
                except queue.Empty:
                    continue
                self._taken.set()
                if batch.warm_up:
                    self._warm_up_results(batch)
                else:
                    self._results_stage(batch)
        except BaseException as err:
            self._fail(f"{type(err).__name__}: {err}")

    def _fail(self, reason: str) -> None:
        if self.fault:
            return
        self.fault = reason
        self._on_fault(reason)

    def serve(self, pending: dict[str, Any]) -> None:
        """One batch: decode, infer, build and publish every pending camera's frame."""
        batch = self._network_stage(pending)
        if batch is not None:
            self._results_stage(batch)

    def _network_stage(self, pending: dict[str, Any]) -> _Batch | None:
        """Decode the pending frames and run the network on them (None: nothing to fuse)."""
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
            return None
        try:
            network = self.engine.network(frames)
        except Exception as err:
            self._batch_failed(frames, err)
            return None
        return _Batch(frames, network, started, decoded)

    def _results_stage(self, batch: _Batch) -> None:
        """Fuse, track, build and publish a batch through the network."""
        started = time.monotonic()
        try:
            self._fuse_and_publish(batch)
        finally:
            self._results_s.add(time.monotonic() - started)

    def _fuse_and_publish(self, batch: _Batch) -> None:
        self._before_batch()
        try:
            outputs, batch_times = self.engine.fuse(batch.network)
        except Exception as err:
            self._batch_failed(batch.frames, err)
            return
        self._failures = 0
        # each frame published as soon as it and the frames before it are made (the cameras of a batch
        # side by side on the engine's camera threads)
        outcomes = self.engine.results(batch.frames, outputs, batch_times)
        for frame, outcome in zip(batch.frames, outcomes, strict=True):
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                self._publish(outcome, batch.started_ns, batch.decoded_ns)
            except Exception as err:
                self._trouble(frame.camera, "processing_error", f"processing failed: {err!r}", error=True)

    def _batch_failed(self, frames: list[InputFrame], err: Exception) -> None:
        """A whole batch failed (inference or fusion): counted per frame; after ``max_failures`` in a
        row the worker cannot go on."""
        for frame in frames:
            self._trouble(frame.camera, "processing_error", f"inference failed: {err!r}", error=True)
        self._failures += 1
        if self._failures >= self.max_failures:
            raise RuntimeError(f"{self._failures} inferences in a row failed, the last with {err!r}") from err
