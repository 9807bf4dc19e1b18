"""The layer rules (docs/architecture.md): imports follow the data flow downwards, no import cycles,
nothing outside panoptic_ros/ros/ imports rclpy or a message package, nothing imports the command line,
and no module grows past ~400 lines without a stated reason.

Every import counts: at module level, inside functions (lazy) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "panoptic_ros"
ROS_ROOTS = {
    "rclpy",
    "rcl_interfaces",
    "sensor_msgs",
    "std_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "builtin_interfaces",
    "lifecycle_msgs",
    "vision_msgs",
    "rosidl_runtime_py",
    "launch",
    "launch_ros",
}

#: The layers, lowest first. A module may import modules of its own layer's package (no cycles) and of
#: packages in lower layers; never a package of the same layer or above. ``cli`` may dispatch to all.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "__init__"),  # the package root: the error hierarchy
    ("resources",),  # where the shared files are (config, label sets, the shipped model)
    ("core",),  # types, ids, labels, codec, geometry, segments, messages, preprocessing (tensor work)
    ("data", "fusion", "tracking"),  # dataset and bag formats; fusion per decoder family; the tracker
    ("models", "metrics"),  # networks, specs, export, training; PQ / STQ
    ("backends",),  # inference behind one interface
    ("runtime",),  # the frame engine: pipeline, engine, outputs, config, stats
    ("apps",),  # front-ends without ROS: infer, bag process / eval, demo, engine building
    ("ros",),  # the node, rclpy wrappers, bag play / record, the live demo
    ("cli",),  # the command line
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

#: Modules allowed past MAX_LINES, each with its reason (also in docs/architecture.md).
MAX_LINES = 400
LONG_MODULES: dict[str, str] = {
    "fusion/center_offset.py": "Panoptic-DeepLab post-processing, one data flow of documented steps",
    "fusion/mask_classification.py": "the Mask2Former rules and the transformers mode share every step",
    "fusion/upsampled_argmax.py": "one exact sparse argmax algorithm with its geometry cache",
}


def _modules() -> dict[str, Path]:
    """``panoptic_ros.x.y`` -> file, for every module of the package (generated msg/ left out)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[1] == "msg":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _package(module: str) -> str:
    """The layer key of a module: its sub-package, or its own name for a module at the package root."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (absolute or relative)."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + int(is_package)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` names the module; ``from module import name`` the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for name in names:
            target = name
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(p, m, known) for m, p in modules.items()}


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in _modules()}
    assert packages <= set(RANK), f"put {sorted(packages - set(RANK))} into LAYERS"


def test_imports_follow_the_data_flow() -> None:
    offenders = []
    for module, imported in _graph().items():
        mine = _package(module)
        for target in imported:
            theirs = _package(target)
            if target == "panoptic_ros" or theirs == mine:
                continue
            if RANK[theirs] >= RANK[mine]:
                offenders.append(f"{module} -> {target} ({mine} may not import {theirs})")
    assert not offenders, "\n".join(sorted(offenders))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its modules is not a cycle of the modules themselves
    without_faces = {m: {t for t in ts if not _is_face(t, m)} for m, ts in graph.items()}
    assert _cycles(without_faces) == []


def _is_face(target: str, module: str) -> bool:
    """Whether ``target`` is the ``__init__`` of a package that contains ``module``."""
    return module.startswith(target + ".")


def test_the_cycle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_command_line() -> None:
    offenders = [
        f"{module} -> {target}"
        for module, imported in _graph().items()
        if not module.startswith("panoptic_ros.cli")
        for target in imported
        if target.startswith("panoptic_ros.cli")
    ]
    assert not offenders


def test_core_imports_only_core() -> None:
    offenders = [
        f"{module} -> {target}"
        for module, imported in _graph().items()
        if _package(module) == "core"
        for target in imported
        if _package(target) not in ("core", "errors", "resources") and target != "panoptic_ros"
    ]
    assert not offenders


def test_modules_stay_small_or_say_why() -> None:
    long = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in _modules().values()
    }
    over = {name: lines for name, lines in long.items() if lines > MAX_LINES and name not in LONG_MODULES}
    assert not over, f"split these or give a reason in LONG_MODULES and docs/architecture.md: {over}"
    stale = [name for name in LONG_MODULES if long.get(name, 0) <= MAX_LINES]
    assert not stale, f"no longer long (drop from LONG_MODULES): {stale}"
    documented = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert all(name in documented for name in LONG_MODULES)


# ---- ROS stays in panoptic_ros/ros


def _ros_free_modules() -> list[str]:
    return [m for m in _modules() if _package(m) not in ("ros",) and not m.endswith("__main__")]


def test_ros_free_modules_found() -> None:
    modules = _ros_free_modules()
    assert "panoptic_ros.core.image_codec" in modules
    assert "panoptic_ros.cli" in modules
    assert not any(m.startswith("panoptic_ros.ros") for m in modules)


def test_no_ros_import_statement_outside_ros_layer() -> None:
    offenders = []
    for module in _ros_free_modules():
        path = _modules()[module]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ROS_ROOTS or name.startswith("panoptic_ros.msg"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert not offenders, "\n".join(offenders)


BLOCKER = """
import importlib.abc, sys
BLOCKED = {roots!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED or name.startswith('panoptic_ros.msg'):
            raise ImportError(f'{{name}} is blocked: the ROS-free core must not import it')
        return None
sys.meta_path.insert(0, Block())
import importlib
for module in {modules!r}:
    importlib.import_module(module)
leaked = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
assert not leaked, leaked
print('imported', len({modules!r}), 'modules')
"""


def test_every_ros_free_module_imports_with_rclpy_unimportable() -> None:
    modules = _ros_free_modules()
    code = BLOCKER.format(roots=sorted(ROS_ROOTS), modules=modules)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(modules)} modules" in result.stdout


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from panoptic_ros.core import ids\n", {"panoptic_ros.core.ids"}),
        ("from . import ids\n", {"panoptic_ros.core.ids"}),
        ("def f():\n    import panoptic_ros.runtime.engine\n", {"panoptic_ros.runtime.engine"}),
    ],
)
def test_the_import_reader_sees_every_form(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "x.py"
    path.write_text(source)
    known = {"panoptic_ros.core.ids", "panoptic_ros.runtime.engine", "panoptic_ros.core", "panoptic_ros"}
    assert _imports(path, "panoptic_ros.core.x", known) == expected


def test_layers_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Which package imports which (printed with -s; the note of the frame-engine issue quotes it)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imported in _graph().items():
        for target in imported:
            if _package(target) != _package(module) and target != "panoptic_ros":
                edges[_package(module)].add(_package(target))
    for package in sorted(edges, key=lambda p: RANK[p]):
        print(f"{package:10s} -> {', '.join(sorted(edges[package], key=lambda p: RANK[p]))}")
    assert edges["core"] <= {"errors", "resources"}
