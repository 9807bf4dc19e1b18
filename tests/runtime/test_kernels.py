"""The compiled loops (numba) are all readied before the first frame and cached on disk."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import panoptic_ros
from panoptic_ros.runtime.kernels import compile_kernels
from tests.conftest import REPO

# every module of compiled loops (named ``*_cpu``), found in the package so that a new one is covered
MODULES = tuple(
    sorted(
        f"panoptic_ros.{path.parent.name}.{path.stem}"
        for path in Path(panoptic_ros.__file__).parent.glob("*/*_cpu.py")
    )
)


def _loops() -> dict[str, CPUDispatcher]:
    found = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == name:
                found[f"{name}.{attribute}"] = value
    return found


def test_compile_kernels_readies_every_loop_of_the_frame_path() -> None:
    assert len(MODULES) >= 6 and "panoptic_ros.core.geometry_cpu" in MODULES, MODULES
    compile_kernels()
    loops = _loops()
    assert len(loops) >= 12, sorted(loops)
    assert [name for name, loop in loops.items() if not loop.signatures] == []


@pytest.mark.parametrize("name", MODULES)
def test_every_loop_is_cached_on_disk_and_releases_the_gil(name: str) -> None:
    """``cache=True`` (a process loads them rather than compiling) and ``nogil`` (the network thread
    of the node runs on while a frame is fused)."""
    compile_kernels()
    module = importlib.import_module(name)
    for attribute, loop in vars(module).items():
        if isinstance(loop, CPUDispatcher) and loop.__module__ == name:
            assert loop.targetoptions.get("nogil") is True, attribute
            assert loop._cache.cache_path, attribute
            index = Path(loop._cache._cache_file._index_path)
            assert index.is_file(), f"{attribute}: no cache index at {index}"


def test_real_frames_compile_nothing_after_compile_kernels() -> None:
    """The signatures :func:`compile_kernels` readies are those the frame path calls with (in a fresh
    process: loops other tests compiled here would hide a missing one)."""
    out = subprocess.run(
        [sys.executable, "-c", "from tests.runtime.test_kernels import frames_compile_nothing as f; f()"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def frames_compile_nothing() -> None:
    """Print the loops that frames of the shipped model compiled after :func:`compile_kernels` (with
    their signature counts before and after): frames with several things, with none and with one (an
    instance's columns are views of its table, contiguous only for one row), each seen twice in a row
    (tracks matched), every output asked for; with depth at the model's size and at twice it."""
    from panoptic_ros.core.geometry import CameraModel
    from panoptic_ros.data.synthetic import generate
    from panoptic_ros.runtime import FrameEngine, InputFrame

    compile_kernels()
    before = {name: len(loop.signatures) for name, loop in _loops().items()}
    engine = FrameEngine.open(
        REPO / "engines" / "panoptic_synthetic.onnx", backend="onnxruntime", device="cpu"
    )
    samples = list(generate(1, seed=21, sequence_length=3))
    stamp = iter(range(0, 10**12, 100_000_000))

    def things(image: np.ndarray) -> int:
        (result,) = engine.process([InputFrame("a", image, next(stamp), overlay=True)])
        return int((result.instances.is_thing & (result.instances.areas > 0)).sum())  # lost tracks: area 0

    counts = [things(sample.image) for sample in samples]
    # with depth (3D positions and the point cloud), and a BGR camera's frames
    height, width = samples[0].image.shape[:2]
    camera = CameraModel.from_k(
        [0.8 * width, 0, width / 2, 0, 0.8 * width, height / 2, 0, 0, 1], width, height
    )
    depth = np.full((height, width), 3.0, dtype=np.float32)
    for sample in samples[:2]:
        frame = InputFrame("d", sample.image, next(stamp), depth=depth, camera_model=camera, points=True)
        engine.process([frame])
        engine.process(
            [InputFrame("e", sample.image[..., ::-1].copy(), next(stamp), overlay=True, order="bgr")]
        )
    # a camera twice the model's size with depth: the depth is sampled at the model's pixels
    large = np.ascontiguousarray(samples[0].image.repeat(2, axis=0).repeat(2, axis=1))
    large_camera = camera.scaled(2 * width, 2 * height)
    large_depth = np.full((2 * height, 2 * width), 3.0, dtype=np.float32)
    for _ in range(2):
        engine.process([InputFrame("f", large, next(stamp), depth=large_depth, camera_model=large_camera)])
    blank = np.full_like(samples[0].image, 127)
    counts += [things(blank), things(blank)]
    # a crop around one thing of the scene that the model sees one thing in, twice
    for thing in np.unique(samples[0].instance)[1:]:
        ys, xs = np.nonzero(samples[0].instance == thing)
        crop = np.ascontiguousarray(
            samples[0].image[max(ys.min() - 10, 0) : ys.max() + 10, max(xs.min() - 10, 0) : xs.max() + 10]
        )
        if things(crop) == 1:
            counts.append(things(crop))
            break
    assert max(counts) > 1 and counts[-1] == 1 and 0 in counts, counts
    after = {name: len(loop.signatures) for name, loop in _loops().items()}
    print(json.dumps({name: (before[name], count) for name, count in after.items() if count != before[name]}))
