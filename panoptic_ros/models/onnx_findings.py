"""The TensorRT rules of :mod:`panoptic_ros.models.onnx_rules` applied to an ONNX graph.

This module owns reading a graph for the checker: every node including those of subgraphs, a graph
input or output as a :class:`TensorSummary`, and one function per group of rules that returns its
:class:`~panoptic_ros.models.onnx_rules.Finding` list: the opset (:func:`opset_findings`), the
operators (:func:`node_findings`), INT64 and FLOAT64 tensors (:func:`int64_and_float64_findings`) and
dynamic dimensions (:func:`dimension_findings`). :func:`~panoptic_ros.models.onnx_check.check_onnx`
runs them all and reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from panoptic_ros.models.onnx_rules import (
    ASSUMED_TENSORRT,
    CONTROL_FLOW_OPS,
    DATA_DEPENDENT_OPS,
    DEFAULT_DOMAINS,
    INT64_SHAPE_CONSTANT_LIMIT,
    MAX_PARSER_OPSET,
    MIN_PARSER_OPSET,
    MIN_RECOMMENDED_OPSET,
    SHAPE_OPERANDS,
    UNSUPPORTED_OPS,
    Finding,
)

Dim = int | str | None


@dataclass(frozen=True)
class TensorSummary:
    """A graph input or output: name, element type (``float``, ``int64``, ...) and shape, each
    dimension a number, a symbol (``"batch"``) or None (unknown)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None

    def shape_text(self) -> str:
        if self.shape is None:
            return "(unknown rank)"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    except ValueError:
        return f"type{elem_type}"


def tensor_summary(value_info: Any) -> TensorSummary:
    """The :class:`TensorSummary` of a graph input or output (an ``onnx.ValueInfoProto``)."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return TensorSummary(value_info.name, _dtype_name(tensor_type.elem_type), None)
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(str(dim.dim_param))
        else:
            dims.append(None)
    return TensorSummary(value_info.name, _dtype_name(tensor_type.elem_type), tuple(dims))


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of a graph and of its subgraphs (If/Loop/Scan bodies)."""
    import onnx

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _nodes(sub)


def _node_name(node: Any, index: int) -> str:
    return node.name or f"#{index} {node.op_type}"


def _attribute(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def opset_findings(opsets: dict[str, int]) -> list[Finding]:
    opset = max((v for k, v in opsets.items() if k in DEFAULT_DOMAINS), default=0)
    if opset < MIN_PARSER_OPSET:
        return [
            Finding(
                "error",
                "opset",
                f"opset {opset} is older than the TensorRT {ASSUMED_TENSORRT} parser "
                f"reads ({MIN_PARSER_OPSET}+): re-export with opset 17 or 18",
            )
        ]
    if opset < MIN_RECOMMENDED_OPSET:
        return [
            Finding(
                "warning",
                "opset",
                f"opset {opset} uses old operator versions; re-export with opset "
                f"{MIN_RECOMMENDED_OPSET} or newer (17-18 recommended)",
            )
        ]
    if opset > MAX_PARSER_OPSET:
        return [
            Finding(
                "warning",
                "opset",
                f"opset {opset} is newer than the opsets the TensorRT "
                f"{ASSUMED_TENSORRT} parser was written for ({MIN_PARSER_OPSET}-{MAX_PARSER_OPSET}); "
                "newer operator versions may be rejected: export with opset 17 or 18",
            )
        ]
    return []


def node_findings(graph: Any) -> tuple[Counter[str], list[Finding]]:
    counts: Counter[str] = Counter()
    findings: list[Finding] = []
    for index, node in enumerate(_nodes(graph)):
        name = _node_name(node, index)
        op = node.op_type
        if node.domain not in DEFAULT_DOMAINS:
            counts[f"{node.domain}:{op}"] += 1
            findings.append(
                Finding(
                    "error",
                    "custom-op",
                    f"{op} of domain {node.domain!r} is not a standard ONNX operator: TensorRT needs a "
                    "plugin registered under that name (else parsing fails); replace it with standard ops "
                    "or load the plugin library",
                    name,
                )
            )
            continue
        counts[op] += 1
        if op in UNSUPPORTED_OPS:
            findings.append(Finding("error", "unsupported-op", f"{op}: {UNSUPPORTED_OPS[op]}", name))
        elif op in DATA_DEPENDENT_OPS:
            findings.append(
                Finding(
                    "warning",
                    "data-dependent-shape",
                    f"{op}: {DATA_DEPENDENT_OPS[op]}; TensorRT supports it but it is slow and forces "
                    "data-dependent shapes (and as a graph output needs an output allocator, which the "
                    "tensorrt backend does not implement)",
                    name,
                )
            )
        elif op in CONTROL_FLOW_OPS:
            findings.append(
                Finding(
                    "info",
                    "control-flow",
                    f"{op}: supported by TensorRT, but executed step by step; unroll or remove "
                    "it where the exporter allows",
                    name,
                )
            )
        elif op == "Resize":
            mode = _attribute(node, "coordinate_transformation_mode", "half_pixel")
            if mode == "tf_crop_and_resize":
                findings.append(
                    Finding(
                        "warning",
                        "resize",
                        "Resize with coordinate_transformation_mode='tf_crop_and_resize': TensorRT's "
                        "resize layer has no crop-and-resize coordinates; the parser rejects it or the "
                        "result differs from ONNX Runtime",
                        name,
                    )
                )
            if int(_attribute(node, "antialias", 0)):
                findings.append(
                    Finding(
                        "warning",
                        "resize",
                        "Resize with antialias=1: TensorRT's resize layer does not antialias; the parser "
                        "rejects it or the result differs from ONNX Runtime (antialias in preprocessing "
                        "instead)",
                        name,
                    )
                )
    return counts, findings


def int64_and_float64_findings(graph: Any, inferred: Any) -> list[Finding]:
    import onnx
    from onnx import TensorProto

    findings: list[Finding] = []
    for kind, tensors in (("input", graph.input), ("output", graph.output)):
        for tensor in tensors:
            elem = tensor.type.tensor_type.elem_type
            if elem == TensorProto.INT64:
                findings.append(
                    Finding(
                        "warning",
                        "int64",
                        f"graph {kind} {tensor.name!r} is INT64: TensorRT 8 casts INT64 to INT32 and "
                        "TensorRT 10 supports INT64 in only some layers; make it INT32 (or float) in the "
                        "export",
                        "",
                    )
                )
            elif elem == TensorProto.DOUBLE:
                findings.append(
                    Finding(
                        "warning",
                        "float64",
                        f"graph {kind} {tensor.name!r} is FLOAT64: TensorRT has no float64; export float32",
                        "",
                    )
                )
    shape_operands: set[str] = set()
    for node in _nodes(graph):
        for position in SHAPE_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position]:
                shape_operands.add(node.input[position])
    for init in graph.initializer:
        count = 1
        for dim in init.dims:
            count *= int(dim)
        if (
            init.data_type == TensorProto.INT64
            and init.name not in shape_operands
            and count > INT64_SHAPE_CONSTANT_LIMIT
        ):
            detail = ""
            if init.data_location != TensorProto.EXTERNAL:
                values = onnx.numpy_helper.to_array(init)
                if values.size and (values.max() > 2**31 - 1 or values.min() < -(2**31)):
                    detail = " (and holds values outside the INT32 range, which a cast would clamp)"
            findings.append(
                Finding(
                    "warning",
                    "int64",
                    f"initializer {init.name!r} holds {count} INT64 values{detail}: TensorRT 8 casts INT64 "
                    "weights to INT32 and TensorRT 10 supports INT64 in only some layers; store it as INT32",
                    "",
                )
            )
        elif init.data_type == TensorProto.DOUBLE:
            findings.append(
                Finding(
                    "warning",
                    "float64",
                    f"initializer {init.name!r} is FLOAT64: TensorRT has no float64; store it as float32",
                    "",
                )
            )
    initializers = {init.name for init in graph.initializer}
    intermediate_int64 = [
        v.name
        for v in inferred.value_info
        if v.type.tensor_type.elem_type == TensorProto.INT64 and v.name not in initializers
    ]
    if intermediate_int64:
        findings.append(
            Finding(
                "info",
                "int64",
                f"{len(intermediate_int64)} intermediate tensor(s) are INT64 (e.g. "
                f"{intermediate_int64[0]!r}), usually shape arithmetic, which TensorRT evaluates as shape "
                "tensors",
                "",
            )
        )
    return findings


def dimension_findings(
    inputs: tuple[TensorSummary, ...], outputs: tuple[TensorSummary, ...]
) -> list[Finding]:
    findings: list[Finding] = []
    input_symbols: set[str] = set()
    for tensor in inputs:
        if tensor.shape is None:
            findings.append(
                Finding(
                    "error",
                    "dynamic-dim",
                    f"input {tensor.name!r} has no shape (not even a "
                    "rank): export it with a fixed shape and a dynamic batch",
                    "",
                )
            )
            continue
        for axis, dim in enumerate(tensor.shape):
            if isinstance(dim, int) and dim > 0:
                continue
            if isinstance(dim, str):
                input_symbols.add(dim)
            label = f"{dim!r}" if isinstance(dim, str) else "unknown"
            if axis == 0:
                findings.append(
                    Finding(
                        "info",
                        "dynamic-dim",
                        f"input {tensor.name!r} has a dynamic batch "
                        f"({label}); the engine's profile covers 1..max_batch",
                        "",
                    )
                )
                continue
            findings.append(
                Finding(
                    "error",
                    "dynamic-dim",
                    f"input {tensor.name!r} dimension {axis} is dynamic ({label}) and ONNX carries no "
                    "bounds for it; the engine builder sets an optimization profile for the batch only: "
                    "export with a fixed input size",
                    "",
                )
            )
    for tensor in outputs:
        if tensor.shape is None:
            findings.append(
                Finding(
                    "warning",
                    "dynamic-dim",
                    f"output {tensor.name!r} has no known shape after "
                    "shape inference; if it depends on the data the tensorrt backend cannot "
                    "allocate it",
                    "",
                )
            )
            continue
        for axis, dim in enumerate(tensor.shape[1:], start=1):
            if (isinstance(dim, int) and dim > 0) or (isinstance(dim, str) and dim in input_symbols):
                continue
            label = f"{dim!r}" if isinstance(dim, str) else "unknown"
            findings.append(
                Finding(
                    "warning",
                    "dynamic-dim",
                    f"output {tensor.name!r} dimension {axis} ({label}) is not determined by the input "
                    "shapes after shape inference; if it depends on the data the tensorrt backend cannot "
                    "allocate it",
                    "",
                )
            )
    return findings
