"""``check_onnx`` on an exported model (clean) and on hand-built graphs TensorRT handles badly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from panoptic_ros.models.export import export_onnx
from panoptic_ros.models.onnx_check import OnnxCheckError, OnnxReport, check_onnx
from panoptic_ros.models.onnx_rules import Finding
from panoptic_ros.models.train import TrainConfig, network, synthetic_model_spec


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    spec = synthetic_model_spec(TrainConfig(width=8))
    spec = replace(spec, input=replace(spec.input, height=64, width=128, max_batch=3))
    return export_onnx(
        network(TrainConfig(width=8)).eval(), spec, tmp_path_factory.mktemp("m") / "small.onnx"
    )


def save(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    *,
    initializers: list[onnx.TensorProto] | None = None,
    opset: int = 17,
    extra_opsets: dict[str, int] | None = None,
    name: str = "model.onnx",
) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    imports = [helper.make_opsetid("", opset)] + [
        helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()
    ]
    model = helper.make_model(graph, opset_imports=imports, producer_name="test")
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def image(name: str = "x", shape: tuple[int | str, ...] = ("N", 3, 8, 8)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def codes(report: OnnxReport, severity: str) -> list[str]:
    return [f.code for f in report.findings if f.severity == severity]


def only(report: OnnxReport, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code]


def test_exported_model_is_clean(exported: Path) -> None:
    report = check_onnx(exported)
    assert report.ok and not report.errors and not report.warnings, report.table()
    assert report.opset == 18 and report.ir_version >= 8
    assert [(t.name, t.dtype, t.shape) for t in report.inputs] == [("image", "float", ("batch", 3, 64, 128))]
    assert [t.name for t in report.outputs] == ["semantic", "center", "offset"]
    assert report.outputs[0].shape == ("batch", 8, 64, 128)
    # upsampling: two in the decoder, one to stride 2 and one per head (semantic_stride 2)
    assert report.op_counts["Conv"] > 10 and report.op_counts["Resize"] == 6
    proto = onnx.load(str(exported))
    assert sum(report.op_counts.values()) == len(proto.graph.node)
    assert any(f.code == "dynamic-dim" and "dynamic batch" in f.message for f in report.findings)
    table = report.table()
    assert "0 errors, 0 warnings" in table and "[batch, 3, 64, 128]" in table and "Conv" in table
    data = json.loads(report.to_json())
    assert data["opset"] == 18 and data["inputs"][0]["shape"] == ["batch", 3, 64, 128]
    assert data["op_counts"] == report.op_counts


def test_custom_domain_op_is_an_error(tmp_path: Path) -> None:
    nodes = [helper.make_node("FancyUpsample", ["x"], ["y"], name="fancy", domain="com.example")]
    path = save(tmp_path, nodes, [image()], [image("y")], extra_opsets={"com.example": 1})
    report = check_onnx(path)
    [finding] = only(report, "custom-op")
    assert finding.severity == "error" and finding.node == "fancy"
    assert "'com.example'" in finding.message and "plugin" in finding.message
    assert report.op_counts == {"com.example:FancyUpsample": 1}
    assert not report.ok
    assert "ERROR" in report.table() and "[node fancy]" in report.table()


def test_nonzero_is_data_dependent_and_its_int64_output_is_flagged(tmp_path: Path) -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="nz")]
    out = helper.make_tensor_value_info("idx", TensorProto.INT64, [4, "nnz"])
    report = check_onnx(save(tmp_path, nodes, [image()], [out]))
    [dd] = only(report, "data-dependent-shape")
    assert dd.severity == "warning" and dd.node == "nz" and "NonZero" in dd.message
    int64 = only(report, "int64")
    assert any(f.severity == "warning" and "graph output 'idx' is INT64" in f.message for f in int64)
    assert any(f.code == "dynamic-dim" and "'idx' dimension 1 ('nnz')" in f.message for f in report.warnings)
    assert report.ok  # TensorRT parses it, it is just a bad idea


def test_int64_output_and_weights_but_not_shape_constants(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("ArgMax", ["x"], ["labels"], axis=1, keepdims=0, name="argmax"),
        helper.make_node("Add", ["labels", "bias"], ["shifted"], name="add"),
        helper.make_node("Reshape", ["shifted", "shape"], ["out"], name="reshape"),
    ]
    inits = [
        numpy_helper.from_array(np.arange(64, dtype=np.int64).reshape(1, 8, 8) * 2**33, "bias"),
        numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
    ]
    out = helper.make_tensor_value_info("out", TensorProto.INT64, ["N", 64])
    report = check_onnx(save(tmp_path, nodes, [image()], [out], initializers=inits))
    messages = [f.message for f in only(report, "int64") if f.severity == "warning"]
    assert any("graph output 'out' is INT64" in m for m in messages)
    assert any(
        "initializer 'bias' holds 64 INT64 values" in m and "outside the INT32 range" in m for m in messages
    )
    assert not any("'shape'" in m for m in messages)  # Reshape's shape operand is INT64 by definition
    assert any(f.severity == "info" and "intermediate" in f.message for f in only(report, "int64"))
    assert [t.name for t in report.inputs] == ["x"]  # initializers are not listed as inputs


def test_unbounded_dynamic_height_is_an_error(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    x = image("x", ("N", 3, "height", 64))
    report = check_onnx(save(tmp_path, nodes, [x], [image("y", ("N", 3, "height", 64))]))
    dims = only(report, "dynamic-dim")
    errors = [f for f in dims if f.severity == "error"]
    assert len(errors) == 1 and "dimension 2 is dynamic ('height')" in errors[0].message
    assert "fixed input size" in errors[0].message
    assert any(f.severity == "info" and "dynamic batch ('N')" in f.message for f in dims)
    # an output dimension named after an input dimension is fine; only 'height' is reported, once
    assert not [f for f in dims if f.severity == "warning"]
    assert not report.ok


@pytest.mark.parametrize(
    ("opset", "severity"), [(7, "error"), (11, "warning"), (13, None), (18, None), (21, "warning")]
)
def test_opset_range(tmp_path: Path, opset: int, severity: str | None) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    report = check_onnx(save(tmp_path, nodes, [image()], [image("y")], opset=opset))
    found = only(report, "opset")
    assert [f.severity for f in found] == ([severity] if severity else [])
    assert report.opset == opset


def test_unsupported_and_control_flow_ops(tmp_path: Path) -> None:
    flat = helper.make_tensor_value_info("v", TensorProto.FLOAT, [10])
    nodes = [helper.make_node("Unique", ["v"], ["u"], name="uniq")]
    report = check_onnx(
        save(tmp_path, nodes, [flat], [helper.make_tensor_value_info("u", TensorProto.FLOAT, None)])
    )
    [finding] = only(report, "unsupported-op")
    assert finding.severity == "error" and finding.node == "uniq"
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["z"], name="inner")], "b", [], [image("z")])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")]
    report = check_onnx(save(tmp_path, nodes, [cond, image()], [image("y")], name="if.onnx"))
    assert [f.severity for f in only(report, "control-flow")] == ["info"]
    assert report.op_counts == {"If": 1, "Relu": 2}  # subgraph nodes are counted


def test_resize_modes(tmp_path: Path) -> None:
    roi = numpy_helper.from_array(np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.float32), "roi")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [
        helper.make_node(
            "Resize",
            ["x", "roi", "scales"],
            ["y"],
            mode="linear",
            name="crop",
            coordinate_transformation_mode="tf_crop_and_resize",
        ),
        helper.make_node("Resize", ["y", "", "scales"], ["z"], mode="linear", antialias=1, name="aa"),
        helper.make_node(
            "Resize",
            ["x", "", "scales"],
            ["w"],
            mode="linear",
            name="plain",
            coordinate_transformation_mode="half_pixel",
        ),
    ]
    outs = [image("z", ("N", 3, 32, 32)), image("w", ("N", 3, 16, 16))]
    report = check_onnx(save(tmp_path, nodes, [image()], outs, initializers=[roi, scales], opset=18))
    resize = only(report, "resize")
    assert sorted(f.node for f in resize) == ["aa", "crop"]
    assert all(f.severity == "warning" for f in resize)


def test_float64_and_external_data(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((1, 3, 8, 8)), "w")  # float64
    nodes = [
        helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "w32"], ["y"]),
    ]
    path = save(tmp_path, nodes, [image()], [image("y")], initializers=[weights])
    report = check_onnx(path)
    assert [f.severity for f in only(report, "float64")] == ["warning"]
    assert report.weight_bytes == 3 * 8 * 8 * 8
    model = onnx.load(str(path))
    external = tmp_path / "external.onnx"
    onnx.save(model, str(external), save_as_external_data=True, location="external.data", size_threshold=0)
    report = check_onnx(external)
    assert [f.severity for f in only(report, "external-data")] == ["info"]
    assert report.weight_bytes == 3 * 8 * 8 * 8


def test_checker_failures_and_unreadable_files(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["missing"], ["y"], name="dangling")]
    report = check_onnx(save(tmp_path, nodes, [image()], [image("y")]))
    assert [f.severity for f in only(report, "checker")] == ["error"]
    assert "missing" in only(report, "checker")[0].message
    with pytest.raises(OnnxCheckError, match="does not exist"):
        check_onnx(tmp_path / "nothing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00 definitely not protobuf")
    with pytest.raises(OnnxCheckError, match="not a readable ONNX model"):
        check_onnx(tmp_path / "junk.onnx")
