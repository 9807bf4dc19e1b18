"""The `panoptic-ros` command as users run it (a subprocess of the installed entry point)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("panoptic-ros")
    assert exe, "panoptic-ros is not on PATH (make setup installs it)"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_labels_lists_and_prints() -> None:
    listing = _run("labels")
    assert (
        listing.returncode == 0 and "coco_panoptic" in listing.stdout and "133 categories" in listing.stdout
    )
    one = _run("labels", "cityscapes")
    assert "id  13  thing  #00008e  car" in one.stdout


def test_offline_demo_records_replays_segments_and_counts_malformed_frames(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = _run("demo", "--offline", "--out", str(out), "--frames", "10", "--storage", "mcap")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["decoded"] == {
        "/front/image_raw": 9,
        "/left/image_raw": 10,
        "/right/image_raw": 10,
        "/rear/image_raw/compressed": 9,
    }
    assert report["malformed"] == {"/front/image_raw": 1, "/rear/image_raw/compressed": 1}
    assert "fewer than step * height" in report["reasons"]["/front/image_raw"][0]
    assert "JPEG data (" in report["reasons"]["/rear/image_raw/compressed"][0]
    assert "is corrupt or truncated" in report["reasons"]["/rear/image_raw/compressed"][0]
    assert (
        len(list((out / "frames").rglob("*.png"))) == report["frames_written"] == 4
    )  # every 10th per camera
    # every good frame went through the model and the tracker: predictions and overlays
    assert report["segmented_frames"] == 38
    assert len(list((out / "overlay").glob("*.jpg"))) == 38
    predictions = json.loads((out / "panoptic.json").read_text())
    assert len(predictions["annotations"]) == 38
    assert any(s["category_id"] == 7 for a in predictions["annotations"] for s in a["segments_info"])  # cars

    # The decode tool on the same bag, one topic, every 5th frame.
    again = _run(
        "decode",
        "--input",
        str(out / "camera_bag"),
        "--out",
        str(tmp_path / "dec"),
        "--topic",
        "/left/image_raw",
        "--every",
        "5",
    )
    assert again.returncode == 0 and "/left/image_raw" in again.stdout
    assert len(list((tmp_path / "dec").rglob("*.png"))) == 2


def test_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    result = _run("bag-info", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.startswith("panoptic-ros bag info: error: bag ")
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    bad = _run("labels", "kitti")
    assert bad.returncode == 2 and "shipped: cityscapes" in bad.stderr


def test_synth_eval_and_infer_errors(tmp_path: Path) -> None:
    result = _run("synth", "--out", str(tmp_path / "s"), "--count", "0", "--seed", "1")
    assert result.returncode == 2 and "--count" in result.stderr
    returns = _run("synth", "--out", str(tmp_path / "r"), "--count", "1", "--seed", "1", "--returns", "2")
    assert returns.returncode == 2 and "--returns 2.0 must lie in [0, 1]" in returns.stderr
    made = _run(
        "synth",
        "--out",
        str(tmp_path / "s"),
        "--count",
        "2",
        "--seed",
        "1",
        "--width",
        "64",
        "--height",
        "32",
    )
    assert made.returncode == 0, made.stderr
    again = _run("synth", "--out", str(tmp_path / "s"), "--count", "2", "--seed", "1")
    assert again.returncode == 2 and "already holds" in again.stderr
    missing = _run("eval", "--gt", str(tmp_path / "s"), "--pred", str(tmp_path / "s_missing"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    bad_input = _run("infer", "--input", str(tmp_path / "nothing.xyz"), "--out", str(tmp_path / "p"))
    assert bad_input.returncode == 2 and "does not exist" in bad_input.stderr
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    bad_model = _run(
        "infer",
        "--model",
        str(tmp_path / "junk.onnx"),
        "--input",
        str(tmp_path / "s"),
        "--out",
        str(tmp_path / "p"),
    )
    assert bad_model.returncode == 2 and "not a readable ONNX file" in bad_model.stderr
    graph_on_cpu = _run(
        "infer",
        "--input",
        str(tmp_path / "s"),
        "--out",
        str(tmp_path / "g"),
        "--device",
        "cpu",
        "--cuda-graph",
    )
    assert (
        graph_on_cpu.returncode == 2 and "cuda_graph: a CUDA graph needs a CUDA device" in graph_on_cpu.stderr
    )
    assert "Traceback" not in graph_on_cpu.stderr
