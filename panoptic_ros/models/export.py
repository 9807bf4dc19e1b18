"""Export a PyTorch panoptic network to ONNX with its model spec embedded.

The exported graph has BatchNorm folded into the convolutions (see
:func:`~panoptic_ros.models.center_offset_net.fuse_batchnorm`), a dynamic batch dimension up to
``spec.input.max_batch`` and a fixed image size, and opset 18. After export the file is checked
with ``onnx.checker`` and run once with ONNX Runtime against PyTorch on the same input.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from panoptic_ros.errors import PanopticRosError
from panoptic_ros.models.center_offset_net import fuse_batchnorm
from panoptic_ros.models.spec import ModelSpec, embed_spec

OPSET = 18
#: Largest absolute difference between ONNX Runtime and PyTorch outputs accepted after export.
EXPORT_TOLERANCE = 1e-3


class ExportError(PanopticRosError, RuntimeError):
    """The export failed or its result does not match the PyTorch module."""


def export_onnx(model: nn.Module, spec: ModelSpec, out: Path, *, check: bool = True) -> Path:
    """Write ``model`` (in eval mode) as ONNX with ``spec`` embedded; returns ``out``.

    The output names are those of ``spec.outputs`` in the module's output order.
    """
    module = fuse_batchnorm(copy.deepcopy(model).eval().cpu())
    h, w = spec.input.height, spec.input.width
    example = torch.zeros(min(2, spec.input.max_batch), 3, h, w)
    output_names = list(spec.outputs.values())
    batch = torch.export.Dim("batch", min=1, max=max(spec.input.max_batch, 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                module,
                (example,),
                str(staging),
                input_names=[spec.input.name],
                output_names=output_names,
                opset_version=OPSET,
                # the graph optimizer would merge identical initializers (e.g. all-zero biases) under
                # one name; BatchNorm is already folded, so the plain graph keeps every parameter name
                optimize=False,
                dynamo=True,
                external_data=False,
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
        except Exception as err:  # the exporter raises many types; report them as one
            raise ExportError(
                f"ONNX export of {type(model).__name__} failed: {type(err).__name__}: {err}"
            ) from err
        embed_spec(staging, spec)
        if check:
            check_against_torch(staging, module, spec)
        shutil.move(staging, out)
    return out


def check_against_torch(onnx_path: Path, module: nn.Module, spec: ModelSpec, *, seed: int = 0) -> float:
    """Run the ONNX file with ONNX Runtime and ``module`` on the same random batch; returns the largest
    absolute output difference, raising :class:`ExportError` above :data:`EXPORT_TOLERANCE`."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(onnx_path))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, spec.input.height, spec.input.width, generator=gen)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(spec.outputs.values()), {spec.input.name: x.numpy()})
    with torch.no_grad():
        expected = module(x)
    worst = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))
    if worst > EXPORT_TOLERANCE:
        raise ExportError(
            f"{onnx_path}: ONNX Runtime differs from PyTorch by {worst:.2e} (> {EXPORT_TOLERANCE})"
        )
    return worst
