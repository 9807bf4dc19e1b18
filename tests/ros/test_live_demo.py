"""``make demo`` in small: synthetic bag -> node (own process, real DDS) -> recorder; the summary has
frames in/out, rate, latency percentiles, PQ and STQ, and the contact sheet is written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2

from tests.conftest import REPO


def test_live_demo_summary_and_contact_sheet(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--cameras", "2", "--frames", "8", "--rate", "0.5"]
    result = subprocess.run(
        [sys.executable, "-m", "panoptic_ros.cli", *args, "--backend", "onnxruntime", "--device", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cameras"] == 2 and summary["frames_in"] == 16
    assert 0 < summary["frames_out"] <= summary["frames_in"]
    # every frame is accounted for, from the node's final counts (published at its shutdown)
    # sent = received + lost before the callback + not delivered (known only from the player's count)
    assert 0 <= summary["frames_in"] - summary["received"] - summary["lost_before_callback"] <= 2, summary
    assert summary["received"] == (
        summary["published"]
        + summary["frames_dropped"]
        + summary["bad_frames"]
        + summary["failed"]
        + summary["in_flight"]
    ), summary
    assert summary["frames_out"] == summary["published"]  # every published label image was recorded
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert 0 < latency["start_max"] <= latency["max"]  # the stream's first second, reported apart
    assert summary["output_rate_hz"] > 0
    # the node, the player and the recorder loaded the shipped Fast DDS profile, as the launch files do
    assert Path(summary["dds_profile"]) == REPO / "config" / "fastdds_large_images.xml"
    # the shipped model on unseen synthetic sequences, against the bag's ground truth
    assert summary["pq"] > 60 and summary["stq"] > 50, summary
    assert not math.isnan(summary["pq_things"])
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] == 2 * 240  # one row per camera
    for name in ("PQ", "STQ", "latency", "the stream's first second", "frames in / out", "accounted for"):
        assert name in result.stdout
    assert str(out / "contact_sheet.png") in result.stdout


def test_a_missing_dds_profile_is_refused_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.xml"
    args = ["demo", "--out", str(tmp_path / "demo"), "--fastdds-profile", str(missing)]
    result = subprocess.run(
        [sys.executable, "-m", "panoptic_ros.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no Fast DDS profile {missing}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "demo" / "input_bag").exists()  # refused before any work
