"""The robot path: `colcon build` of this package in a fresh workspace, then the INSTALLED node.

The workspace holds the repository's tracked files (``git ls-files``) under ``src/``, as a clone on a
robot would, and is built with colcon (from PyPI, requirements-ros.txt) against the ROS 2 wheels in
the venv, which stands in for /opt/ros. The node is then started from
``install/panoptic_ros/lib/panoptic_ros`` in a shell that sources ``install/setup.sh``, with nothing
of the source checkout on any path, and must serve a camera and exit 0 on SIGINT.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.conftest import REPO

if TYPE_CHECKING:  # rclpy is imported only by the tests, so that collection works without ROS
    from tests.ros.node_harness import NodeProcess, Peer

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PACKAGE = "panoptic_ros"
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
#: Where the ROS 2 wheels' CMake files look for numpy's headers; scripts/setup.sh links it.
NUMPY_INCLUDE = Path(f"/opt/python/cp311-cp311/lib/{PY}/site-packages/numpy/_core/include")
#: Runs a program (``$0``) with its arguments in the environment of the workspace's install tree.
SOURCED = 'set +u; . install/setup.sh || exit 97; exec "$0" "$@"'

CAMERA = "/colcon_cam/image_raw"
OUTPUTS = ("semantic", "instance_ids", "instances")
SIZE = (192, 384)
#: Appended to failures: a file that exists only in the working tree is not in the workspace.
TRACKED_ONLY = "(the workspace holds the repository's tracked files only: `git add` new files)"


class Workspace:
    """A built colcon workspace: ``root`` holds ``src/``, ``build/``, ``install/`` and ``log/``."""

    def __init__(self, root: Path, env: dict[str, str], build_log: Path) -> None:
        self.root = root
        self.env = env
        self.build_log = build_log
        self.prefix = root / "install" / PACKAGE
        self.site = self.prefix / "lib" / PY / "site-packages"
        self.share = self.prefix / "share" / PACKAGE

    def sourced(self, program: str, *args: str) -> list[str]:
        """The command line that runs ``program`` after sourcing ``install/setup.sh``, as on a robot."""
        return ["bash", "-c", SOURCED, program, *args]


def _in_checkout(path: str) -> bool:
    """True for a path inside the source checkout (the venv, also inside it on a dev machine, excepted)."""
    resolved = Path(path).resolve()
    venv = Path(sys.prefix).resolve()
    return resolved.is_relative_to(REPO) and not resolved.is_relative_to(venv)


def _robot_env() -> dict[str, str]:
    """This process's environment with nothing that points into the source checkout: no PYTHONPATH,
    no ``PANOPTIC_ROS_SHARE``, ROS found only in the venv (as in /opt/ros on a robot), and this
    interpreter first on PATH (the executables' ``#!/usr/bin/env python3``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PANOPTIC_ROS_SHARE", "PANOPTIC_ROS_ROOT")
    }
    for var in ("PATH", "LD_LIBRARY_PATH"):
        kept = [p for p in env.get(var, "").split(os.pathsep) if p and not _in_checkout(p)]
        env[var] = os.pathsep.join(kept)
    env["PATH"] = os.pathsep.join(filter(None, (str(Path(sys.executable).parent), env["PATH"])))
    env["AMENT_PREFIX_PATH"] = env["CMAKE_PREFIX_PATH"] = sys.prefix
    env.pop("COLCON_DEFAULTS_FILE", None)
    return env


def _tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else f"({path} missing)"
    return "\n".join(text.splitlines()[-lines:])


def _copy_tracked_sources(dest: Path) -> None:
    """The repository's tracked files (their working-tree content), nothing generated or ignored."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, f"git ls-files failed in {REPO}: {listed.stderr}"
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One colcon build for the module (15 to 45 s on 2 cores)."""
    assert NUMPY_INCLUDE.is_dir(), (
        f"{NUMPY_INCLUDE} does not lead to numpy's headers (it is {os.path.realpath(NUMPY_INCLUDE)}); "
        "the ROS 2 wheels' CMake files need it: run 'make setup', which links it to this venv's numpy"
    )
    root = tmp_path_factory.mktemp("colcon") / "ws"
    _copy_tracked_sources(root / "src" / PACKAGE)
    env = _robot_env()
    env["COLCON_HOME"] = str(root.parent / "colcon_home")  # no user defaults (~/.colcon/defaults.yaml)
    build_log = root.parent / "colcon_build.log"
    command = [
        sys.executable,
        "-m",
        "colcon",
        "build",
        "--packages-select",
        PACKAGE,
        "--event-handlers",
        "console_direct+",
        "--cmake-args",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
        f"-DPython3_NumPy_INCLUDE_DIR={NUMPY_INCLUDE}",
    ]
    with build_log.open("w") as log:
        result = subprocess.run(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=500)
    ws = Workspace(root, env, build_log)
    assert result.returncode == 0, (
        f"colcon build failed ({result.returncode}); {build_log}:\n{_tail(build_log)}\n{TRACKED_ONLY}"
    )
    # colcon exits 0 when --packages-select names no package it found: check that something was built.
    exe = ws.prefix / "lib" / PACKAGE / "panoptic_node"
    assert exe.is_file(), f"colcon build did not install {exe}; {build_log}:\n{_tail(build_log)}"
    return ws


def test_colcon_installs_executables_messages_and_data(workspace: Workspace) -> None:
    exe_dir = workspace.prefix / "lib" / PACKAGE
    for exe in ("panoptic_node", "panoptic_lifecycle_node", "panoptic_ros_cli"):
        assert os.access(exe_dir / exe, os.X_OK), f"{exe_dir / exe} missing or not executable"
    for path in (
        workspace.share / "package.xml",
        workspace.share / "config" / "panoptic.yaml",
        workspace.share / "engines" / "panoptic_synthetic.onnx",
        workspace.share / "launch" / "panoptic.launch.py",
        workspace.site / PACKAGE / "msg" / "__init__.py",
        workspace.site / PACKAGE / "ros" / "node.py",
        workspace.prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE,
    ):
        assert path.is_file(), f"{path} not installed; {workspace.build_log}:\n{_tail(workspace.build_log)}"


def test_sourced_install_tree_is_what_python_imports(workspace: Workspace) -> None:
    """After `source install/setup.sh`, Python takes the package, its messages and its shared data
    from the workspace's install tree, never from the source checkout."""
    code = (
        "import json, panoptic_ros, panoptic_ros.msg, panoptic_ros.resources as r; "
        "print(json.dumps([panoptic_ros.__file__, panoptic_ros.msg.__file__, str(r.default_model())]))"
    )
    result = subprocess.run(
        workspace.sourced("python3", "-c", code),
        cwd=workspace.root,
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    package, messages, model = (Path(p) for p in json.loads(result.stdout.splitlines()[-1]))
    assert package.is_relative_to(workspace.site), f"panoptic_ros imported from {package}"
    assert messages.is_relative_to(workspace.site), f"panoptic_ros.msg imported from {messages}"
    assert model.is_relative_to(workspace.share), f"the model is taken from {model}"


def _wait_outputs(peer: Peer, node: NodeProcess, stamp: int) -> dict[str, Any]:
    """Each output of CAMERA at ``stamp``; fails at once if the node exits."""
    from tests.ros.node_harness import stamp_of

    topics = {name: f"/colcon_cam/panoptic/{name}" for name in OUTPUTS}
    got: dict[str, Any] = {}

    def arrived() -> bool:
        for name, topic in topics.items():
            for msg in peer.messages(topic):
                if stamp_of(msg) == stamp:
                    got[name] = msg
        return len(got) == len(topics) or not node.alive()

    peer.wait_for(arrived, f"{', '.join(topics.values())} at stamp {stamp}")
    assert node.alive(), _exited(node)
    return got


def _exited(node: NodeProcess) -> str:
    return f"the installed node exited with {node.proc.returncode} {TRACKED_ONLY}"


def _mapped_package_files(pid: int) -> set[Path]:
    """The files of this package (message libraries, typesupport modules) that process ``pid`` has loaded."""
    mapped = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/") and PACKAGE in Path(fields[5]).name:
            mapped.add(Path(fields[5]))
    return mapped


def test_installed_node_serves_a_camera_and_stops_cleanly(workspace: Workspace, tmp_path: Path) -> None:
    from sensor_msgs.msg import Image

    from panoptic_ros.core.image_codec import image_to_array
    from panoptic_ros.data.synthetic import generate
    from panoptic_ros.ros.conversions import array_to_image_msg
    from tests.ros.node_harness import NodeProcess, Peer, header

    exe = workspace.prefix / "lib" / PACKAGE / "panoptic_node"
    command: Sequence[str] = workspace.sourced(str(exe.relative_to(workspace.root)))
    params = {
        "image_topics": [CAMERA],
        "backend": "onnxruntime",
        "device": "cpu",
        "warmup_frames": 1,
        "tracker.min_hits": 1,
        "qos.mode": "explicit",  # the peer publishes reliably; a best-effort link may lose fragments
        "qos.reliability": "reliable",
        "qos.depth": 5,
    }
    frames = list(generate(1, seed=77, height=SIZE[0], width=SIZE[1], sequence_length=3))
    node = NodeProcess(
        tmp_path, params, name="panoptic_colcon", command=command, env=workspace.env, cwd=workspace.root
    )
    peer = Peer("panoptic_colcon_peer")
    received: list[dict[str, Any]] = []
    stamps: list[int] = []
    try:
        peer.listen_outputs("/colcon_cam", OUTPUTS)
        publisher = peer.publisher(CAMERA, Image)
        peer.wait_for(
            lambda: publisher.get_subscription_count() > 0 or not node.alive(), f"a subscriber on {CAMERA}"
        )
        assert node.alive(), _exited(node)
        for i, sample in enumerate(frames):
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            stamps.append(stamp)
            peer.publish(CAMERA, array_to_image_msg(sample.image, "rgb8", header(stamp)))
            received.append(_wait_outputs(peer, node, stamp))
        mapped = _mapped_package_files(node.proc.pid)
    except AssertionError as err:
        raise AssertionError(f"{err}\nlog of the installed node:\n{node.log()}") from None
    finally:
        peer.close()
        code = node.stop()
    log = node.log()
    assert code == 0, f"the installed node exited with {code} on SIGINT:\n{log}"

    # It ran from the workspace's install tree: its message libraries, and the model it loaded.
    assert mapped, f"the node loaded none of {PACKAGE}'s message libraries:\n{log}"
    outside = sorted(str(p) for p in mapped if not p.resolve().is_relative_to(workspace.prefix.resolve()))
    assert not outside, f"the node loaded {PACKAGE} files from outside {workspace.prefix}: {outside}"
    model = workspace.share / "engines" / "panoptic_synthetic.onnx"
    assert f"loading {model}" in log, f"the node did not load {model}:\n{log}"

    for stamp, sample, got in zip(stamps, frames, received, strict=True):
        semantic, ids, instances = got["semantic"], got["instance_ids"], got["instances"]
        for image, encoding in ((semantic, "mono8"), (ids, "32SC1")):
            got_format = (image.height, image.width, image.encoding)
            assert got_format == (*SIZE, encoding), (
                f"frame {stamp}: {got_format}, expected {(*SIZE, encoding)}"
            )
            assert image.header.frame_id == "camera_optical", f"frame {stamp}: {image.header.frame_id}"
        assert (instances.height, instances.width) == SIZE, (
            f"frame {stamp}: {instances.height}x{instances.width}"
        )
        # the installed model's labels, not noise: most pixels agree with the synthetic ground truth
        valid = sample.semantic != 255
        agreement = float(np.mean(image_to_array(semantic)[valid] == sample.semantic[valid]))
        assert agreement > 0.8, f"frame {stamp}: only {agreement:.0%} of the pixels labelled as the truth"
        assert instances.instances, f"frame {stamp}: no segments"
