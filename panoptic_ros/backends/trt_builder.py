"""TensorRT engine building: parse an ONNX file, set the batch profile and precision, calibrate INT8,
and write the engine with its sidecar.

:func:`build_engine` is what both the runtime
(:class:`~panoptic_ros.backends.tensorrt_backend.TensorRTBackend`, when no cached engine fits) and
``panoptic-ros build-engine`` (:func:`~panoptic_ros.apps.build_engine.build_engine_command`) call.
It builds one optimization profile with the batch dimension ``1..max_batch`` (``opt = max``), falls
back to a lower precision where the GPU lacks fast FP16/INT8 (the sidecar records the precision
used), calibrates INT8 from :class:`~panoptic_ros.backends.calibration.CalibrationData` or reads an
existing calibration cache, and loads and saves a TensorRT timing cache so later builds on the same
GPU and TensorRT are faster. The engine and its sidecar are written atomically
(:func:`~panoptic_ros.backends.engine_cache.write_engine`).

TensorRT is imported only when :func:`build_engine` runs, so this module imports everywhere.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import torch

from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.calibration import CalibrationData, calibration_batches, make_entropy_calibrator
from panoptic_ros.backends.engine_cache import (
    atomic_write_bytes,
    engine_path_for,
    engine_sidecar_path,
    writable_cache_dir,
    write_engine,
)
from panoptic_ros.backends.engine_key import EngineCacheError, EngineRecord, Precision, sha256_file
from panoptic_ros.backends.trt_common import (
    DEFAULT_WORKSPACE_BYTES,
    ProgressFn,
    check_precision,
    cuda_device,
    dims,
    import_tensorrt,
    make_logger,
    network_flags,
    wanted_key,
)
from panoptic_ros.models.spec import ModelSpec, sidecar_path

log = logging.getLogger(__name__)


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
    device = cuda_device(device or torch.device("cuda"))
    precision = check_precision(precision)
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
        logger = make_logger(trt)
        builder = trt.Builder(logger)
        if builder is None:
            raise BackendError(f"TensorRT could not create a builder: {logger.recent_errors()}")
        network = builder.create_network(network_flags(trt))
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
        shape = dims(tensor.shape)
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
    """Set ``config.int8_calibrator`` to an entropy calibrator fed by ``calibration.data`` (its batch
    size follows a fixed batch in the network), or reading ``calibration.cache_path`` when there is no
    data; returns the calibrator, whose ``error`` the caller checks after the build."""
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != [spec.input.name]:
        raise BackendError(
            f"INT8 calibration feeds the single input {spec.input.name!r}; the network has {names}"
        )
    data = calibration.data
    if data is not None:
        batch_shape = dims(network.get_input(0).shape)
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
    """Give the builder config the timing cache at ``path`` (a new one when it is missing, unreadable
    or from another GPU/TensorRT); returns the cache, or None when ``path`` is None or TensorRT refuses."""
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
    """Write the builder config's timing cache to ``path`` atomically; a failure only warns."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    try:
        atomic_write_bytes(path, bytes(memoryview(cache.serialize())))
    except EngineCacheError as err:
        log.warning("TensorRT timing cache not saved: %s", err)
