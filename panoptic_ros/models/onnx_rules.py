"""The TensorRT 10 rules of :func:`~panoptic_ros.models.onnx_check.check_onnx`, as data.

This module owns what is well established about the TensorRT 10 ONNX parser (onnx-tensorrt's
operator list and release notes), assuming TensorRT 10.0 to 10.x: the operator tables, the opset
range, the limits, and the :class:`Finding` record a rule yields, each with a severity (``error``:
TensorRT or this package's engine builder will fail; ``warning``: it works badly or differently;
``info``: worth knowing). :mod:`panoptic_ros.models.onnx_findings` applies the rules to a graph.

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

from dataclasses import dataclass
from typing import Literal

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
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
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


@dataclass(frozen=True)
class Finding:
    """One observation: ``severity``, a ``code`` (rule name), the ``message``, and the node concerned."""

    severity: Severity
    code: str
    message: str
    node: str = ""
