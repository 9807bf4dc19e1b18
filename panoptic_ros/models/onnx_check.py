"""``panoptic-ros check-onnx``: what is in an ONNX model, and what TensorRT 10 will make of it.

:func:`check_onnx` needs only the ``onnx`` package: it reads the graph (without loading external
weight files), runs ONNX shape inference, counts operators and reports findings, each with a
severity (``error``: TensorRT or this package's engine builder will fail; ``warning``: it works badly
or differently; ``info``: worth knowing). The rules encode what is well established about the
TensorRT 10 ONNX parser (onnx-tensorrt's operator list and release notes), assuming TensorRT 10.0
to 10.x:

=======================  =========  ==============================================================
rule                     severity   why
=======================  =========  ==============================================================
opset < 9                error      the TensorRT 10 parser reads opsets 9 and newer
opset 9..12              warning    old operator versions (e.g. Resize, Split, Squeeze attributes)
opset > 20               warning    newer than the opset range the parser was written for (9..20)
op outside the default   error      a custom op; TensorRT needs a plugin registered under its
ONNX domain                         name, else parsing fails
op not in the parser     error      sequence, optional and string ops, TfIdfVectorizer,
                                    ImageDecoder, Unique: listed unsupported by onnx-tensorrt
NonZero,                 warning    output size depends on the data: supported, but it forces
NonMaxSuppression                   data-dependent shapes, is slow, and as a graph output needs
                                    an output allocator the tensorrt backend does not implement
Loop, Scan, If           info       supported, but run step by step; unroll where possible
INT64 graph I/O and      warning    TensorRT 8 casts INT64 down to INT32 (with a warning);
INT64 weight data                   TensorRT 10 has INT64 in only some layers: INT32 is portable
FLOAT64 tensors          warning    TensorRT has no float64 type
dynamic non-batch        error      ONNX carries no bounds; the engine builder sets an
input dimension                     optimization profile for the batch only
output dimension not     warning    may be data-dependent (see NonZero)
known after inference
Resize tf_crop_and_      warning    TensorRT's resize layer has no crop-and-resize coordinates
resize / antialias=1                nor antialiasing; the parser rejects it or results differ
external data, > 2 GB    info/err   weights must stay next to the .onnx; over 2 GB they must be
                                    external (protobuf's limit)
=======================  =========  ==============================================================

Shape and index operands that ONNX defines as INT64 (Reshape's shape, Slice's starts, axes, ...)
are not flagged: TensorRT handles those as shape tensors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from panoptic_ros.errors import PanopticRosError

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

#: the TensorRT release the rules assume
ASSUMED_TENSORRT = "10.x"
MIN_PARSER_OPSET = 9
MIN_RECOMMENDED_OPSET = 13
MAX_PARSER_OPSET = 20
#: protobuf cannot hold a model file over 2 GiB: larger models store weights as external data
PROTOBUF_LIMIT = 2**31

DEFAULT_DOMAINS = ("", "ai.onnx")

#: operators the TensorRT 10 ONNX parser does not implement (onnx-tensorrt docs/operators.md)
UNSUPPORTED_OPS: dict[str, str] = {
    **{
        op: "sequence types are not supported by TensorRT"
        for op in (
            "ConcatFromSequence",
            "SequenceAt",
            "SequenceConstruct",
            "SequenceEmpty",
            "SequenceErase",
            "SequenceInsert",
            "SequenceLength",
            "SequenceMap",
            "SplitToSequence",
        )
    },
    **{
        op: "optional types are not supported by TensorRT"
        for op in ("Optional", "OptionalGetElement", "OptionalHasElement")
    },
    **{
        op: "string tensors are not supported by TensorRT"
        for op in ("StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch")
    },
    "TfIdfVectorizer": "not implemented by the TensorRT ONNX parser",
    "ImageDecoder": "not implemented by the TensorRT ONNX parser; decode images before the network",
    "Unique": "not implemented by the TensorRT ONNX parser (its output size depends on the data)",
}

#: operators whose output size depends on the values of their inputs
DATA_DEPENDENT_OPS: dict[str, str] = {
    "NonZero": "its output size depends on the data",
    "NonMaxSuppression": "its output size depends on the data; run NMS after the network instead",
}

#: control flow: supported, but executed iteration by iteration
CONTROL_FLOW_OPS = ("Loop", "Scan", "If")

#: (op type, input index) operands that ONNX defines as shapes, axes or indices (INT64 by design)
_SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Resize": (3,),
    "Slice": (1, 2, 3, 4),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "Pad": (1, 3),
    "Split": (1,),
    "TopK": (1,),
    "Gather": (1,),
    "GatherElements": (1,),
    "GatherND": (1,),
    "ScatterElements": (1,),
    "ScatterND": (1,),
    "OneHot": (0, 1),
    "Range": (0, 1, 2),
    "Trilu": (1,),
    "CumSum": (1,),
    "NonMaxSuppression": (2,),
    "RoiAlign": (2,),
    "Loop": (0,),
    "ReverseSequence": (1,),
    **{
        op: (1,)
        for op in (
            "ReduceMean",
            "ReduceSum",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceSumSquare",
        )
    },
}
#: INT64 initializers with more elements than this are weight data, not shape constants
INT64_SHAPE_CONSTANT_LIMIT = 16


class OnnxCheckError(PanopticRosError, ValueError):
    """The file cannot be checked at all (missing, or not an ONNX model)."""


@dataclass(frozen=True)
class Finding:
    """One observation: ``severity``, a ``code`` (rule name), the ``message``, and the node concerned."""

    severity: Severity
    code: str
    message: str
    node: str = ""


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


@dataclass(frozen=True)
class OnnxReport:
    """What :func:`check_onnx` found; :meth:`table` for people, :meth:`to_json` for programs."""

    path: str
    file_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: tuple[TensorSummary, ...]
    outputs: tuple[TensorSummary, ...]
    op_counts: dict[str, int]
    weight_bytes: int
    findings: tuple[Finding, ...]

    @property
    def opset(self) -> int:
        """The default-domain opset (0 when the model imports none)."""
        return max((v for k, v in self.opsets.items() if k in DEFAULT_DOMAINS), default=0)

    def by_severity(self, severity: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return self.by_severity("error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return self.by_severity("warning")

    @property
    def ok(self) -> bool:
        """No errors: TensorRT should parse the model and the engine builder should accept it."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["opset"] = self.opset
        data["assumed_tensorrt"] = ASSUMED_TENSORRT
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def table(self) -> str:
        """A text report for the command line."""
        opsets = ", ".join(f"{k or 'ai.onnx'} {v}" for k, v in sorted(self.opsets.items()))
        lines = [
            f"model     {self.path} ({self.file_bytes / 1e6:.1f} MB, "
            f"weights {self.weight_bytes / 1e6:.1f} MB)",
            f"format    IR version {self.ir_version}, opset {opsets}"
            + (f", producer {self.producer}" if self.producer else ""),
        ]
        width = max((len(t.name) for t in (*self.inputs, *self.outputs)), default=4)
        for title, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            lines.append(f"{title}:")
            lines.extend(f"  {t.name:<{width}}  {t.dtype:<8} {t.shape_text()}" for t in tensors)
        total = sum(self.op_counts.values())
        ops = ", ".join(
            f"{op} {n}" for op, n in sorted(self.op_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        lines.append(f"operators ({total} nodes): {ops}")
        counts = ", ".join(
            f"{len(self.by_severity(s))} {s}{'s' if len(self.by_severity(s)) != 1 else ''}"
            for s in SEVERITIES
        )
        lines.append(f"findings for TensorRT {ASSUMED_TENSORRT}: {counts}")
        if not self.findings:
            lines.append("  none: TensorRT should parse this model as it is")
        code_width = max((len(f.code) for f in self.findings), default=0)
        for finding in sorted(self.findings, key=lambda f: SEVERITIES.index(f.severity)):
            where = f" [node {finding.node}]" if finding.node else ""
            lines.append(
                f"  {finding.severity.upper():<7} {finding.code:<{code_width}}  {finding.message}{where}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    except ValueError:
        return f"type{elem_type}"


def _summary(value_info: Any) -> TensorSummary:
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


def _opset_findings(opsets: dict[str, int]) -> list[Finding]:
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


def _node_findings(graph: Any) -> tuple[Counter[str], list[Finding]]:
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


def _int64_and_float64_findings(graph: Any, inferred: Any) -> list[Finding]:
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
        for position in _SHAPE_OPERANDS.get(node.op_type, ()):
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


def _dimension_findings(
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


def _weights(graph: Any) -> tuple[int, bool]:
    """(bytes of all initializers, whether any is stored as external data)."""
    import numpy as np
    import onnx
    from onnx import TensorProto

    total = 0
    external = False
    for init in graph.initializer:
        count = 1
        for dim in init.dims:
            count *= int(dim)
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 4
        total += count * itemsize
        external = external or init.data_location == TensorProto.EXTERNAL
    return total, external


def check_onnx(path: str | Path) -> OnnxReport:
    """Read the ONNX model at ``path`` and report its interface, operators and TensorRT findings.

    Raises:
        OnnxCheckError: the file does not exist or is not a readable ONNX model.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxCheckError(f"ONNX model {path} does not exist")
    file_bytes = path.stat().st_size
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx/protobuf raise DecodeError, OSError and others for broken files
        hint = " (over 2 GB: store weights as external data)" if file_bytes >= PROTOBUF_LIMIT else ""
        raise OnnxCheckError(
            f"{path} is not a readable ONNX model{hint}: {type(err).__name__}: {err}"
        ) from err
    findings: list[Finding] = []
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        findings.append(Finding("error", "checker", f"the ONNX checker rejects the model: {first}"))
    if proto.functions:
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            proto, check_type=False, strict_mode=False, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, RuntimeError) as err:
        findings.append(Finding("warning", "shape-inference", f"ONNX shape inference failed: {err}"))
        inferred = proto
    graph = inferred.graph
    opsets = {entry.domain: int(entry.version) for entry in proto.opset_import}
    inputs_all = {init.name for init in graph.initializer}
    inputs = tuple(_summary(v) for v in graph.input if v.name not in inputs_all)
    outputs = tuple(_summary(v) for v in graph.output)
    findings.extend(_opset_findings(opsets))
    counts, node_findings = _node_findings(graph)
    findings.extend(node_findings)
    findings.extend(_int64_and_float64_findings(graph, inferred.graph))
    findings.extend(_dimension_findings(inputs, outputs))
    weight_bytes, external = _weights(graph)
    if external:
        findings.append(
            Finding(
                "info",
                "external-data",
                "weights are stored in external data files: keep them next to the .onnx file; "
                "TensorRT finds them when it parses from the file path",
            )
        )
    elif weight_bytes >= PROTOBUF_LIMIT:
        findings.append(
            Finding(
                "error",
                "large-model",
                f"{weight_bytes / 1e9:.1f} GB of weights inside one "
                "protobuf exceed its 2 GB limit: save with external data",
            )
        )
    return OnnxReport(
        path=str(path),
        file_bytes=file_bytes,
        ir_version=int(proto.ir_version),
        opsets=opsets,
        producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p),
        inputs=inputs,
        outputs=outputs,
        op_counts=dict(counts),
        weight_bytes=weight_bytes,
        findings=tuple(findings),
    )
