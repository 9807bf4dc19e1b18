"""A batch's cameras side by side: each camera's frames in order on one thread, outcomes in frame
order, a failing frame's exception in its place; with the shipped model, the engine's results on
several threads are those of one."""

from __future__ import annotations

import threading
from concurrent.futures.thread import BrokenThreadPool

import numpy as np
import pytest
import torch

from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.data.synthetic import generate
from panoptic_ros.runtime import EngineParams, FrameEngine, InputFrame, camera_threads
from panoptic_ros.runtime.camera_threads import CameraThreads, auto_threads
from panoptic_ros.runtime.records import FrameResult
from panoptic_ros.tracking import TrackerParams
from tests.conftest import REPO

PERIOD = 100_000_000


def test_auto_threads_by_cores() -> None:
    assert auto_threads(2) == 1  # the development machine: one thread (two were slower there)
    assert auto_threads(7) == 1
    assert auto_threads(8) == 4
    assert auto_threads(16) == 8
    assert auto_threads(128) == 8
    assert CameraThreads(0).threads == auto_threads() and CameraThreads().threads == 1
    with pytest.raises(ValueError, match="0 \\(automatic\\) or more"):
        CameraThreads(-1)


def test_one_thread_runs_each_frame_on_the_caller_and_stops_where_the_caller_stops() -> None:
    threads = CameraThreads(1)
    ran: list[int] = []

    def work(i: int) -> int:
        ran.append(i)
        assert threading.current_thread() is threading.main_thread()
        if i == 1:
            raise KeyError("frame 1")
        return i * 10

    outcomes = threads.run(["a", "b", "a"], work)
    assert next(outcomes) == 0
    failed = next(outcomes)
    assert isinstance(failed, KeyError)
    assert ran == [0, 1]  # frame 2 not started before the caller asks for it
    assert list(outcomes) == [20]


def test_cameras_run_side_by_side_each_in_order() -> None:
    threads = CameraThreads(3)
    meet = threading.Barrier(3, timeout=20)  # reached only if three cameras run at once
    seen: dict[str, list[int]] = {}
    names: dict[str, set[str]] = {}
    lock = threading.Lock()
    cameras = ["a", "b", "c", "a", "b", "c", "a"]

    def work(i: int) -> str:
        camera = cameras[i]
        if i < 3:
            meet.wait()
        with lock:
            seen.setdefault(camera, []).append(i)
            names.setdefault(camera, set()).add(threading.current_thread().name)
        if i == 4:
            raise RuntimeError("frame 4")
        return f"{camera}{i}"

    outcomes = list(threads.run(cameras, work))
    assert outcomes[:4] == ["a0", "b1", "c2", "a3"]
    assert isinstance(outcomes[4], RuntimeError) and str(outcomes[4]) == "frame 4"
    assert outcomes[5:] == ["c5", "a6"]
    assert seen == {"a": [0, 3, 6], "b": [1, 4], "c": [2, 5]}  # each camera's frames in order
    assert all(len(n) == 1 and next(iter(n)).startswith("panoptic_camera") for n in names.values())
    threads.close()
    assert list(threads.run(["x", "y"], lambda i: i)) == [0, 1]  # a later batch starts threads again
    threads.close()


def test_closing_early_waits_for_every_camera_s_work() -> None:
    """A caller that stops at a failure closes the outcomes; by then no camera's work is still running
    (it would otherwise overlap that camera's next batch)."""
    threads = CameraThreads(2)
    done: list[int] = []
    started = threading.Event()

    def work(i: int) -> int:
        if i == 0:
            started.wait(20)  # camera b is under way
            raise ValueError("frame 0")
        started.set()
        threading.Event().wait(0.3)
        done.append(i)
        return i

    outcomes = threads.run(["a", "b", "b"], work)
    assert isinstance(next(outcomes), ValueError)
    outcomes.close()
    assert done == [1, 2]
    threads.close()


def test_a_broken_pool_fails_the_frames_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(name: str) -> bool:
        raise OSError(f"cannot start {name}")

    monkeypatch.setattr(camera_threads, "name_os_thread", no_thread)
    threads = CameraThreads(2)
    with pytest.raises(BrokenThreadPool):
        list(threads.run(["a", "b", "a"], lambda i: i))
    threads.close()


def _frames(k: int, images: list[np.ndarray], camera: CameraModel) -> list[InputFrame]:
    return [
        InputFrame(
            f"cam{c}",
            images[(k + c) % len(images)],
            k * PERIOD,
            overlay=True,
            depth=np.full(images[0].shape[:2], 4.0 + c, dtype=np.float32),
            camera_model=camera,
        )
        for c in range(3)
    ]


def _same(a: FrameResult, b: FrameResult) -> None:
    assert a.camera == b.camera and a.stamp_ns == b.stamp_ns and a.events == b.events
    for name in ("semantic", "instance_ids", "overlay_bgr"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in a.instances._fields:
        np.testing.assert_array_equal(getattr(a.instances, name), getattr(b.instances, name), err_msg=name)


def _one_thread_and_three(**options: object) -> None:
    """Engines with one camera thread and with three give the same results over six frames of three
    tracked cameras with depth; a failing frame raises from process() on either."""
    images = [s.image for s in generate(3, seed=4, sequence_length=4)]
    h, w = images[0].shape[:2]
    camera = CameraModel.from_k([100.0, 0, w / 2, 0, 100.0, h / 2, 0, 0, 1], w, h)
    params = EngineParams(tracker=TrackerParams(min_hits=1))
    model = REPO / "engines" / "panoptic_synthetic.onnx"
    engines = [FrameEngine.open(model, params=params, camera_threads=n, **options) for n in (1, 3)]  # type: ignore[arg-type]
    assert [e.cameras.threads for e in engines] == [1, 3]
    tracked = 0
    for k in range(6):
        one, several = (e.process(_frames(k, images, camera)) for e in engines)
        for a, b in zip(one, several, strict=True):
            _same(a, b)
            tracked += int((a.instances.is_thing & (a.instances.areas > 0)).sum())
    assert tracked > 10  # the cameras had things to track
    # a frame that fails raises from process() as on one thread; results() puts it in its place
    bad = _frames(6, images, camera)
    bad[1] = bad[1]._replace(depth=np.zeros((h, w, 3), dtype=np.float32))
    for engine in engines:
        with pytest.raises(ValueError, match="depth image"):
            engine.process(bad)
        outputs, times = engine.infer(bad)
        outcomes = engine.results(bad, outputs, times)
        got = list(outcomes)
        assert isinstance(got[1], ValueError)
        assert isinstance(got[0], FrameResult) and isinstance(got[2], FrameResult)
        engine.close()


def test_the_engine_on_camera_threads_gives_the_results_of_one_thread() -> None:
    _one_thread_and_three(backend="onnxruntime", device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_on_cuda_camera_threads_give_the_results_of_one_thread(cuda_graph: bool) -> None:
    """The cameras' results on three threads share the device (its default stream) and the replayed
    graph's outputs: the same results as one thread."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _one_thread_and_three(backend="torch", device="cuda", cuda_graph=cuda_graph)
