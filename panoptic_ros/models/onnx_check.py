"""``panoptic-ros check-onnx``: what is in an ONNX model, and what TensorRT 10 will make of it.

:func:`check_onnx` needs only the ``onnx`` package: it reads the graph (without loading external
weight files), runs ONNX shape inference, counts operators and reports findings, each with a
severity (``error``: TensorRT or this package's engine builder will fail; ``warning``: it works badly
or differently; ``info``: worth knowing).

This module owns the check and its report (:class:`OnnxReport`, a text table or JSON). The rules
and their table are :mod:`panoptic_ros.models.onnx_rules`; applying them to a graph is
:mod:`panoptic_ros.models.onnx_findings`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from panoptic_ros.errors import PanopticRosError
from panoptic_ros.models.onnx_findings import (
    TensorSummary,
    dimension_findings,
    int64_and_float64_findings,
    node_findings,
    opset_findings,
    tensor_summary,
)
from panoptic_ros.models.onnx_rules import (
    ASSUMED_TENSORRT,
    DEFAULT_DOMAINS,
    PROTOBUF_LIMIT,
    SEVERITIES,
    Finding,
    Severity,
)


class OnnxCheckError(PanopticRosError, ValueError):
    """The file cannot be checked at all (missing, or not an ONNX model)."""


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
    inputs = tuple(tensor_summary(v) for v in graph.input if v.name not in inputs_all)
    outputs = tuple(tensor_summary(v) for v in graph.output)
    findings.extend(opset_findings(opsets))
    counts, by_node = node_findings(graph)
    findings.extend(by_node)
    findings.extend(int64_and_float64_findings(graph, inferred.graph))
    findings.extend(dimension_findings(inputs, outputs))
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
