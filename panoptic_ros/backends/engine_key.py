"""What a TensorRT engine was built for: the cache key, the sidecar record, and file hashing.

A TensorRT engine only runs on the GPU model and TensorRT version it was built with, and it cannot
carry metadata. Its :class:`EngineKey` says what it depends on (ONNX file hash, GPU name and compute
capability, TensorRT version, precision, batch profile, and the INT8 calibration cache hash); an
engine is reused only when its key equals the wanted one, and :meth:`EngineKey.mismatches` names
each field that differs. :class:`EngineRecord` is what the engine's JSON sidecar holds: the key, the
model spec and the hash of the engine bytes.

Where engines and sidecars live, how they are written, and when to rebuild one is
:mod:`~panoptic_ros.backends.engine_cache`. Nothing here imports TensorRT or touches the cache
folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from panoptic_ros.backends.base import BackendError
from panoptic_ros.models.spec import ModelSpec, ModelSpecError

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

SIDECAR_FORMAT = "panoptic_ros.engine/1"
#: hex digits of the key hash in an engine's file name
SHORT_HASH_LENGTH = 12
_CHUNK = 1 << 20

#: human-readable name of each :class:`EngineKey` field, used in mismatch reasons
FIELD_LABELS: dict[str, str] = {
    "onnx_sha256": "ONNX sha256",
    "gpu_name": "GPU",
    "compute_capability": "compute capability",
    "tensorrt_version": "TensorRT version",
    "precision": "precision",
    "batch_profile": "batch profile (min, opt, max)",
    "calibration_sha256": "INT8 calibration cache sha256",
}
_HASH_FIELDS = ("onnx_sha256", "calibration_sha256")


class EngineCacheError(BackendError):
    """An engine or its sidecar cannot be read or written, or cannot be used on this machine."""


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except OSError as err:
        raise EngineCacheError(f"cannot read {path} to hash it: {err}") from err
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; an engine is reused only when its key equals the wanted one.

    Attributes:
        onnx_sha256: sha256 of the ONNX file's bytes.
        gpu_name: ``torch.cuda.get_device_name`` of the GPU, e.g. ``"Orin"``, ``"NVIDIA H200"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.7"``.
        tensorrt_version: ``tensorrt.__version__``, e.g. ``"10.3.0"``.
        precision: the precision asked for (``fp32``, ``fp16`` or ``int8``); an engine built with a
            fallback (no fast FP16 on the platform) still records what was asked for.
        batch_profile: the optimization profile of the batch dimension, ``(min, opt, max)``.
        calibration_sha256: sha256 of the INT8 calibration cache; empty unless ``precision`` is int8.
    """

    onnx_sha256: str
    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: Precision
    batch_profile: tuple[int, int, int]
    calibration_sha256: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineCacheError(f"precision={self.precision!r} must be one of {', '.join(PRECISIONS)}")
        profile = tuple(int(b) for b in self.batch_profile)
        if len(profile) != 3 or not 1 <= profile[0] <= profile[1] <= profile[2]:
            raise EngineCacheError(
                f"batch_profile={self.batch_profile} must be (min, opt, max) with 1 <= min <= opt <= max"
            )
        object.__setattr__(self, "batch_profile", profile)
        if self.calibration_sha256 and self.precision != "int8":
            raise EngineCacheError(
                f"calibration_sha256 is only meaningful for int8 engines, not {self.precision}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batch_profile"] = list(self.batch_profile)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<engine key>") -> EngineKey:
        try:
            return cls(
                onnx_sha256=str(data["onnx_sha256"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=str(data["compute_capability"]),
                tensorrt_version=str(data["tensorrt_version"]),
                precision=data["precision"],
                batch_profile=tuple(int(b) for b in data["batch_profile"]),  # type: ignore[arg-type]
                calibration_sha256=str(data.get("calibration_sha256", "")),
            )
        except EngineCacheError as err:
            raise EngineCacheError(f"{source}: {err}") from err
        except (KeyError, TypeError, ValueError) as err:
            raise EngineCacheError(f"{source}: invalid engine key ({type(err).__name__}: {err})") from err

    def short_hash(self) -> str:
        """The first :data:`SHORT_HASH_LENGTH` hex digits of the sha256 of the key's canonical JSON."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:SHORT_HASH_LENGTH]

    def mismatches(self, wanted: EngineKey) -> tuple[str, ...]:
        """Each field where this (the engine's) key differs from ``wanted``, as
        ``"<field> <engine's value> != <wanted value>"``, e.g. ``"TensorRT version 10.3.0 != 10.7.0"``."""
        found, want = self.to_dict(), wanted.to_dict()
        return tuple(
            f"{label} {_show(name, found[name])} != {_show(name, want[name])}"
            for name, label in FIELD_LABELS.items()
            if found[name] != want[name]
        )


def _show(name: str, value: Any) -> str:
    if name in _HASH_FIELDS:
        return value[:SHORT_HASH_LENGTH] if value else "(none)"
    if name == "batch_profile":
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)


# --------------------------------------------------------------------------------------------------
# sidecar record


@dataclass(frozen=True)
class EngineRecord:
    """What an engine's sidecar holds.

    Attributes:
        key: what the engine was built for.
        spec: the model spec (the engine cannot carry it).
        onnx_name: file name of the ONNX the engine was built from (looked for next to the engine).
        engine_sha256: sha256 of the engine file, so an engine that does not belong to this sidecar
            (an interrupted write) is detected.
        engine_bytes: the engine's size.
        build: free-form build facts (precision actually used, seconds, time, warnings).
    """

    key: EngineKey
    spec: ModelSpec
    onnx_name: str
    engine_sha256: str
    engine_bytes: int
    build: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "key": self.key.to_dict(),
            "onnx": self.onnx_name,
            "engine_sha256": self.engine_sha256,
            "engine_bytes": self.engine_bytes,
            "build": dict(self.build),
            "spec": self.spec.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<engine sidecar>") -> EngineRecord:
        if data.get("format") != SIDECAR_FORMAT:
            raise EngineCacheError(f"{source}: format={data.get('format')!r}, expected {SIDECAR_FORMAT!r}")
        try:
            key = EngineKey.from_dict(data["key"], source=f"{source} key")
            spec = ModelSpec.from_dict(data["spec"], source=f"{source} spec")
            return cls(
                key=key,
                spec=spec,
                onnx_name=str(data["onnx"]),
                engine_sha256=str(data["engine_sha256"]),
                engine_bytes=int(data["engine_bytes"]),
                build=dict(data.get("build", {})),
            )
        except ModelSpecError as err:
            raise EngineCacheError(str(err)) from err
        except (KeyError, TypeError, ValueError) as err:
            raise EngineCacheError(f"{source}: invalid engine sidecar ({type(err).__name__}: {err})") from err
