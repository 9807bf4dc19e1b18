"""``panoptic-ros build-engine``: build a TensorRT engine ahead of time, e.g. while provisioning a robot.

:func:`build_engine_command` checks the ONNX file for operators TensorRT handles badly
(:func:`~panoptic_ros.models.onnx_check.check_onnx`), then builds the engine with
:func:`~panoptic_ros.backends.trt_builder.build_engine`, printing each phase, and writes it with its
sidecar where :class:`~panoptic_ros.backends.tensorrt_backend.TensorRTBackend` finds it (next to the
ONNX file by default). For INT8 it calibrates from a folder of images or a rosbag2, or reuses the
calibration cache. TensorRT is imported only when the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from panoptic_ros.backends.calibration import DEFAULT_BATCH_SIZE, DEFAULT_MAX_IMAGES, CalibrationData
from panoptic_ros.backends.engine_cache import calibration_cache_path, timing_cache_path, writable_cache_dir
from panoptic_ros.backends.engine_key import Precision, sha256_file
from panoptic_ros.backends.trt_builder import BuildResult, Int8Calibration, build_engine
from panoptic_ros.backends.trt_common import (
    DEFAULT_WORKSPACE_BYTES,
    check_precision,
    cuda_device,
    gpu_identity,
    import_tensorrt,
)
from panoptic_ros.models.spec import load_spec


def build_engine_command(
    onnx: Path,
    out: Path | None,
    precision: Precision = "fp16",
    calib_dir: Path | None = None,
    max_batch: int | None = None,
    *,
    device: str = "cuda",
    max_calib_images: int = DEFAULT_MAX_IMAGES,
    calib_batch: int = DEFAULT_BATCH_SIZE,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    echo: Callable[[str], None] = print,
) -> BuildResult:
    """``panoptic-ros build-engine --onnx M [--out E] [--fp16|--int8 --calib DIR] [--max-batch N]``.

    Checks the ONNX file for operators TensorRT handles badly, builds the engine (printing each
    phase), and writes it with its sidecar to ``out`` (default: ``<stem>.<key hash>.engine`` next to
    the ONNX file, where the backend finds it). INT8 calibrates from ``calib_dir`` (images or a
    rosbag2) and writes the calibration cache next to the engine; without ``calib_dir`` an existing
    cache there is used.
    """
    from panoptic_ros.models.onnx_check import check_onnx

    onnx = Path(onnx)
    precision = check_precision(precision)
    spec = load_spec(onnx)
    torch_device = cuda_device(torch.device(device))
    gpu_name, capability = gpu_identity(torch_device)
    trt = import_tensorrt()

    def say(message: str) -> None:
        echo(f"[build-engine] {message}")

    say(f"checking {onnx}")
    report = check_onnx(onnx)
    for finding in report.findings:
        if finding.severity != "info":
            say(
                f"  {finding.severity}: {finding.message}"
                + (f" (node {finding.node})" if finding.node else "")
            )
    folder = Path(out).parent if out is not None else writable_cache_dir(onnx)
    calibration = None
    if precision == "int8":
        cache = calibration_cache_path(folder, onnx, sha256_file(onnx))
        data = (
            CalibrationData(Path(calib_dir), max_images=max_calib_images, batch_size=calib_batch)
            if calib_dir is not None
            else None
        )
        calibration = Int8Calibration(cache, data)
    elif calib_dir is not None:
        say(f"--calib {calib_dir} is ignored for a {precision} engine (it is for --int8)")
    result = build_engine(
        onnx,
        Path(out) if out is not None else None,
        spec,
        precision=precision,
        max_batch=max_batch,
        calibration=calibration,
        timing_cache_path=timing_cache_path(folder, gpu_name, capability, str(trt.__version__)),
        workspace_bytes=workspace_bytes,
        device=torch_device,
        progress=say,
    )
    model = onnx if out is None else result.engine_path
    say(
        f"done: {result.engine_path} ({result.precision_used}, key {result.record.key.short_hash()}, "
        f"{result.seconds:.0f} s); run it with --backend tensorrt --model {model}"
    )
    return result
