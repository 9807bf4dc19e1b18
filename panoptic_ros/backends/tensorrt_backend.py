"""TensorRT backend: loads (building and caching when needed) an engine, binds PyTorch CUDA tensors by name.

Written against the TensorRT 10 name-based API (``execute_async_v3``, ``set_input_shape``,
``set_tensor_address``); TensorRT is imported lazily, so this module imports everywhere and says
clearly when TensorRT is missing. This module is the runtime; building an engine is
:mod:`~panoptic_ros.backends.trt_builder`, and what both need (the TensorRT import, device and
precision checks, the wanted key) is :mod:`~panoptic_ros.backends.trt_common`.

Loading a model (``.onnx`` or a built ``.engine`` with its sidecar):

1. the wanted :class:`~panoptic_ros.backends.engine_key.EngineKey` is computed
   (:func:`~panoptic_ros.backends.trt_common.wanted_key`): the ONNX file's hash, this GPU's name and
   compute capability (from PyTorch), the TensorRT version, the precision and the batch profile
   ``(1, max_batch, max_batch)``, and for INT8 the calibration cache's hash;
2. :func:`~panoptic_ros.backends.engine_cache.decide` says whether a cached engine can be used;
   if not, :func:`~panoptic_ros.backends.trt_builder.build_engine` builds one from the ONNX file
   (minutes on a Jetson) and writes it with its sidecar next to the ONNX file (``engines/``), or
   under ``~/.cache/panoptic_ros/engines`` when that folder is not writable;
3. the engine is deserialized (a failure, e.g. an engine from another TensorRT build, triggers one
   rebuild when the ONNX file is there) and an execution context is created.

Inference (:meth:`TensorRTBackend.infer`) takes contiguous CUDA tensors on the backend's device,
sets input shapes and tensor addresses only when they change, and enqueues the engine on PyTorch's
current stream with ``execute_async_v3``. Outputs are PyTorch tensors on the device, never copied
to the host. With ``reuse_outputs`` (the default) the output tensors are reused while their shapes
stay the same: an output is valid until the next ``infer`` call; clone it to keep it longer.

PyTorch owns CUDA memory and streams; no second CUDA wrapper (pycuda, cuda-python) is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from panoptic_ros.backends.base import Backend, BackendError, TensorInfo
from panoptic_ros.backends.engine_cache import (
    cache_dirs,
    calibration_cache_path,
    decide,
    engine_path_for,
    find_cached_engine,
    onnx_path_guess,
    read_sidecar,
    timing_cache_path,
    writable_cache_dir,
)
from panoptic_ros.backends.engine_key import EngineCacheError, EngineKey, EngineRecord, Precision, sha256_file
from panoptic_ros.backends.trt_builder import Int8Calibration, build_engine
from panoptic_ros.backends.trt_common import (
    DEFAULT_WORKSPACE_BYTES,
    ProgressFn,
    check_precision,
    cuda_device,
    dims,
    import_tensorrt,
    make_logger,
    torch_dtype,
    wanted_key,
)
from panoptic_ros.models.spec import ModelSpec

log = logging.getLogger(__name__)


class TensorRTBackend(Backend):
    """Runs a model with TensorRT on a CUDA GPU (see the module docstring).

    Args:
        model_path: the ONNX file (engines are cached next to it) or a built ``.engine`` with its
            sidecar (the ONNX file named in the sidecar, next to the engine, is used to rebuild it).
        spec: the model spec.
        device: a CUDA device.
        precision: ``fp32``, ``fp16`` or ``int8``; default ``fp16`` (an engine's own precision when
            ``model_path`` is an engine).
        max_batch: largest batch (default: the spec's, or the engine's).
        cache_dir: where engines are looked for and built (default: next to the ONNX file, else
            ``~/.cache/panoptic_ros/engines``).
        workspace_bytes: the builder's workspace limit.
        reuse_outputs: reuse output tensors while their shapes stay the same (valid until the next
            ``infer``); False allocates new outputs every call.
        progress: called with one line per build phase.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: Path,
        spec: ModelSpec,
        device: torch.device,
        *,
        precision: Precision | None = None,
        max_batch: int | None = None,
        cache_dir: Path | None = None,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        reuse_outputs: bool = True,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model_path, spec, device)
        self.device = cuda_device(device)
        self._trt = import_tensorrt()
        self.reuse_outputs = reuse_outputs
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._held: dict[str, torch.Tensor] = {}
        self._buffers: dict[str, torch.Tensor] = {}
        self._progress = progress
        self._workspace = workspace_bytes
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.rebuilt = False
        with torch.cuda.device(self.device):
            torch.cuda.init()
            self._logger = make_logger(self._trt)
            self._runtime = self._trt.Runtime(self._logger)
            self.engine_path, self.record = self._load(precision, max_batch)
            self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(
                f"TensorRT could not create an execution context for {self.engine_path} (out of GPU "
                f"memory?): {self._logger.recent_errors() or 'no detail'}"
            )
        self._map_io()

    # -- loading ------------------------------------------------------------------------------------

    def _load(self, precision: Precision | None, max_batch: int | None) -> tuple[Path, EngineRecord | None]:
        trt_version = str(self._trt.__version__)
        record: EngineRecord | None = None
        if self.model_path.suffix == ".engine":
            engine_path: Path | None = self.model_path
            try:
                record = read_sidecar(self.model_path)
            except EngineCacheError as err:
                log.warning("%s", err)
            onnx_path = (
                self.model_path.with_name(record.onnx_name) if record else onnx_path_guess(self.model_path)
            )
            default_folder = self._cache_dir or self.model_path.parent
        else:
            engine_path = None
            onnx_path = self.model_path
            default_folder = self._cache_dir
        self.onnx_path = onnx_path
        self.precision: Precision = check_precision(precision or (record.key.precision if record else "fp16"))
        self.max_batch = int(
            max_batch or (record.key.batch_profile[2] if record else self.spec.input.max_batch)
        )
        has_onnx = onnx_path.is_file()
        onnx_sha = sha256_file(onnx_path) if has_onnx else (record.key.onnx_sha256 if record else "")
        calibration_cache: Path | None = None
        calibration_sha = ""
        if self.precision == "int8":
            if has_onnx:
                calibration_cache = self._find_calibration_cache(onnx_path, onnx_sha, default_folder)
                calibration_sha = sha256_file(calibration_cache) if calibration_cache.is_file() else ""
            elif record is not None:
                calibration_sha = record.key.calibration_sha256
        wanted = wanted_key(
            onnx_sha,
            self.device,
            trt_version,
            precision=self.precision,
            max_batch=self.max_batch,
            calibration_sha256=calibration_sha,
        )
        if engine_path is None:
            engine_path = find_cached_engine(onnx_path, wanted, self._cache_dir)
        decision = decide(onnx_path, engine_path, wanted)
        log.info("tensorrt: %s", decision.reason)
        decision.raise_if_error()
        if decision.needs_build:
            engine_path = self._build(onnx_path, wanted, default_folder, calibration_cache)
        elif decision.record is not None:
            record = decision.record
        if engine_path is None:  # decide() never says "use" without an engine
            raise BackendError(f"no TensorRT engine for {self.model_path}")
        failure = self._deserialize(engine_path)
        if failure:
            decision = decide(onnx_path, engine_path, wanted, load_failure=failure)
            log.warning("tensorrt: %s", decision.reason)
            decision.raise_if_error()
            if self.rebuilt:
                raise BackendError(f"TensorRT cannot deserialize the engine it has just built ({failure})")
            engine_path = self._build(onnx_path, wanted, default_folder, calibration_cache)
            failure = self._deserialize(engine_path)
            if failure:
                raise BackendError(f"TensorRT cannot deserialize the engine it has just built ({failure})")
        return engine_path, read_sidecar(engine_path) if self.rebuilt else record

    def _find_calibration_cache(self, onnx_path: Path, onnx_sha: str, folder: Path | None) -> Path:
        folders = (folder,) if folder is not None else cache_dirs(onnx_path)
        for candidate_folder in folders:
            candidate = calibration_cache_path(candidate_folder, onnx_path, onnx_sha)
            if candidate.is_file():
                return candidate
        return calibration_cache_path(folders[0], onnx_path, onnx_sha)

    def _build(
        self, onnx_path: Path, wanted: EngineKey, folder: Path | None, calibration_cache: Path | None
    ) -> Path:
        target_folder = folder or writable_cache_dir(onnx_path)
        calibration = None
        if self.precision == "int8":
            if calibration_cache is None or not calibration_cache.is_file():
                raise BackendError(
                    f"an INT8 engine for {onnx_path.name} needs a calibration cache, and there is none at "
                    f"{calibration_cache}: run 'panoptic-ros build-engine --onnx {onnx_path} --int8 --calib "
                    "DIR' first, or use precision fp16"
                )
            calibration = Int8Calibration(calibration_cache)
        target = engine_path_for(onnx_path, wanted, target_folder)
        key = wanted
        timing = timing_cache_path(target_folder, key.gpu_name, key.compute_capability, key.tensorrt_version)
        result = build_engine(
            onnx_path,
            target,
            self.spec,
            precision=self.precision,
            max_batch=self.max_batch,
            calibration=calibration,
            timing_cache_path=timing,
            workspace_bytes=self._workspace,
            device=self.device,
            progress=self._progress,
        )
        self.rebuilt = True
        return result.engine_path

    def _deserialize(self, engine_path: Path) -> str:
        """Deserialize into ``self._engine``; returns "" on success, else why it failed."""
        try:
            data = engine_path.read_bytes()
        except OSError as err:
            return f"cannot read it: {err}"
        self._logger.errors.clear()
        try:
            engine = self._runtime.deserialize_cuda_engine(data)
        except (RuntimeError, TypeError) as err:
            return f"{type(err).__name__}: {err}"
        if engine is None:
            return self._logger.recent_errors() or "deserialize_cuda_engine returned None"
        self._engine = engine
        return ""

    def _map_io(self) -> None:
        engine = self._engine
        inputs: list[TensorInfo] = []
        outputs: list[TensorInfo] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = torch_dtype(self._trt, engine.get_tensor_dtype(name), name)
            shape = tuple(None if d < 0 else d for d in dims(engine.get_tensor_shape(name)))
            info = TensorInfo(name, shape, dtype)
            if engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
                inputs.append(info)
            else:
                outputs.append(info)
        self._inputs, self._outputs = tuple(inputs), tuple(outputs)
        self._input_info = {info.name: info for info in inputs}
        self._output_info = {info.name: info for info in outputs}
        missing = [n for n in (self.spec.input.name,) if n not in self._input_info] + [
            n for n in self.spec.outputs.values() if n not in self._output_info
        ]
        if missing:
            raise BackendError(
                f"engine {self.engine_path.name} has inputs {sorted(self._input_info)} and outputs "
                f"{sorted(self._output_info)}, but the model spec names {missing}; the engine was built from "
                "another model"
            )

    # -- inference ----------------------------------------------------------------------------------

    def _profile_text(self, name: str) -> str:
        try:
            low, _, high = self._engine.get_tensor_profile_shape(name, 0)
        except (RuntimeError, TypeError, ValueError):
            return f"shape {self._input_info[name].shape}"
        return f"shapes {dims(low)} .. {dims(high)}"

    def _bind_input(self, name: str, tensor: torch.Tensor) -> None:
        info = self._input_info[name]
        if tensor.device != self.device:
            raise BackendError(
                f"input {name!r} is on {tensor.device}; the tensorrt backend takes tensors on {self.device} "
                "(preprocess on the backend's device)"
            )
        if tensor.dtype != info.dtype:
            if not (tensor.is_floating_point() and info.dtype.is_floating_point):
                raise BackendError(f"input {name!r} is {tensor.dtype}; the engine takes {info.dtype}")
            tensor = tensor.to(info.dtype)
        tensor = tensor.contiguous()
        shape = tuple(tensor.shape)
        if self._shapes.get(name) != shape:
            if not self._context.set_input_shape(name, shape):
                raise BackendError(
                    f"TensorRT rejected shape {shape} for input {name!r}; engine {self.engine_path.name} "
                    f"takes {self._profile_text(name)}"
                )
            self._shapes[name] = shape
        address = tensor.data_ptr()
        if self._addresses.get(name) != address:
            if not self._context.set_tensor_address(name, address):
                raise BackendError(f"TensorRT rejected the device address of input {name!r}")
            self._addresses[name] = address
        self._held[name] = tensor  # alive until the next call, whatever the caller does

    def _bind_output(self, name: str) -> torch.Tensor:
        info = self._output_info[name]
        shape = dims(self._context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise BackendError(
                f"output {name!r} has shape {shape}, unknown before running (data-dependent); the tensorrt "
                "backend needs output shapes that follow from the input shapes"
            )
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.shape) != shape or not self.reuse_outputs:
            buffer = torch.empty(shape, dtype=info.dtype, device=self.device)
            self._buffers[name] = buffer
        address = buffer.data_ptr()
        if self._addresses.get(name) != address:
            if not self._context.set_tensor_address(name, address):
                raise BackendError(f"TensorRT rejected the device address of output {name!r}")
            self._addresses[name] = address
        return buffer

    def _infer(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.cuda.device(self.device):
            for name, tensor in inputs.items():
                self._bind_input(name, tensor)
            outputs = {name: self._bind_output(name) for name in self._output_info}
            stream = torch.cuda.current_stream(self.device)
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise BackendError(
                    f"TensorRT execution of {self.engine_path.name} failed: "
                    f"{self._logger.recent_errors() or 'no detail'}"
                )
        return outputs

    def close(self) -> None:
        self._held.clear()
        self._buffers.clear()
        self._addresses.clear()
        self._shapes.clear()
        self._context = None  # the context before the engine, the engine before the runtime
        self._engine = None
        self._runtime = None
        super().close()

    def describe(self) -> str:
        return f"tensorrt {self._trt.__version__} {self.precision} on {self.device} ({self.engine_path.name})"
