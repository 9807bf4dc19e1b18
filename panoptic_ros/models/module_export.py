"""Export any PyTorch module to ONNX with a model spec, checked by ONNX Runtime against PyTorch.

This module owns the generic export behind ``panoptic-ros export``: :func:`export_module` takes a
module that maps ``spec.input`` to the outputs of ``spec.outputs`` (in order), exports it with a
dynamic batch dimension (``torch.onnx.export(dynamo=True)`` first, the TorchScript exporter as the
fallback; see :data:`Exporter`), embeds the spec, and accepts the file only when
:func:`check_onnx_runtime` finds ONNX Runtime within ``CHECK_ABSOLUTE + CHECK_RELATIVE x (largest
|value| of that output)`` of PyTorch at batch 1 and 2. The transformers checkpoints
(:mod:`panoptic_ros.models.hf_export`) and ``--module`` networks both go through it.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from panoptic_ros.models.export import OPSET, ExportError
from panoptic_ros.models.spec import ModelSpec, embed_spec

log = logging.getLogger(__name__)

#: ONNX Runtime must reproduce PyTorch within ``ABSOLUTE + RELATIVE x (largest |value| of that output)``.
CHECK_ABSOLUTE = 1e-3
CHECK_RELATIVE = 1e-4

Exporter = Literal["auto", "dynamo", "torchscript"]


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_module` (for a transformers checkpoint,
    :func:`~panoptic_ros.models.hf_export.export_transformers`) wrote and how well ONNX Runtime matches
    PyTorch.

    Attributes:
        path: the ONNX file.
        spec: the embedded model spec.
        exporter: ``dynamo`` or ``torchscript``.
        max_error: largest absolute difference per output name over the checked batches.
        label_source: where the thing/stuff split came from (``label_source`` of the spec's provenance).
    """

    path: Path
    spec: ModelSpec
    exporter: str
    max_error: dict[str, float]
    label_source: str


def export_module(
    module: nn.Module, spec: ModelSpec, out: Path, *, exporter: Exporter = "auto"
) -> ExportReport:
    """Export ``module`` (``spec.input`` -> the outputs of ``spec.outputs``, in order) with a dynamic
    batch, embed ``spec``, and check it with ONNX Runtime against PyTorch at batch 1 and 2."""
    module = module.eval().cpu()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    order = ("dynamo", "torchscript") if exporter == "auto" else (exporter,)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "model.onnx"
        for kind in order:
            try:
                _export_graph(module, spec, staging, kind)
                embed_spec(staging, spec)
                errors = check_onnx_runtime(staging, module, spec)
            except ExportError as err:
                failures.append(f"{kind}: {err}")
                log.info("export with %s failed: %s", kind, err)
                continue
            staging.replace(out)
            used = kind
            break
        else:
            raise ExportError("ONNX export failed; " + "; ".join(failures))
    spec = replace(spec, provenance={**spec.provenance, "exporter": used})
    embed_spec(out, spec)
    return ExportReport(
        path=out,
        spec=spec,
        exporter=used,
        max_error=errors,
        label_source=str(spec.provenance.get("label_source", "")),
    )


def _export_graph(module: nn.Module, spec: ModelSpec, path: Path, kind: str) -> None:
    inp = spec.input
    example = torch.zeros(2 if inp.max_batch > 1 else 1, 3, inp.height, inp.width)
    names = list(spec.outputs.values())
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if kind == "dynamo":
                kwargs: dict[str, Any] = {"dynamo": True, "external_data": False, "optimize": True}
                if inp.max_batch > 1:
                    batch = torch.export.Dim("batch", min=1, max=max(inp.max_batch, 2))
                    kwargs["dynamic_shapes"] = ({0: batch},)
            else:
                kwargs = {"dynamo": False}
                if inp.max_batch > 1:
                    kwargs["dynamic_axes"] = {inp.name: {0: "batch"}, **{n: {0: "batch"} for n in names}}
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[inp.name],
                output_names=names,
                opset_version=OPSET,
                verbose=False,
                **kwargs,
            )
    except Exception as err:  # the exporters raise many types; report them as one
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(f"{type(err).__name__}: {first[:300]}") from err


def check_onnx_runtime(path: Path, module: nn.Module, spec: ModelSpec, *, seed: int = 0) -> dict[str, float]:
    """ONNX checker, then ONNX Runtime vs ``module`` on random inputs at batch 1 and 2 (when the
    spec allows 2); returns the largest absolute difference per output.

    Raises:
        ExportError: a difference above ``CHECK_ABSOLUTE + CHECK_RELATIVE x max |output|``.
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnx / onnxruntime raise their own types
        raise ExportError(f"the exported file does not load: {err}") from err
    inp = spec.input
    names = list(spec.outputs.values())
    generator = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys(names, 0.0)
    for batch in sorted({1, min(2, inp.max_batch)}):
        x = torch.randn(batch, 3, inp.height, inp.width, generator=generator)
        try:
            got = session.run(names, {inp.name: x.numpy()})
        except Exception as err:  # onnxruntime raises its own types
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise ExportError(f"ONNX Runtime fails at batch {batch}: {first}") from err
        with torch.no_grad():
            expected = module(x)
        if isinstance(expected, torch.Tensor):
            expected = (expected,)
        for name, g, e in zip(names, got, expected, strict=True):
            reference = e.detach().numpy()
            if g.shape != reference.shape:
                raise ExportError(
                    f"{name}: ONNX Runtime gives shape {g.shape} at batch {batch}, PyTorch {reference.shape}"
                )
            error = float(np.abs(g - reference).max()) if g.size else 0.0
            allowed = CHECK_ABSOLUTE + CHECK_RELATIVE * float(
                np.abs(reference).max() if reference.size else 0.0
            )
            if not error <= allowed:
                raise ExportError(
                    f"{name}: ONNX Runtime differs from PyTorch by {error:.3g} at batch {batch} "
                    f"(allowed {allowed:.3g})"
                )
            worst[name] = max(worst[name], error)
    return worst
