"""The TensorRT engine cache: where an engine lives, how it is written, and when to rebuild it.

Each cached engine has a JSON sidecar holding its
:class:`~panoptic_ros.backends.engine_key.EngineRecord` (what it was built for: the
:class:`~panoptic_ros.backends.engine_key.EngineKey`, the model spec, the hash of the engine bytes)::

    engines/panoptic_synthetic.1a2b3c4d5e6f.engine
    engines/panoptic_synthetic.1a2b3c4d5e6f.json   {"format": ..., "key": {...}, "spec": {...}, ...}

The short hash in the name is derived from the key, so engines for different GPUs, precisions or
TensorRT versions sit side by side. :func:`decide` says whether an engine can be used, must be
(re)built from the ONNX file, or cannot be used at all; :func:`write_engine` writes an engine and
its sidecar so that a crash never leaves a half-written engine that looks valid.

Nothing here imports TensorRT: every decision is testable on a machine without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from panoptic_ros.backends.engine_key import (
    SHORT_HASH_LENGTH,
    EngineCacheError,
    EngineKey,
    EngineRecord,
    sha256_file,
)
from panoptic_ros.core.params import json_object
from panoptic_ros.models.spec import ModelSpec

Action = Literal["use", "build", "rebuild", "error"]

ENGINE_SUFFIX = ".engine"


# --------------------------------------------------------------------------------------------------
# naming


def engine_file_name(onnx_path: Path, key: EngineKey) -> str:
    """``<onnx stem>.<short key hash>.engine``."""
    return f"{Path(onnx_path).stem}.{key.short_hash()}{ENGINE_SUFFIX}"


def engine_path_for(onnx_path: Path, key: EngineKey, cache_dir: Path | None = None) -> Path:
    """Where the engine of ``onnx_path`` built for ``key`` lives: in ``cache_dir``, by default next
    to the ONNX file (``engines/`` for the shipped model)."""
    folder = Path(cache_dir) if cache_dir is not None else Path(onnx_path).parent
    return folder / engine_file_name(onnx_path, key)


def engine_sidecar_path(engine_path: Path) -> Path:
    """The JSON sidecar of an engine: ``x.1a2b3c4d5e6f.engine`` -> ``x.1a2b3c4d5e6f.json``."""
    return Path(engine_path).with_suffix(".json")


def onnx_path_guess(engine_path: Path) -> Path:
    """The ONNX file an engine named by :func:`engine_file_name` was most likely built from
    (``x.1a2b3c4d5e6f.engine`` -> ``x.onnx`` in the same folder); used when the sidecar is unreadable."""
    name = Path(engine_path).name.removesuffix(ENGINE_SUFFIX)
    stem, dot, tail = name.rpartition(".")
    if dot and len(tail) == SHORT_HASH_LENGTH and all(c in "0123456789abcdef" for c in tail):
        name = stem
    return Path(engine_path).with_name(f"{name}.onnx")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/panoptic_ros/engines`` (``~/.cache/...``): where engines go when the ONNX
    file's folder is not writable (an installed package)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "panoptic_ros" / "engines"


def cache_dirs(onnx_path: Path) -> tuple[Path, ...]:
    """Folders searched for a cached engine, in order: next to the ONNX file, then :func:`user_cache_dir`."""
    return (Path(onnx_path).parent, user_cache_dir())


def writable_cache_dir(onnx_path: Path) -> Path:
    """The first folder of :func:`cache_dirs` that can be written (created if needed)."""
    for folder in cache_dirs(onnx_path):
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
        if folder.is_dir() and os.access(folder, os.W_OK):
            return folder
    raise EngineCacheError(
        f"none of {', '.join(str(d) for d in cache_dirs(onnx_path))} is writable for the TensorRT engine; "
        "set XDG_CACHE_HOME to a writable folder or build the engine with 'panoptic-ros build-engine --out'"
    )


def find_cached_engine(onnx_path: Path, key: EngineKey, cache_dir: Path | None = None) -> Path | None:
    """The existing engine file for ``key`` (in ``cache_dir``, else in :func:`cache_dirs`), or None."""
    folders = (Path(cache_dir),) if cache_dir is not None else cache_dirs(onnx_path)
    for folder in folders:
        candidate = engine_path_for(onnx_path, key, folder)
        if candidate.is_file():
            return candidate
    return None


def timing_cache_path(folder: Path, gpu_name: str, compute_capability: str, tensorrt_version: str) -> Path:
    """A TensorRT timing cache file for one GPU and TensorRT version (shared by every model built there):
    ``<gpu>-sm<capability>-trt<version>.timing.cache``."""
    gpu = "".join(c if c.isalnum() else "-" for c in gpu_name).strip("-").lower() or "gpu"
    return Path(folder) / f"{gpu}-sm{compute_capability.replace('.', '')}-trt{tensorrt_version}.timing.cache"


def calibration_cache_path(folder: Path, onnx_path: Path, onnx_sha256: str) -> Path:
    """The INT8 calibration cache of one ONNX file (its hash in the name, since a cache written for
    another version of the model would silently give wrong scales): ``<stem>.<sha[:12]>.int8.calib.cache``."""
    return Path(folder) / f"{Path(onnx_path).stem}.{onnx_sha256[:SHORT_HASH_LENGTH]}.int8.calib.cache"


# --------------------------------------------------------------------------------------------------
# sidecar files


def read_sidecar(engine_path: Path) -> EngineRecord:
    """The record of an engine, from its JSON sidecar.

    Raises:
        EngineCacheError: the sidecar is missing, not JSON, or not an engine sidecar.
    """
    path = engine_sidecar_path(engine_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise EngineCacheError(f"engine {Path(engine_path).name} has no sidecar {path.name}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise EngineCacheError(f"cannot read the engine sidecar {path}: {err}") from err
    data = json_object(text, f"engine sidecar {path}", EngineCacheError)
    return EngineRecord.from_dict(data, source=str(path))


def load_engine_spec(engine_path: Path) -> ModelSpec:
    """The model spec of a built engine, from its sidecar."""
    return read_sidecar(engine_path).spec


def _write_temp(folder: Path, prefix: str, data: bytes) -> Path:
    handle, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so
    readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        temp = _write_temp(path.parent, f".{path.name}.", data)
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as err:
        raise EngineCacheError(f"cannot write {path}: {err}") from err


def write_engine(
    engine_path: Path,
    engine: bytes,
    key: EngineKey,
    spec: ModelSpec,
    *,
    onnx_name: str,
    build: Mapping[str, Any] | None = None,
) -> EngineRecord:
    """Write an engine and its sidecar atomically; returns the record written.

    Both files are first written completely to temporary files in the target folder, then renamed
    into place (engine first). A failure before the renames leaves no new file behind; a crash
    between the two renames leaves an engine whose hash disagrees with the old sidecar (or no
    sidecar), which :func:`decide` treats as "rebuild".
    """
    engine_path = Path(engine_path)
    sidecar = engine_sidecar_path(engine_path)
    record = EngineRecord(
        key=key,
        spec=spec,
        onnx_name=onnx_name,
        engine_sha256=hashlib.sha256(engine).hexdigest(),
        engine_bytes=len(engine),
        build={"written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **dict(build or {})},
    )
    text = json.dumps(record.to_dict(), indent=1).encode("utf-8")
    temps: list[Path] = []
    try:
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        temps.append(_write_temp(engine_path.parent, f".{engine_path.name}.", engine))
        temps.append(_write_temp(engine_path.parent, f".{sidecar.name}.", text))
        os.replace(temps[0], engine_path)
        try:
            os.replace(temps[1], sidecar)
        except BaseException:
            # the new engine must not be paired with an old sidecar
            engine_path.unlink(missing_ok=True)
            raise
    except OSError as err:
        raise EngineCacheError(f"cannot write the engine {engine_path} and its sidecar: {err}") from err
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return record


# --------------------------------------------------------------------------------------------------
# the decision


@dataclass(frozen=True)
class Decision:
    """What to do with an engine: ``use`` it, ``build`` it (none yet), ``rebuild`` it from the ONNX
    file, or ``error`` (it cannot be used and there is no ONNX file to rebuild it from).

    ``reason`` is one human-readable sentence; ``mismatches`` lists each differing key field.
    """

    action: Action
    reason: str
    mismatches: tuple[str, ...] = ()
    record: EngineRecord | None = None

    @property
    def needs_build(self) -> bool:
        return self.action in ("build", "rebuild")

    def raise_if_error(self) -> None:
        if self.action == "error":
            raise EngineCacheError(self.reason)


def decide(
    onnx_path: Path | None,
    engine_path: Path | None,
    wanted: EngineKey,
    *,
    load_failure: str | None = None,
    verify_engine_hash: bool = True,
) -> Decision:
    """Whether the engine at ``engine_path`` can serve ``wanted``, and if not, what to do.

    Args:
        onnx_path: the ONNX file the engine is (to be) built from; None or a missing file means it
            cannot be rebuilt here.
        engine_path: the engine file (None or missing: there is none yet).
        wanted: the key this machine and configuration need.
        load_failure: set by the caller when TensorRT could not deserialize the engine (the text says
            why); the engine is then rebuilt, or an error results when there is no ONNX file.
        verify_engine_hash: compare the engine's sha256 with the sidecar's (detects an engine left by
            an interrupted write, or replaced by hand).
    """
    onnx = Path(onnx_path) if onnx_path is not None else None
    can_build = onnx is not None and onnx.is_file()
    missing_onnx = f" ({onnx} does not exist)" if onnx is not None and not can_build else ""
    if engine_path is None or not Path(engine_path).is_file():
        where = f" at {engine_path}" if engine_path is not None else ""
        if can_build and onnx is not None:
            return Decision("build", f"no engine yet{where}; building one from {onnx.name}")
        return Decision(
            "error",
            f"no TensorRT engine{where} and no ONNX file to build one from{missing_onnx}: supply the ONNX "
            "model (e.g. engines/panoptic_synthetic.onnx)",
        )
    engine = Path(engine_path)

    def rebuild_or_error(
        problem: str, mismatches: tuple[str, ...] = (), record: EngineRecord | None = None
    ) -> Decision:
        if can_build and onnx is not None:
            return Decision("rebuild", f"{problem}; rebuilding it from {onnx.name}", mismatches, record)
        return Decision(
            "error",
            f"{problem}; it cannot be rebuilt because the ONNX file is not available{missing_onnx}: supply "
            "the ONNX file, or rebuild the engine on this machine with 'panoptic-ros build-engine --onnx "
            f"MODEL.onnx --out {engine}'",
            mismatches,
            record,
        )

    if load_failure is not None:
        return rebuild_or_error(f"TensorRT could not deserialize engine {engine.name} ({load_failure})")
    try:
        record = read_sidecar(engine)
    except EngineCacheError as err:
        return rebuild_or_error(f"cannot tell what engine {engine.name} was built for: {err}")
    mismatches = record.key.mismatches(wanted)
    if mismatches:
        return rebuild_or_error(
            f"engine {engine.name} was built for another configuration: " + "; ".join(mismatches),
            mismatches,
            record,
        )
    if verify_engine_hash:
        size = engine.stat().st_size
        if size != record.engine_bytes or sha256_file(engine) != record.engine_sha256:
            return rebuild_or_error(
                f"engine {engine.name} ({size} bytes) is not the one its sidecar describes "
                f"({record.engine_bytes} bytes, sha256 {record.engine_sha256[:SHORT_HASH_LENGTH]}...): an "
                "interrupted write or a file replaced by hand",
                (),
                record,
            )
    return Decision("use", f"engine {engine.name} matches this GPU, TensorRT and configuration", (), record)
