"""Declare the node's parameters from :data:`panoptic_ros.runtime.config.PARAMETERS` with descriptors
(type, description, ranges, choices) in one loop, read them back, and own their run-time changes
(:class:`ParameterChanges`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from panoptic_ros.errors import ConfigError
from panoptic_ros.runtime.config import BY_NAME, PARAMETERS, FusionCheck, NodeConfig, ParamSpec

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of one parameter (ranges are enforced by rclpy itself)."""
    text = spec.description
    if spec.choices:
        text += f" (one of: {', '.join(spec.choices)})"
    if not spec.dynamic:
        text += " [read at configure]"
    out = ParameterDescriptor(name=spec.name, type=_TYPES[spec.value_type], description=text)
    if spec.value_type is float and (spec.minimum is not None or spec.maximum is not None):
        out.floating_point_range = [
            FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
        ]
    elif spec.value_type is int and (spec.minimum is not None or spec.maximum is not None):
        out.integer_range = [
            IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=int(spec.step or 1))
        ]
    return out


def check_overrides(node: Node) -> None:
    """Check the values given at start-up (``-p``, parameter files) against the table before they are
    declared, so a bad one is refused with one line naming the parameter, the value and what is
    allowed, instead of rclpy's exception. An empty list for an optional topic list means "none".

    Raises:
        ConfigError: the first refused value.
    """
    overrides = node._parameter_overrides  # rclpy keeps the start-up values here until declared
    for name, param in list(overrides.items()):
        spec = BY_NAME.get(name)
        if spec is None:
            continue
        value = [] if param.type_ == Parameter.Type.NOT_SET else _python(param)
        if value == [] and spec.value_type is list:
            if name == "image_topics":
                raise ConfigError(
                    "parameter image_topics=[] refused: give at least one camera topic (allowed: a list of "
                    "topic names, e.g. [/camera/image_raw])"
                )
            overrides[name] = Parameter(name, Parameter.Type.STRING_ARRAY, [""])
            continue
        try:
            spec.check(value)
        except ConfigError as err:
            allowed = _allowed(spec)
            raise ConfigError(f"parameter {name}={value!r} refused: {err}{allowed}") from err


def _allowed(spec: ParamSpec) -> str:
    if spec.choices:
        return f" (allowed: {', '.join(spec.choices)})"
    if spec.minimum is not None or spec.maximum is not None:
        return f" (allowed: a {spec.value_type.__name__} in {spec.minimum} .. {spec.maximum})"
    return f" (allowed: a {spec.value_type.__name__})"


def declare_all(node: Node, *, model_fusion: dict[str, Any] | None = None) -> None:
    """Declare every parameter not declared yet. Fusion thresholds (default None in the table) are
    declared only with ``model_fusion`` (the loaded model's defaults), plus any further fusion keys
    that model has."""
    for spec in PARAMETERS:
        if node.has_parameter(spec.name):
            continue
        default = spec.default
        if default is None:
            if model_fusion is None or spec.name.split(".", 1)[1] not in model_fusion:
                continue
            default = spec.value_type(model_fusion[spec.name.split(".", 1)[1]])
        node.declare_parameter(spec.name, default, descriptor(spec))
    for key, value in (model_fusion or {}).items():
        name = f"fusion.{key}"
        if node.has_parameter(name) or value is None or key == "label_divisor":
            continue
        node.declare_parameter(
            name, value, ParameterDescriptor(name=name, description=f"fusion threshold {key} of the model")
        )


def current_values(node: Node) -> dict[str, Any]:
    """``{name: value}`` of every declared parameter of the table and every fusion threshold."""
    known = {p.name for p in PARAMETERS}
    names = [n for n in node.list_parameters([], 0).names if n in known or n.startswith("fusion.")]
    return {param.name: _python(param) for param in node.get_parameters(names)}


def _python(param: Parameter) -> Any:
    value = param.value
    if param.type_ == Parameter.Type.STRING_ARRAY:
        return list(value)
    return value


class ParameterChanges:
    """The node's run-time parameter changes, each parsed and validated once.

    rclpy calls :meth:`check` before a change (a refusal carries the reason back to the caller) and
    :meth:`accept` after it went through; the worker takes the accepted configuration with :meth:`take`
    at its next frame and applies it as it is (``FrameEngine.apply``), without parsing it again.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._candidate: NodeConfig | None = None  # checked, waiting for the change to go through
        self._pending: NodeConfig | None = None  # accepted, waiting for the worker

    def check(
        self, params: Sequence[Parameter], *, configured: bool, fusion: FusionCheck | None
    ) -> SetParametersResult:
        """Refuse a change with a reason: out of range, inconsistent, or read at configure while
        configured."""
        if configured:
            static = [p.name for p in params if p.name in BY_NAME and not BY_NAME[p.name].dynamic]
            if static:
                return SetParametersResult(
                    successful=False,
                    reason=f"{', '.join(static)} is read at configure: deactivate and clean up the node, "
                    "change it, then configure again",
                )
        values = current_values(self._node)
        values.update({p.name: _python(p) for p in params})
        try:
            candidate = NodeConfig.from_values(values, fusion=fusion)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        with self._lock:
            self._candidate = candidate
        return SetParametersResult(successful=True)

    def accept(self, params: Sequence[Parameter], *, configured: bool) -> NodeConfig | None:
        """The change went through: its checked configuration waits for the worker (while configured)
        and is returned, for what the subscription callbacks read at once (``max_input_pixels``)."""
        with self._lock:
            candidate, self._candidate = self._candidate, None
            if not configured or candidate is None:
                return None
            self._pending = candidate
        changes = ", ".join(f"{p.name}={_python(p)!r}" for p in params)
        self._node.get_logger().info(f"parameters changed: {changes}")
        return candidate

    def take(self) -> NodeConfig | None:
        """The accepted configuration not applied yet, or None."""
        with self._lock:
            config, self._pending = self._pending, None
        return config
