"""What the TensorRT engine builder and the TensorRT runtime share.

:func:`import_tensorrt` imports TensorRT lazily, so this module (and
:mod:`~panoptic_ros.backends.trt_builder` and :mod:`~panoptic_ros.backends.tensorrt_backend` on top
of it) imports everywhere and says clearly when TensorRT is missing. Besides it: the checks of the
CUDA device and the precision, the :class:`~panoptic_ros.backends.engine_key.EngineKey` wanted on
this GPU, a ``tensorrt.ILogger`` that forwards to Python logging, and the conversions of TensorRT
types and dimensions to PyTorch's. The helpers that need TensorRT take the imported module as an
argument; nothing here imports TensorRT at load time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.engine_key import PRECISIONS, EngineKey, Precision

log = logging.getLogger(__name__)

#: TensorRT's builder workspace limit (scratch memory for tactics); Jetsons share it with the CPU.
DEFAULT_WORKSPACE_BYTES = 1 << 30

#: called with one line per build phase (parsing, building, serializing)
ProgressFn = Callable[[str], None]

_NOT_INSTALLED = (
    "TensorRT is not installed ({err}): use --backend onnxruntime or torch; TensorRT comes with JetPack "
    "/ NVIDIA's packages (the tensorrt wheels on PyPI fetch NVIDIA's libraries at install time)"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or a :class:`BackendError` saying what to use instead."""
    try:
        import tensorrt
    except ImportError as err:
        raise BackendError(_NOT_INSTALLED.format(err=err)) from err
    return tensorrt


def tensorrt_available() -> str | None:
    """None when TensorRT imports and PyTorch sees a CUDA GPU, else why not (for skips and ``auto``)."""
    try:
        import_tensorrt()
    except BackendError:
        return "TensorRT is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


def cuda_device(device: torch.device) -> torch.device:
    """``device`` with its index (``cuda:N``), or a :class:`BackendError` when it is not a CUDA GPU
    this PyTorch sees (the message says what to use instead)."""
    if device.type != "cuda":
        raise BackendError(
            f"the tensorrt backend runs on a CUDA GPU, not on {device}: use --device cuda, or --backend "
            "onnxruntime / torch on the CPU"
        )
    if not torch.cuda.is_available():
        raise BackendError(
            "TensorRT needs a CUDA GPU and this PyTorch sees none: build and run engines on the machine that "
            "has the GPU (a Jetson or a desktop with NVIDIA drivers); here use --backend onnxruntime or torch"
        )
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise BackendError(
            f"device cuda:{index} does not exist (this machine has {torch.cuda.device_count()})"
        )
    return torch.device("cuda", index)


def gpu_identity(device: torch.device) -> tuple[str, str]:
    """(GPU name, compute capability ``"major.minor"``) of a CUDA device, from PyTorch."""
    device = cuda_device(device)
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def check_precision(precision: str) -> Precision:
    """``precision`` when it is one of :data:`~panoptic_ros.backends.engine_key.PRECISIONS`, else a
    :class:`BackendError`."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    return precision  # type: ignore[return-value]


def wanted_key(
    onnx_sha256: str,
    device: torch.device,
    tensorrt_version: str,
    *,
    precision: Precision,
    max_batch: int,
    calibration_sha256: str = "",
) -> EngineKey:
    """The key of an engine for this GPU: batch profile ``(1, max_batch, max_batch)``."""
    gpu_name, capability = gpu_identity(device)
    return EngineKey(
        onnx_sha256=onnx_sha256,
        gpu_name=gpu_name,
        compute_capability=capability,
        tensorrt_version=tensorrt_version,
        precision=precision,
        batch_profile=(1, max_batch, max_batch),
        calibration_sha256=calibration_sha256 if precision == "int8" else "",
    )


# --------------------------------------------------------------------------------------------------
# TensorRT helpers (each takes the imported module, so nothing here imports TensorRT at load time)


def make_logger(trt: ModuleType) -> Any:
    """A ``tensorrt.ILogger`` that forwards to Python logging and keeps the error messages."""
    severity = trt.ILogger.Severity

    class Logger(trt.ILogger):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif level == severity.WARNING:
                log.warning("TensorRT: %s", msg)
            elif level == severity.INFO:
                log.info("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

        def recent_errors(self, count: int = 5) -> str:
            return "; ".join(self.errors[-count:])

    logger = Logger()
    if not trt.init_libnvinfer_plugins(logger, ""):
        log.warning("TensorRT: the standard plugins could not be registered; models using them will not load")
    return logger


def _major(trt: ModuleType) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 10


def network_flags(trt: ModuleType) -> int:
    """The flags of ``builder.create_network``: none in TensorRT 10, explicit batch before."""
    # explicit batch is the only mode (and the default) in TensorRT 10; 8.x needs the flag
    if _major(trt) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _torch_dtypes(trt: ModuleType) -> dict[Any, torch.dtype]:
    names = (
        ("FLOAT", torch.float32),
        ("HALF", torch.float16),
        ("BF16", torch.bfloat16),
        ("INT8", torch.int8),
        ("UINT8", torch.uint8),
        ("INT32", torch.int32),
        ("INT64", torch.int64),
        ("BOOL", torch.bool),
    )
    return {getattr(trt.DataType, name): dtype for name, dtype in names if hasattr(trt.DataType, name)}


def torch_dtype(trt: ModuleType, dtype: Any, tensor: str) -> torch.dtype:
    """The PyTorch dtype of a TensorRT ``DataType`` (of the named tensor, for the error message)."""
    mapping = _torch_dtypes(trt)
    if dtype not in mapping:
        raise BackendError(
            f"tensor {tensor!r} has TensorRT type {dtype}, which has no PyTorch equivalent here"
        )
    return mapping[dtype]


def dims(shape: Any) -> tuple[int, ...]:
    """A TensorRT ``Dims`` (or any sequence of sizes) as a tuple of ints; ``-1`` marks a dynamic size."""
    return tuple(int(d) for d in shape)
