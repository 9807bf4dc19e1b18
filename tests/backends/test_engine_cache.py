"""The TensorRT engine cache without TensorRT: keys, names, sidecars, rebuild decisions, atomic writes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from panoptic_ros.backends import engine_cache, engine_key
from panoptic_ros.backends.base import BackendError
from panoptic_ros.backends.engine_cache import (
    calibration_cache_path,
    decide,
    engine_path_for,
    engine_sidecar_path,
    find_cached_engine,
    load_engine_spec,
    onnx_path_guess,
    read_sidecar,
    timing_cache_path,
    writable_cache_dir,
    write_engine,
)
from panoptic_ros.backends.engine_key import EngineCacheError, EngineKey, sha256_file
from panoptic_ros.models.spec import ModelSpec
from panoptic_ros.models.train import TrainConfig, synthetic_model_spec

ONNX_BYTES = b"not really onnx, but the cache only hashes the bytes" * 100


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return synthetic_model_spec(TrainConfig(width=8))


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "engines" / "panoptic_synthetic.onnx"
    path.parent.mkdir()
    path.write_bytes(ONNX_BYTES)
    return path


def make_key(onnx: Path | None = None, **changes: object) -> EngineKey:
    key = EngineKey(
        onnx_sha256=hashlib.sha256(ONNX_BYTES if onnx is None else onnx.read_bytes()).hexdigest(),
        gpu_name="Orin",
        compute_capability="8.7",
        tensorrt_version="10.3.0",
        precision="fp16",
        batch_profile=(1, 4, 4),
    )
    return dataclasses.replace(key, **changes)  # type: ignore[arg-type]


def built(onnx: Path, spec: ModelSpec, key: EngineKey, payload: bytes = b"engine bytes") -> Path:
    path = engine_path_for(onnx, key)
    write_engine(path, payload, key, spec, onnx_name=onnx.name, build={"precision_used": key.precision})
    return path


# -- keys and names ---------------------------------------------------------------------------------


def test_key_validates_its_fields() -> None:
    with pytest.raises(EngineCacheError, match="precision='int4'"):
        make_key(precision="int4")
    with pytest.raises(EngineCacheError, match=r"batch_profile=\(4, 1, 4\)"):
        make_key(batch_profile=(4, 1, 4))
    with pytest.raises(EngineCacheError, match="only meaningful for int8"):
        make_key(calibration_sha256="ab" * 32)
    assert isinstance(EngineCacheError("x"), BackendError)
    int8 = make_key(precision="int8", calibration_sha256="cd" * 32)
    assert int8.calibration_sha256 == "cd" * 32


def test_key_round_trips_and_hash_follows_every_field() -> None:
    key = make_key()
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key
    assert key.short_hash() == make_key().short_hash()
    assert len(key.short_hash()) == engine_key.SHORT_HASH_LENGTH
    variants = [
        make_key(onnx_sha256="0" * 64),
        make_key(gpu_name="NVIDIA H200"),
        make_key(compute_capability="9.0"),
        make_key(tensorrt_version="10.7.0"),
        make_key(precision="fp32"),
        make_key(batch_profile=(1, 8, 8)),
        make_key(precision="int8", calibration_sha256="ab" * 32),
        make_key(precision="int8", calibration_sha256="cd" * 32),
    ]
    hashes = {key.short_hash(), *(v.short_hash() for v in variants)}
    assert len(hashes) == len(variants) + 1
    with pytest.raises(EngineCacheError, match="invalid engine key"):
        EngineKey.from_dict({"gpu_name": "Orin"}, source="x.json key")


def test_mismatches_name_each_field_with_both_values() -> None:
    engine = make_key(tensorrt_version="10.3.0", batch_profile=(1, 4, 4))
    wanted = make_key(tensorrt_version="10.7.0", batch_profile=(1, 8, 8), gpu_name="NVIDIA H200")
    assert engine.mismatches(wanted) == (
        "GPU Orin != NVIDIA H200",
        "TensorRT version 10.3.0 != 10.7.0",
        "batch profile (min, opt, max) (1, 4, 4) != (1, 8, 8)",
    )
    assert engine.mismatches(engine) == ()
    onnx = make_key(onnx_sha256="a" * 64).mismatches(make_key(onnx_sha256="b" * 64))
    assert onnx == (f"ONNX sha256 {'a' * 12} != {'b' * 12}",)


def test_engine_names_sit_next_to_the_onnx(tmp_path: Path) -> None:
    onnx = tmp_path / "engines" / "panoptic_synthetic.onnx"
    key = make_key()
    path = engine_path_for(onnx, key)
    assert path == tmp_path / "engines" / f"panoptic_synthetic.{key.short_hash()}.engine"
    assert engine_sidecar_path(path) == tmp_path / "engines" / f"panoptic_synthetic.{key.short_hash()}.json"
    assert engine_path_for(onnx, key, tmp_path / "cache").parent == tmp_path / "cache"
    assert onnx_path_guess(path) == onnx
    assert onnx_path_guess(tmp_path / "my.model.engine") == tmp_path / "my.model.onnx"
    timing = timing_cache_path(tmp_path, "NVIDIA Jetson AGX Orin", "8.7", "10.3.0")
    assert timing.name == "nvidia-jetson-agx-orin-sm87-trt10.3.0.timing.cache"  # .gitignore: *.timing.cache
    calib = calibration_cache_path(tmp_path, onnx, "f" * 64)
    assert calib.name == f"panoptic_synthetic.{'f' * 12}.int8.calib.cache"  # .gitignore: *.calib.cache


def test_sha256_is_streamed_over_the_file_bytes(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) * 2 + 12345)  # spans several read chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(EngineCacheError, match="cannot read"):
        sha256_file(tmp_path / "missing.bin")


# -- sidecar ----------------------------------------------------------------------------------------


def test_sidecar_round_trip(onnx_file: Path, spec: ModelSpec) -> None:
    key = make_key(onnx_file)
    path = built(onnx_file, spec, key, b"\x00engine\xff" * 1000)
    data = json.loads(engine_sidecar_path(path).read_text())
    assert data["format"] == engine_key.SIDECAR_FORMAT
    assert data["key"] == key.to_dict() and data["spec"] == json.loads(spec.to_json())
    assert data["onnx"] == onnx_file.name and data["engine_bytes"] == 8000
    record = read_sidecar(path)
    assert record.key == key and record.spec == spec
    assert record.engine_sha256 == hashlib.sha256(b"\x00engine\xff" * 1000).hexdigest()
    assert record.build["precision_used"] == "fp16"
    assert load_engine_spec(path) == spec
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [onnx_file.name, path.name, engine_sidecar_path(path).name]
    )


def test_bad_sidecars_are_reported(onnx_file: Path, spec: ModelSpec) -> None:
    path = built(onnx_file, spec, make_key(onnx_file))
    sidecar = engine_sidecar_path(path)
    sidecar.write_text("{not json")
    with pytest.raises(EngineCacheError, match="not valid JSON"):
        read_sidecar(path)
    sidecar.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(EngineCacheError, match="format='something/else'"):
        read_sidecar(path)
    sidecar.write_text(spec.to_json())  # a model spec is not an engine sidecar
    with pytest.raises(EngineCacheError, match=r"expected 'panoptic_ros\.engine/1'"):
        read_sidecar(path)
    sidecar.unlink()
    with pytest.raises(EngineCacheError, match=f"has no sidecar {sidecar.name}"):
        load_engine_spec(path)


# -- decisions --------------------------------------------------------------------------------------


def test_no_engine_yet_means_build(onnx_file: Path) -> None:
    wanted = make_key(onnx_file)
    decision = decide(onnx_file, None, wanted)
    assert decision.action == "build" and decision.needs_build
    decision = decide(onnx_file, engine_path_for(onnx_file, wanted), wanted)
    assert decision.action == "build" and "no engine yet" in decision.reason
    missing = onnx_file.with_name("gone.onnx")
    decision = decide(missing, None, wanted)
    assert decision.action == "error" and "gone.onnx does not exist" in decision.reason
    with pytest.raises(EngineCacheError, match="no ONNX file to build one from"):
        decision.raise_if_error()


def test_matching_engine_is_used(onnx_file: Path, spec: ModelSpec) -> None:
    wanted = make_key(onnx_file)
    path = built(onnx_file, spec, wanted)
    decision = decide(onnx_file, path, wanted)
    assert decision.action == "use" and not decision.needs_build
    assert decision.record is not None and decision.record.spec == spec
    # an engine shipped without its ONNX file is fine as long as it fits
    onnx_file.unlink()
    assert decide(onnx_file, path, wanted).action == "use"
    assert decide(None, path, wanted).action == "use"
    assert find_cached_engine(onnx_file, wanted) == path
    assert find_cached_engine(onnx_file, make_key(gpu_name="another GPU")) is None


def test_missing_or_unreadable_sidecar_means_rebuild(onnx_file: Path, spec: ModelSpec) -> None:
    wanted = make_key(onnx_file)
    path = built(onnx_file, spec, wanted)
    sidecar = engine_sidecar_path(path)
    sidecar.unlink()
    decision = decide(onnx_file, path, wanted)
    assert decision.action == "rebuild"
    assert (
        "has no sidecar" in decision.reason
        and "rebuilding it from panoptic_synthetic.onnx" in decision.reason
    )
    sidecar.write_text("{")
    assert decide(onnx_file, path, wanted).action == "rebuild"
    onnx_file.unlink()
    decision = decide(onnx_file, path, wanted)
    assert decision.action == "error"
    assert "cannot tell what engine" in decision.reason and "supply the ONNX file" in decision.reason


FIELD_CHANGES = {
    "onnx_sha256": ({"onnx_sha256": "0" * 64}, "ONNX sha256"),
    "gpu_name": ({"gpu_name": "NVIDIA H200"}, "GPU Orin != NVIDIA H200"),
    "compute_capability": ({"compute_capability": "9.0"}, "compute capability 8.7 != 9.0"),
    "tensorrt_version": ({"tensorrt_version": "10.7.0"}, "TensorRT version 10.3.0 != 10.7.0"),
    "precision": ({"precision": "fp32"}, "precision fp16 != fp32"),
    "batch_profile": ({"batch_profile": (1, 8, 8)}, "batch profile (min, opt, max) (1, 4, 4) != (1, 8, 8)"),
    "calibration_sha256": (
        {"precision": "int8", "calibration_sha256": "ab" * 32},
        "INT8 calibration cache sha256 (none) != abababababab",
    ),
}


def test_every_key_field_is_compared() -> None:
    assert set(FIELD_CHANGES) == {f.name for f in dataclasses.fields(EngineKey)}


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_key_change_rebuilds_with_the_onnx_and_errors_without(
    field: str, onnx_file: Path, spec: ModelSpec
) -> None:
    changes, expected = FIELD_CHANGES[field]
    engine_key = make_key(onnx_file)
    if field == "calibration_sha256":  # the engine is int8 too, with another calibration cache
        engine_key = make_key(onnx_file, precision="int8")
    path = built(onnx_file, spec, engine_key)
    wanted = make_key(onnx_file, **changes)
    decision = decide(onnx_file, path, wanted)
    assert decision.action == "rebuild", decision.reason
    assert len(decision.mismatches) == 1 and expected in decision.mismatches[0]
    assert expected in decision.reason
    missing = onnx_file.with_name("elsewhere.onnx")
    decision = decide(missing, path, wanted)
    assert decision.action == "error"
    assert expected in decision.reason
    assert (
        "supply the ONNX file" in decision.reason and "rebuild the engine on this machine" in decision.reason
    )
    with pytest.raises(EngineCacheError, match="built for another configuration"):
        decision.raise_if_error()


def test_deserialization_failure_rebuilds_or_errors(onnx_file: Path, spec: ModelSpec) -> None:
    wanted = make_key(onnx_file)
    path = built(onnx_file, spec, wanted)
    failure = "Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed"
    decision = decide(onnx_file, path, wanted, load_failure=failure)
    assert decision.action == "rebuild" and failure in decision.reason
    decision = decide(None, path, wanted, load_failure=failure)
    assert (
        decision.action == "error"
        and failure in decision.reason
        and "supply the ONNX file" in decision.reason
    )


def test_engine_not_matching_its_sidecar_is_rebuilt(onnx_file: Path, spec: ModelSpec) -> None:
    wanted = make_key(onnx_file)
    path = built(onnx_file, spec, wanted, b"A" * 100)
    path.write_bytes(b"B" * 100)  # same size, other bytes: e.g. a crash between the two renames
    decision = decide(onnx_file, path, wanted)
    assert decision.action == "rebuild" and "not the one its sidecar describes" in decision.reason
    assert decide(onnx_file, path, wanted, verify_engine_hash=False).action == "use"


# -- atomic writes ----------------------------------------------------------------------------------


def test_failed_write_leaves_no_partial_files(
    onnx_file: Path, spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key(onnx_file)
    path = engine_path_for(onnx_file, key)
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the engine's temp file is written, the sidecar's fails
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(engine_cache.os, "fsync", failing_fsync)
    with pytest.raises(EngineCacheError, match="No space left on device"):
        write_engine(path, b"x" * 4096, key, spec, onnx_name=onnx_file.name)
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == [onnx_file.name]


def test_failed_write_keeps_the_previous_engine_usable(
    onnx_file: Path, spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key(onnx_file)
    path = built(onnx_file, spec, key, b"old engine")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(engine_cache.os, "fsync", failing_fsync)
    with pytest.raises(EngineCacheError, match="Input/output error"):
        write_engine(path, b"new engine", key, spec, onnx_name=onnx_file.name)
    monkeypatch.undo()
    assert path.read_bytes() == b"old engine"
    assert decide(onnx_file, path, key).action == "use"
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == sorted(
        [onnx_file.name, path.name, engine_sidecar_path(path).name]
    )


def test_failed_sidecar_rename_removes_the_new_engine(
    onnx_file: Path, spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key(onnx_file)
    path = engine_path_for(onnx_file, key)
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(engine_cache.os, "replace", failing_replace)
    with pytest.raises(EngineCacheError, match="Permission denied"):
        write_engine(path, b"x" * 10, key, spec, onnx_name=onnx_file.name)
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == [onnx_file.name]


def test_cache_dir_falls_back_to_the_user_cache(
    onnx_file: Path, spec: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert writable_cache_dir(onnx_file) == onnx_file.parent
    real_access = os.access

    def read_only_engines(path: str | Path, mode: int) -> bool:
        if Path(path) == onnx_file.parent and mode == os.W_OK:
            return False
        return real_access(path, mode)

    monkeypatch.setattr(engine_cache.os, "access", read_only_engines)
    folder = writable_cache_dir(onnx_file)
    assert folder == tmp_path / "xdg" / "panoptic_ros" / "engines"
    key = make_key(onnx_file)
    path = engine_path_for(onnx_file, key, folder)
    write_engine(path, b"engine", key, spec, onnx_name=onnx_file.name)
    assert find_cached_engine(onnx_file, key) == path
