"""The layer rule: nothing outside panoptic_ros/ros/ imports rclpy or a message package."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "panoptic_ros"
ROS_ROOTS = {
    "rclpy",
    "sensor_msgs",
    "std_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "builtin_interfaces",
    "lifecycle_msgs",
    "vision_msgs",
    "rosidl_runtime_py",
}


def _core_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(REPO).with_suffix("")
        parts = relative.parts
        if parts[1] in ("ros", "msg"):
            continue
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_core_modules_found() -> None:
    modules = _core_modules()
    assert "panoptic_ros.core.image_codec" in modules
    assert "panoptic_ros.cli" in modules
    assert not any(m.startswith("panoptic_ros.ros") for m in modules)


def test_no_ros_import_statement_outside_ros_layer() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("ros", "msg"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ROS_ROOTS or name.startswith("panoptic_ros.msg"):
                    offenders.append(f"{relative}:{node.lineno} imports {name}")
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


def test_every_core_module_imports_with_rclpy_unimportable() -> None:
    modules = _core_modules()
    code = BLOCKER.format(roots=sorted(ROS_ROOTS), modules=modules)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(modules)} modules" in result.stdout
