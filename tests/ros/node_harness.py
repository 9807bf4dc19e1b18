"""Test helpers: the node in its own process, and an in-process peer (real rclpy, real DDS) that
publishes camera frames, collects the node's outputs and drives lifecycle and parameter services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from panoptic_ros.msg import PanopticInstanceArray
from tests.conftest import REPO

#: Upper bound against hanging, never a timing check.
WAIT_S = 90.0
#: Seconds without a service's reply after which the request may be sent again (see ``Peer._call``).
REPLY_S = 15.0
#: The lifecycle state each transition leads to, and the states a node rests in.
_GOAL_STATE = {
    Transition.TRANSITION_CONFIGURE: "inactive",
    Transition.TRANSITION_CLEANUP: "unconfigured",
    Transition.TRANSITION_ACTIVATE: "active",
    Transition.TRANSITION_DEACTIVATE: "inactive",
    Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized",
    Transition.TRANSITION_INACTIVE_SHUTDOWN: "finalized",
    Transition.TRANSITION_ACTIVE_SHUTDOWN: "finalized",
}
_PRIMARY_STATES = ("unconfigured", "inactive", "active", "finalized")
#: What ``Peer._call`` does after a silence: send the request again, or wait on.
RESEND, WAIT = object(), object()

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

OUTPUT_TYPES: dict[str, type] = {
    "semantic": Image,
    "instance_ids": Image,
    "instances": PanopticInstanceArray,
    "overlay": Image,
    "markers": MarkerArray,
}


def header(stamp_ns: int, frame_id: str = "camera_optical") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return h


def stamp_of(msg: Any) -> int:
    """The header stamp of a message (a MarkerArray's: its first marker's)."""
    if not hasattr(msg, "header"):
        msg = msg.markers[0]
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no node outlives an interrupted run."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NodeProcess:
    """``panoptic_node`` (or ``panoptic_lifecycle_node``) in a child process with a params file."""

    def __init__(
        self,
        tmp: Path,
        params: dict[str, Any],
        *,
        lifecycle: bool = False,
        name: str = "panoptic",
        base_files: tuple[Path, ...] = (),
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """``command`` (default: this interpreter running the source checkout's script) gets the
        ``--ros-args`` appended and runs in ``cwd`` (default: the repository) with ``env`` (default:
        this process's environment)."""
        self.name = name
        self.params_file = tmp / f"{name}_params.yaml"
        self.params_file.write_text(yaml.safe_dump({name: {"ros__parameters": params}}))
        self.log_path = tmp / f"{name}.log"
        exe = "panoptic_lifecycle_node" if lifecycle else "panoptic_node"
        self._log = self.log_path.open("w")
        if command is None:
            command = (sys.executable, str(REPO / "scripts" / exe))
        self.proc = subprocess.Popen(
            [
                *command,
                "--ros-args",
                "-r",
                f"__node:={name}",
                *(arg for path in (*base_files, self.params_file) for arg in ("--params-file", str(path))),
            ],
            cwd=REPO if cwd is None else cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (only calls prctl before exec)
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def proc_status(self, field: str) -> int:
        """A number from /proc/<pid>/status, e.g. ``Threads`` or ``VmRSS`` (kB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> int:
        """SIGINT, as Ctrl-C or ``ros2 launch`` does; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Peer:
    """An rclpy node in this process, spun by a background thread, that records what it receives."""

    def __init__(self, name: str = "panoptic_test_peer") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.received: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self.publishers: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # subscriptions

    def listen(self, topic: str, msg_type: type, qos: QoSProfile = RELIABLE) -> None:
        def store(msg: Any) -> None:
            with self.lock:
                self.received[topic].append((time.monotonic(), msg))

        self.node.create_subscription(msg_type, topic, store, qos)

    def listen_outputs(self, namespace: str, outputs: Iterable[str] = OUTPUT_TYPES) -> None:
        for name in outputs:
            self.listen(f"{namespace}/panoptic/{name}", OUTPUT_TYPES[name])

    def messages(self, topic: str) -> list[Any]:
        with self.lock:
            return [m for _, m in self.received[topic]]

    def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT_S, *, quiet: bool = False
    ) -> None:
        """Wait until ``condition()``; an AssertionError after ``timeout`` (with ``quiet``, return)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        if not quiet:
            raise AssertionError(f"timed out ({timeout:.0f} s bound) waiting for {what}")

    def wait_stamp(self, topic: str, stamp: int, timeout: float = WAIT_S) -> Any:
        """The message of ``topic`` with header stamp ``stamp`` (waits for it)."""
        found: list[Any] = []

        def arrived() -> bool:
            found[:] = [m for m in self.messages(topic) if stamp_of(m) == stamp]
            return bool(found)

        self.wait_for(arrived, f"{topic} at stamp {stamp}", timeout)
        return found[0]

    # publishing

    def publisher(self, topic: str, msg_type: type, qos: QoSProfile = RELIABLE) -> Any:
        if topic not in self.publishers:
            self.publishers[topic] = self.node.create_publisher(msg_type, topic, qos)
        return self.publishers[topic]

    def wait_matched(self, topic: str, count: int = 1) -> None:
        pub = self.publishers[topic]
        self.wait_for(lambda: pub.get_subscription_count() >= count, f"a subscriber on {topic}")

    def publish(self, topic: str, msg: Any) -> None:
        self.publishers[topic].publish(msg)

    # services

    def _call(
        self, srv_type: type, name: str, request: Any, *, silent: Callable[[], Any] | None = None
    ) -> Any:
        """The reply to ``request``. A reply can be lost: a server that answers before its reply writer
        has matched this new client's reader drops it (rmw_fastrtps waits only briefly for the match,
        and discovery is slow on a loaded machine). After :data:`REPLY_S` without one, ``silent()``
        says what to do: :data:`RESEND` the request, :data:`WAIT` on, or a reply to return in its
        place (None: resend, for requests that may be repeated); up to :data:`WAIT_S` in all."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=WAIT_S):
                raise AssertionError(f"service {name} never appeared")
            deadline = time.monotonic() + WAIT_S
            future = client.call_async(request)
            while True:
                left = deadline - time.monotonic()
                self.wait_for(future.done, f"a reply from {name}", min(REPLY_S, left), quiet=left > REPLY_S)
                if future.done():
                    return future.result()
                decision = RESEND if silent is None else silent()
                if decision is RESEND:
                    future = client.call_async(request)
                elif decision is not WAIT:
                    return decision
        finally:
            self.node.destroy_client(client)

    def transition(self, node: str, transition_id: int) -> bool:
        """Ask for a lifecycle transition; whether it succeeded. Without a reply, the node's state
        decides: in the transition's goal state, it succeeded; resting in another primary state, the
        request is sent again (a failed transition leaves the state it started from, so the same
        request gets the same answer); in a transition state, the wait goes on."""
        request = ChangeState.Request()
        request.transition = Transition(id=transition_id)
        goal = _GOAL_STATE.get(transition_id)
        resent = False

        def silent() -> Any:
            nonlocal resent
            state = self.lifecycle_state(node)
            if state == goal:
                return ChangeState.Response(success=True)
            if state in _PRIMARY_STATES:
                resent = True
                return RESEND
            return WAIT

        success = bool(self._call(ChangeState, f"/{node}/change_state", request, silent=silent).success)
        if resent and not success:  # the first request may have made the transition, its reply lost
            return self.lifecycle_state(node) == goal
        return success

    def lifecycle_state(self, node: str) -> str:
        return self._call(GetState, f"/{node}/get_state", GetState.Request()).current_state.label

    def set_parameters(self, node: str, values: dict[str, Any]) -> list[Any]:
        """Set parameters through the node's service; returns one ``SetParametersResult`` per value."""
        request = SetParameters.Request()
        request.parameters = [ParameterMsg(name=k, value=_parameter_value(v)) for k, v in values.items()]
        return list(self._call(SetParameters, f"/{node}/set_parameters", request).results)

    # diagnostics

    def diagnostics(self, node: str, camera: str) -> dict[str, str]:
        """The key/values of the newest ``/diagnostics`` status of ``camera``."""
        for msg in reversed(self.messages("/diagnostics")):
            for status in msg.status:
                if status.name == f"{node}: {camera}":
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def listen_diagnostics(self) -> None:
        self.listen("/diagnostics", DiagnosticArray)

    def wait_diagnostics(
        self, node: str, camera: str, condition: Callable[[dict[str, str]], bool], what: str
    ) -> dict:
        self.wait_for(lambda: condition(self.diagnostics(node, camera)), what)
        return self.diagnostics(node, camera)


def _parameter_value(value: Any) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))


def camera_info(width: int, height: int, stamp_ns: int, frame_id: str = "camera_optical") -> CameraInfo:
    f = 0.8 * width
    msg = CameraInfo(
        header=header(stamp_ns, frame_id), width=width, height=height, distortion_model="plumb_bob"
    )
    msg.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    msg.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
