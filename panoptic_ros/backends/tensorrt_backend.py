"""TensorRT backend: builds (and caches) an engine from the ONNX file, binds PyTorch CUDA tensors by name.

Written against the TensorRT 10 name-based API (``execute_async_v3``, ``set_input_shape``,
``set_tensor_address``); TensorRT is imported lazily, so this module imports everywhere and says
clearly when TensorRT is missing.

Loading a model (``.onnx`` or a built ``.engine`` with its sidecar):

1. the wanted :class:`~panoptic_ros.backends.engine_cache.EngineKey` is computed: the ONNX file's
   hash, this GPU's name and compute capability (from PyTorch), the TensorRT version, the precision
   and the batch profile ``(1, max_batch, max_batch)``, and for INT8 the calibration cache's hash;
2. :func:`~panoptic_ros.backends.engine_cache.decide` says whether a cached engine can be used;
   if not, :func:`build_engine` builds one from the ONNX file (minutes on a Jetson) and writes it
   with its sidecar next to the ONNX file (``engines/``), or under ``~/.cache/panoptic_ros/engines``
   when that folder is not writable;
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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import torch

from panoptic_ros.backends.base import Backend, BackendError, TensorInfo
from panoptic_ros.backends.calibration import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IMAGES,
    CalibrationData,
    calibration_batches,
    make_entropy_calibrator,
)
from panoptic_ros.backends.engine_cache import (
    PRECISIONS,
    EngineCacheError,
    EngineKey,
    EngineRecord,
    Precision,
    atomic_write_bytes,
    cache_dirs,
    calibration_cache_path,
    decide,
    engine_path_for,
    engine_sidecar_path,
    find_cached_engine,
    onnx_path_guess,
    read_sidecar,
    sha256_file,
    timing_cache_path,
    writable_cache_dir,
    write_engine,
)
from panoptic_ros.models.spec import ModelSpec, load_spec, sidecar_path

log = logging.getLogger(__name__)

#: TensorRT's builder workspace limit (scratch memory for tactics); Jetsons share it with the CPU.
DEFAULT_WORKSPACE_BYTES = 1 << 30

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


def _cuda_device(device: torch.device) -> torch.device:
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
    device = _cuda_device(device)
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def _check_precision(precision: str) -> Precision:
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


def _make_logger(trt: ModuleType) -> Any:
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


def _network_flags(trt: ModuleType) -> int:
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


def _dims(dims: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in dims)


class BuildResult(NamedTuple):
    """What :func:`build_engine` produced."""

    engine_path: Path
    record: EngineRecord
    seconds: float
    precision_used: str


@dataclass(frozen=True)
class Int8Calibration:
    """How an INT8 engine is calibrated.

    Attributes:
        cache_path: the calibration cache; written after calibrating, read when ``data`` is None.
        data: calibration frames; when given, the network is calibrated anew from them (an
            existing cache is replaced). When None, ``cache_path`` must exist.
    """

    cache_path: Path
    data: CalibrationData | None = None


def build_engine(
    onnx_path: Path,
    engine_path: Path | None,
    spec: ModelSpec,
    *,
    precision: Precision = "fp16",
    max_batch: int | None = None,
    calibration: Int8Calibration | None = None,
    timing_cache_path: Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    device: torch.device | None = None,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build a TensorRT engine from ``onnx_path`` and write it with its sidecar (atomically).

    Args:
        onnx_path: the ONNX model.
        engine_path: where to write the engine; None names it from its key
            (``<stem>.<key hash>.engine``) in the first writable cache folder.
        spec: the model spec, stored in the sidecar.
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 also enables FP16 for layers without an INT8
            kernel). Where the GPU lacks fast FP16/INT8 the build warns and falls back; the sidecar
            records the precision used, the key the precision asked for.
        max_batch: largest batch; the profile is ``1..max_batch`` with ``opt = max`` (default:
            ``spec.input.max_batch``).
        calibration: required for ``int8``.
        timing_cache_path: TensorRT timing cache, loaded when present and saved after the build
            (speeds up later builds on the same GPU and TensorRT); None disables it.
        workspace_bytes: the builder's workspace memory limit.
        device: the CUDA device to build for (default: the current one).
        progress: called with one line per phase (parsing, building, serializing).

    Raises:
        BackendError: TensorRT missing, parse errors (every one listed), a failed build.
    """
    trt = import_tensorrt()
    device = _cuda_device(device or torch.device("cuda"))
    precision = _check_precision(precision)
    say = progress or (lambda message: log.info("%s", message))
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model {onnx_path} does not exist")
    max_batch = max_batch or spec.input.max_batch
    if max_batch < 1:
        raise BackendError(f"max_batch={max_batch} must be >= 1")
    if engine_path is not None and engine_sidecar_path(engine_path) == sidecar_path(onnx_path):
        raise BackendError(
            f"engine {engine_path} would put its sidecar at {engine_sidecar_path(engine_path)}, where the "
            f"ONNX model's own spec sidecar belongs; choose another name, e.g. "
            f"{onnx_path.stem}.{precision}.engine"
        )
    if precision == "int8":
        if calibration is None:
            raise BackendError("an INT8 engine needs calibration: give --calib DIR (images or a rosbag2)")
        if calibration.data is None and not calibration.cache_path.is_file():
            raise BackendError(
                f"an INT8 engine needs calibration: no calibration cache at {calibration.cache_path} and no "
                "calibration data; give --calib DIR (a folder of images or a rosbag2 folder)"
            )
    onnx_sha = sha256_file(onnx_path)
    started = time.monotonic()
    with torch.cuda.device(device):
        torch.cuda.init()
        logger = _make_logger(trt)
        builder = trt.Builder(logger)
        if builder is None:
            raise BackendError(f"TensorRT could not create a builder: {logger.recent_errors()}")
        network = builder.create_network(_network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        say(f"parsing {onnx_path}")
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            listed = "\n".join(f"  - {e}" for e in errors) or f"  - {logger.recent_errors() or 'no detail'}"
            raise BackendError(
                f"TensorRT {trt.__version__} cannot parse {onnx_path} ({len(errors)} error(s)):\n{listed}\n"
                f"'panoptic-ros check-onnx {onnx_path}' lists operators TensorRT does not handle"
            )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
        _set_profiles(
            trt, builder, network, config, max_batch=max_batch, calibration=calibration, precision=precision
        )
        precision_used, notes = _set_precision(trt, builder, config, precision)
        calibrator = None
        if precision_used == "int8" and calibration is not None:
            calibrator = _attach_calibrator(
                config, network, spec, calibration=calibration, device=device, say=say
            )
        cache = _load_timing_cache(config, timing_cache_path)
        say(
            f"building a {precision_used.upper()} engine for {torch.cuda.get_device_name(device)} with "
            f"TensorRT {trt.__version__}, batch 1..{max_batch} (this can take minutes on a Jetson)"
        )
        serialized = builder.build_serialized_network(network, config)
        if calibrator is not None and calibrator.error is not None:
            raise BackendError(f"INT8 calibration failed: {calibrator.error}") from calibrator.error
        if serialized is None:
            raise BackendError(
                f"TensorRT could not build an engine from {onnx_path}: "
                f"{logger.recent_errors() or 'no detail'}; try a larger workspace, another precision, or "
                "'panoptic-ros check-onnx'"
            )
        if cache is not None and timing_cache_path is not None:
            _save_timing_cache(config, timing_cache_path)
        say("serializing the engine")
        data = bytes(memoryview(serialized))
    calibration_sha = ""
    if precision == "int8" and calibration is not None and calibration.cache_path.is_file():
        calibration_sha = sha256_file(calibration.cache_path)
    key = wanted_key(
        onnx_sha,
        device,
        str(trt.__version__),
        precision=precision,
        max_batch=max_batch,
        calibration_sha256=calibration_sha,
    )
    if engine_path is None:
        engine_path = engine_path_for(onnx_path, key, writable_cache_dir(onnx_path))
    seconds = time.monotonic() - started
    record = write_engine(
        Path(engine_path),
        data,
        key,
        spec,
        onnx_name=onnx_path.name,
        build={"precision_used": precision_used, "seconds": round(seconds, 1), "notes": notes},
    )
    say(f"wrote {engine_path} ({len(data) / 1e6:.1f} MB) in {seconds:.0f} s")
    return BuildResult(Path(engine_path), record, seconds, precision_used)


def _set_profiles(
    trt: ModuleType,
    builder: Any,
    network: Any,
    config: Any,
    *,
    max_batch: int,
    calibration: Int8Calibration | None,
    precision: str,
) -> None:
    """One optimization profile with the batch dimension 1..max_batch (opt = max); for INT8 also a
    calibration profile at the calibration batch size."""
    profile = builder.create_optimization_profile()
    calib_profile = builder.create_optimization_profile() if precision == "int8" else None
    calib_batch = calibration.data.batch_size if calibration and calibration.data else 1
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = _dims(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise BackendError(
                f"input {tensor.name!r} has shape {shape} with dynamic dimensions besides the batch; this "
                "backend sets a profile for the batch only: export the model with a fixed input size"
            )
        if shape and shape[0] < 0:
            dynamic = True
            rest = shape[1:]
            profile.set_shape(tensor.name, (1, *rest), (max_batch, *rest), (max_batch, *rest))
            if calib_profile is not None:
                calib_shape = (calib_batch, *rest)
                calib_profile.set_shape(tensor.name, calib_shape, calib_shape, calib_shape)
        else:
            if shape and shape[0] != max_batch:
                log.warning(
                    "input %r has a fixed batch of %d; max_batch=%d does not apply",
                    tensor.name,
                    shape[0],
                    max_batch,
                )
            profile.set_shape(tensor.name, shape, shape, shape)
            if calib_profile is not None:
                calib_profile.set_shape(tensor.name, shape, shape, shape)
    if config.add_optimization_profile(profile) < 0:
        raise BackendError(f"TensorRT rejected the optimization profile (batch 1..{max_batch})")
    if calib_profile is not None and dynamic and not config.set_calibration_profile(calib_profile):
        raise BackendError(f"TensorRT rejected the INT8 calibration profile (batch {calib_batch})")


def _set_precision(trt: ModuleType, builder: Any, config: Any, precision: str) -> tuple[str, list[str]]:
    """Set the builder flags; returns the precision used and notes on fallbacks."""
    notes: list[str] = []
    fast_fp16 = bool(getattr(builder, "platform_has_fast_fp16", True))
    fast_int8 = bool(getattr(builder, "platform_has_fast_int8", True))
    used = precision
    if precision == "int8" and not fast_int8:
        used = "fp16" if fast_fp16 else "fp32"
        notes.append(f"this GPU has no fast INT8; built {used.upper()} instead")
    if used == "fp16" and not fast_fp16:
        used = "fp32"
        notes.append("this GPU has no fast FP16; built FP32 instead")
    for note in notes:
        log.warning("TensorRT build: %s", note)
    if used in ("fp16", "int8") and fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if used == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    return used, notes


def _attach_calibrator(
    config: Any,
    network: Any,
    spec: ModelSpec,
    *,
    calibration: Int8Calibration,
    device: torch.device,
    say: ProgressFn,
) -> Any:
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != [spec.input.name]:
        raise BackendError(
            f"INT8 calibration feeds the single input {spec.input.name!r}; the network has {names}"
        )
    data = calibration.data
    if data is not None:
        batch_shape = _dims(network.get_input(0).shape)
        if batch_shape[0] > 0 and batch_shape[0] != data.batch_size:
            data = replace(data, batch_size=batch_shape[0])
        say(f"calibrating INT8 with up to {data.max_images} frames from {data.source}")
        batches: Any = calibration_batches(data, spec.input, device)
        batch_size = data.batch_size
    else:
        say(f"using the INT8 calibration cache {calibration.cache_path}")
        batches, batch_size = iter(()), 1
    calibrator = make_entropy_calibrator(
        batches,
        input_name=spec.input.name,
        batch_size=batch_size,
        cache_path=calibration.cache_path,
        read_cache=data is None,
    )
    config.int8_calibrator = calibrator
    return calibrator


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    if path is None:
        return None
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as err:
            log.warning("cannot read the TensorRT timing cache %s (%s); starting a new one", path, err)
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log.warning("the TensorRT timing cache %s does not fit this GPU/TensorRT; starting a new one", path)
        cache = config.create_timing_cache(b"")
        if not config.set_timing_cache(cache, False):
            log.warning("TensorRT refused a new timing cache; building without one")
            return None
    return cache


def _save_timing_cache(config: Any, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    try:
        atomic_write_bytes(path, bytes(memoryview(cache.serialize())))
    except EngineCacheError as err:
        log.warning("TensorRT timing cache not saved: %s", err)


# --------------------------------------------------------------------------------------------------
# the backend


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
        self.device = _cuda_device(device)
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
            self._logger = _make_logger(self._trt)
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
        self.precision: Precision = _check_precision(
            precision or (record.key.precision if record else "fp16")
        )
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
            shape = tuple(None if d < 0 else d for d in _dims(engine.get_tensor_shape(name)))
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
        return f"shapes {_dims(low)} .. {_dims(high)}"

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
        shape = _dims(self._context.get_tensor_shape(name))
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


# --------------------------------------------------------------------------------------------------
# the build-engine command


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
    precision = _check_precision(precision)
    spec = load_spec(onnx)
    torch_device = _cuda_device(torch.device(device))
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
