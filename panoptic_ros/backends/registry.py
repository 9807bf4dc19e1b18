"""Backend names to classes (imported lazily), and the ``auto`` choice."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from panoptic_ros.backends.base import Backend, BackendError
from panoptic_ros.models.spec import ModelSpec, load_spec

log = logging.getLogger(__name__)

#: backend name -> "module:Class"; modules are imported only when the backend is used.
BACKENDS: dict[str, str] = {
    "tensorrt": "panoptic_ros.backends.tensorrt_backend:TensorRTBackend",
    "onnxruntime": "panoptic_ros.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "torch": "panoptic_ros.backends.torch_backend:TorchBackend",
}


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available) as a torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise BackendError(f"device {device!r} is not a valid device (cpu, cuda, cuda:N, auto)") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(
            f"device {device!r} asked for, but this PyTorch sees no CUDA GPU; run on the CPU: device cpu "
            "(the node's parameter `device`, the command line's --device)"
        )
    return resolved


def choose_backend(device: torch.device) -> tuple[str, str]:
    """The ``auto`` choice and why: tensorrt (importable and a GPU), else onnxruntime, else torch."""
    if "tensorrt" in BACKENDS and device.type == "cuda" and importlib.util.find_spec("tensorrt"):
        return "tensorrt", "TensorRT is importable and a CUDA GPU is in use"
    if importlib.util.find_spec("onnxruntime"):
        why = "TensorRT is not installed" if device.type == "cuda" else "running on the CPU"
        return "onnxruntime", f"{why}; ONNX Runtime is installed"
    return "torch", "neither TensorRT nor ONNX Runtime is installed"


def precision_options(precision: str) -> dict[str, str]:
    """The backend option that asks for ``precision`` (the node's parameter, a benchmark's flag):
    none for ``auto``, which leaves each backend its own default."""
    return {} if precision == "auto" else {"precision": precision}


def create_backend(
    name: str,
    model_path: str | Path,
    *,
    device: str = "auto",
    spec: ModelSpec | None = None,
    options: Mapping[str, Any] | None = None,
) -> Backend:
    """Load ``model_path`` with the backend ``name`` (a key of :data:`BACKENDS`, or ``auto``).

    ``options`` are the backend's own keyword arguments (e.g. ``compile``/``cuda_graphs`` for torch,
    ``precision``/``max_batch`` for tensorrt); an option the backend does not take is an error.
    """
    torch_device = resolve_device(device)
    if name == "auto":
        name, why = choose_backend(torch_device)
        log.info("backend auto -> %s (%s)", name, why)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of auto, {', '.join(sorted(BACKENDS))}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    except ImportError as err:
        raise BackendError(f"backend {name!r} is not usable here: {err}") from err
    accepted = {
        p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY
    }
    unknown = sorted(set(options or {}) - accepted)
    if unknown:
        raise BackendError(f"backend {name!r} has no option {unknown}; its options: {sorted(accepted)}")
    return cls(Path(model_path), spec or model_spec(model_path), torch_device, **dict(options or {}))


def model_spec(model_path: str | Path) -> ModelSpec:
    """The spec of an ONNX model (metadata or sidecar) or of a built TensorRT engine (its sidecar)."""
    path = Path(model_path)
    if path.suffix == ".engine":
        from panoptic_ros.backends.engine_cache import load_engine_spec

        return load_engine_spec(path)
    return load_spec(path)
