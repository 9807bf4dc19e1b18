"""INT8 companions of ONNX models, for ONNX Runtime on the CPU: made once, checked at every load.

A model ``M.onnx`` may have an INT8 companion ``M.int8.onnx`` next to it: the same network quantized
statically in QDQ form (weights int8 per output channel, activations uint8 with ranges measured on
calibration frames, each covering the 99.999th percentile of its values). The regression heads
(center heatmap, offsets) and the last convolution before every output stay float32
(:func:`float_convolutions`): about 9 % of the shipped network's multiply-adds. On a CPU with 8-bit
dot-product instructions (VNNI) ONNX Runtime runs such a network in about half the time of the
float one.

The companion records, under the metadata key :data:`PROVENANCE_KEY`, the SHA-256 of the float file
it was made from and how it was calibrated. :func:`current_companion` accepts a companion only when
that hash matches the float file beside it, so a retrained or replaced model never runs with stale
INT8 weights. The model's spec (``panoptic_ros.spec``) is copied unchanged.

ONNX Runtime's quantization tools are imported only by :func:`quantize_int8`.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.calibration import CalibrationError
from panoptic_ros.backends.engine_cache import EngineCacheError, atomic_write_bytes
from panoptic_ros.backends.engine_key import sha256_file
from panoptic_ros.core.preprocess import Preprocessor
from panoptic_ros.errors import ImageDecodeError
from panoptic_ros.models.spec import load_spec

log = logging.getLogger(__name__)

#: ONNX metadata key of the companion's provenance (JSON of :class:`Int8Provenance`).
PROVENANCE_KEY = "panoptic_ros.int8"
#: The suffix that turns ``M.onnx`` into its companion's name.
COMPANION_SUFFIX = ".int8.onnx"
#: Activation ranges cover this percentile of the calibration values (both tails): min/max ranges
#: let a few extreme activations coarsen the steps of all the others.
CALIBRATION_PERCENTILE = 99.999
#: Calibration frames used when the caller gives no count.
DEFAULT_CALIBRATION_FRAMES = 64


@dataclass(frozen=True)
class Int8Provenance:
    """What an INT8 companion was made from.

    Attributes:
        float_sha256: SHA-256 of the float ONNX file that was quantized.
        float_name: that file's name (for messages only).
        calibration: where the calibration frames came from, in words.
        frames: how many calibration frames were used.
        float_nodes: names of the nodes left in float32 (the output heads' last convolutions).
    """

    float_sha256: str
    float_name: str
    calibration: str
    frames: int
    float_nodes: tuple[str, ...]


@dataclass(frozen=True)
class QuantizeResult:
    """The written companion and its provenance."""

    path: Path
    provenance: Int8Provenance


def companion_path(model: Path) -> Path:
    """Where ``M.onnx``'s INT8 companion lies: ``M.int8.onnx`` in the same folder."""
    model = Path(model)
    return model.with_name(model.stem + COMPANION_SUFFIX)


def read_provenance(path: Path) -> Int8Provenance | None:
    """The provenance stored in an ONNX file, or None when it has none (not a companion).

    Raises:
        BackendError: the file cannot be read as ONNX, or its provenance is malformed.
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, OSError, ... for unreadable files
        raise BackendError(f"cannot read {path} as an ONNX model: {err}") from err
    raw = next((p.value for p in proto.metadata_props if p.key == PROVENANCE_KEY), None)
    if raw is None:
        return None
    try:
        fields = json.loads(raw)
        return Int8Provenance(
            float_sha256=str(fields["float_sha256"]),
            float_name=str(fields["float_name"]),
            calibration=str(fields["calibration"]),
            frames=int(fields["frames"]),
            float_nodes=tuple(str(n) for n in fields["float_nodes"]),
        )
    except (ValueError, KeyError, TypeError) as err:
        raise BackendError(f"{path}: its {PROVENANCE_KEY!r} metadata is malformed ({err})") from err


class CompanionCheck(NamedTuple):
    """What lies next to a model: a usable INT8 companion, or why the file there cannot be used."""

    path: Path | None
    #: why a companion file that exists cannot be used ("" when it is usable or when there is none)
    problem: str


def remedy(model: Path) -> str:
    """The command that makes a fresh companion for ``model``."""
    return f"make one with: panoptic-ros quantize {model} --calib IMAGES_OR_BAG"


def current_companion(model: Path) -> CompanionCheck:
    """``model``'s INT8 companion when it exists and was made from this very file."""
    model = Path(model)
    path = companion_path(model)
    if not path.is_file():
        return CompanionCheck(None, "")
    provenance = read_provenance(path)
    if provenance is None:
        return CompanionCheck(
            None, f"{path} carries no {PROVENANCE_KEY!r} metadata, so it is no INT8 companion"
        )
    try:
        digest = sha256_file(model)
    except EngineCacheError as err:
        raise BackendError(str(err)) from err
    if provenance.float_sha256 != digest:
        return CompanionCheck(None, f"{path} was made from another version of {model.name} (SHA-256 differs)")
    return CompanionCheck(path, "")


def _reachable_outputs(graph: Any) -> dict[str, frozenset[str]]:
    """For every value of ``graph``, the graph outputs it feeds."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    memo: dict[str, frozenset[str]] = {}

    def reach(value: str) -> frozenset[str]:
        if value not in memo:
            found = {value} if value in outputs else set()
            for node in consumers.get(value, ()):
                for out in node.output:
                    found |= reach(out)
            memo[value] = frozenset(found)
        return memo[value]

    for node in graph.node:
        for out in node.output:
            reach(out)
    return memo


def float_convolutions(graph: Any, label_outputs: Iterable[str] = ("semantic",)) -> list[str]:
    """The convolutions an INT8 companion keeps in float32, in graph order.

    - the last convolution before each graph output (followed back along first inputs through nodes
      that only resample or reshape): logits, heatmaps and offsets keep their resolution;
    - every convolution that feeds only one output which is not in ``label_outputs``: the regression
      heads (center heatmap, offsets), where an error of a fraction of a pixel or a peak near the
      threshold moves instance boundaries, while a class decided by an argmax is robust to it.
    """
    producer = {out: node for node in graph.node for out in node.output}
    last: set[str] = set()
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type != "Conv":
            node = producer.get(node.input[0]) if node.input else None
        if node is not None:
            last.add(node.name)
    labels = set(label_outputs)
    reach = _reachable_outputs(graph)
    names = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        feeds = reach.get(node.output[0], frozenset())
        if node.name in last or (len(feeds) == 1 and not feeds <= labels):
            names.append(node.name)
    return names


def _check_names_kept(prepared: Path, float_nodes: Iterable[str]) -> None:
    """The graph optimizer must leave the convolutions to keep in float under their names (the
    quantizer finds them by name)."""
    import onnx

    convs = {node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"}
    lost = [name for name in float_nodes if name not in convs]
    if lost:
        raise BackendError(
            f"ONNX Runtime's graph optimizer renamed or fused the convolutions {lost}, which must stay "
            "float32; quantizing without them would change the model's regression heads"
        )


def _preprocessed(frames: Iterable[np.ndarray], model: Path) -> Iterator[np.ndarray]:
    """Each RGB frame as the pipeline feeds it to the network: ``1 x 3 x H x W`` float32."""
    preprocess = Preprocessor(load_spec(model).input, torch.device("cpu"))
    for frame in frames:
        batch, _ = preprocess([frame], order="rgb")
        yield batch.contiguous().numpy()


def quantize_int8(
    model: Path,
    frames: Iterable[np.ndarray],
    *,
    calibration: str,
    out: Path | None = None,
    echo: Callable[[str], None] = log.info,
) -> QuantizeResult:
    """Write ``model``'s INT8 companion (to ``out``, default :func:`companion_path`).

    Args:
        model: the float ONNX model, with its spec.
        frames: calibration frames, ``H x W x 3`` uint8 RGB of any size (preprocessed here as the
            pipeline does); a few dozen representative camera frames (:data:`DEFAULT_CALIBRATION_FRAMES`).
        calibration: where the frames came from, in words (stored in the provenance).
        out: the companion's path.
        echo: progress messages.

    Raises:
        CalibrationError: ``frames`` is empty.
        BackendError: ONNX Runtime's quantization tools are missing or fail.
    """
    import onnx

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise BackendError(f"INT8 quantization needs onnxruntime's quantization tools: {err}") from err

    model = Path(model)
    out = Path(out) if out is not None else companion_path(model)
    spec = load_spec(model)
    input_name = spec.input.name
    counted: list[int] = [0]
    batches = _preprocessed(frames, model)
    first = next(batches, None)
    if first is None:
        raise CalibrationError("no calibration frames were given; INT8 ranges cannot be measured")
    batches = itertools.chain([first], batches)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            counted[0] += 1
            return {input_name: batch}

    float_nodes = float_convolutions(onnx.load(str(model)).graph, [spec.outputs.get("semantic", "semantic")])
    echo(f"quantizing {model.name}; kept in float32: {', '.join(float_nodes) or 'nothing'}")
    with tempfile.TemporaryDirectory(prefix="panoptic_int8_") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        try:
            # graph optimizations only: ONNX Runtime's symbolic shape inference cannot read every
            # exporter's Constant nodes, and the model's shapes are fixed apart from the batch
            quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
            _check_names_kept(prepared, float_nodes)
            quantize_static(
                str(prepared),
                str(quantized),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                nodes_to_exclude=float_nodes,
                extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
            )
        except (CalibrationError, ImageDecodeError, BackendError):
            raise
        except Exception as err:  # onnxruntime's tools raise many types (RuntimeError, ValueError, ...)
            raise BackendError(f"quantizing {model} failed: {err}") from err
        proto = onnx.load(str(quantized))
    provenance = Int8Provenance(
        float_sha256=sha256_file(model),
        float_name=model.name,
        calibration=calibration,
        frames=counted[0],
        float_nodes=tuple(float_nodes),
    )
    kept = {p.key: p.value for p in proto.metadata_props if not p.key.startswith("onnx.")}
    kept[PROVENANCE_KEY] = json.dumps(asdict(provenance))
    del proto.metadata_props[:]
    for key, value in kept.items():
        proto.metadata_props.add(key=key, value=value)
    try:
        atomic_write_bytes(out, proto.SerializeToString())
    except EngineCacheError as err:
        raise BackendError(str(err)) from err
    echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {counted[0]} calibration frames)")
    return QuantizeResult(out, provenance)
