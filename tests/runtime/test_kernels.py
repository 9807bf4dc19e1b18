"""The compiled loops (numba) are all readied before the first frame and cached on disk."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from numba.core.registry import CPUDispatcher

import panoptic_ros
from panoptic_ros.runtime.kernels import compile_kernels

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
