"""``bag eval``: pairing by stamp and PQ / STQ / VPQ from the project's metrics, on predictions made
from the ground truth itself (perfect, with identity switches, shifted in time, with gaps)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.apps.bag_eval import evaluate_bag, segment_map
from panoptic_ros.cli import main
from panoptic_ros.core.ids import CROWD_SEGMENT_BASE, STUFF_SEGMENT_BASE
from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.core.image_encode import array_to_image
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.messages import header_message, image_message
from panoptic_ros.data.bag_io import BagMessage, BagWriter, read_messages
from panoptic_ros.data.bag_synth import SynthBagConfig, write_synthetic_bag
from panoptic_ros.data.bag_types import BagError, to_rosbags
from panoptic_ros.runtime import outputs

LABELS = load_label_set("synthetic")
FRAMES = 6
#: (frame index, semantic, instance ids) of the ground truth -> prediction maps, or None to leave it out.
Predict = Callable[[int, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> list[BagMessage]:
    path = tmp_path_factory.mktemp("eval") / "gt"
    write_synthetic_bag(
        path, SynthBagConfig(cameras=1, sequences=2, frames=FRAMES // 2, size=(48, 96), seed=11)
    )
    return list(read_messages(path))


def _bag(tmp_path: Path, source: list[BagMessage], predict: Predict, *, categories: bool = True) -> Path:
    path = tmp_path / "bag"
    gt_semantic = [m for m in source if m.topic == "/cam0/ground_truth/semantic"]
    gt_ids = [m for m in source if m.topic == "/cam0/ground_truth/instance_ids"]
    with BagWriter(path) as writer:
        for m in source:
            if "ground_truth" in m.topic:
                writer.write_raw(m.topic, m.msgtype, m.raw, m.log_time_ns)
        if categories:
            message = outputs.categories(header_message(0, ""), outputs.OutputContext(LABELS, 1000))
            writer.write("/cam0/panoptic/categories", message.type, to_rosbags(message), 0)
        for index, (s, i) in enumerate(zip(gt_semantic, gt_ids, strict=True)):
            maps = predict(index, image_to_array(s.msg), image_to_array(i.msg, native=True))
            if maps is None:
                continue
            semantic, ids = maps
            for topic, image, gt in (
                ("/cam0/panoptic/semantic", array_to_image(semantic, "mono8"), s),
                ("/cam0/panoptic/instance_ids", array_to_image(ids.astype(np.int32), "32SC1"), i),
            ):
                message = image_message(image, gt.msg.header)  # the ground truth's rosbags header, as is
                writer.write(topic, message.type, to_rosbags(message), gt.log_time_ns)
    return path


def test_perfect_predictions_score_one(tmp_path: Path, source: list[BagMessage]) -> None:
    report = evaluate_bag(_bag(tmp_path, source, lambda k, s, i: (s, i)), progress=False)
    assert report.label_set == "synthetic"
    assert report.pq.all.pq == pytest.approx(1.0) and report.pq.things.n == 3
    assert report.video.stq == pytest.approx(1.0) and report.video.id_switches == 0
    assert report.cameras[0].matched == FRAMES and report.video.num_frames == FRAMES
    assert report.video.num_gt_tracks == report.video.num_pred_tracks > 3
    # VPQ: 6 frames hold windows for k = 0 and 5 only (VPQ undefined), unless they are 5 frames apart
    vpq = report.video.vpq
    assert vpq is not None and [w.windows for w in vpq.per_window] == [6, 1, 0, 0]
    assert vpq.per_window[1].result.all.pq == pytest.approx(1.0) and "VPQ" in report.table()
    apart = evaluate_bag(_bag(tmp_path / "b", source, lambda k, s, i: (s, i)), progress=False, frame_step=5)
    assert apart.video.vpq is not None and apart.video.vpq.vpq == pytest.approx((1.0, 1.0, 1.0))


def test_swapped_identities_cost_aq_but_not_pq(tmp_path: Path, source: list[BagMessage]) -> None:
    def swap_later_frames(k: int, s: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # every other frame, every thing gets another id: PQ per frame is unaffected, association is not
        return s, np.where(i > 0, i + 500, 0) if k % 2 else i

    report = evaluate_bag(_bag(tmp_path, source, swap_later_frames), progress=False)
    assert report.pq.all.pq == pytest.approx(1.0)
    assert report.video.aq < 0.7 and report.video.sq == pytest.approx(1.0)
    assert report.video.id_switches > 0
    # VPQ: single frames are perfect; in windows of 6 frames every thing tube is split between two ids,
    # so most of them lose their match (a part keeps it only when it holds over half of the tube)
    assert report.video.vpq is not None
    k0, k5 = (w.result for w in report.video.vpq.per_window[:2])
    assert k0.things.pq == pytest.approx(1.0) and k5.things.pq < 0.6 and k5.stuff.pq == pytest.approx(1.0)


def test_cli_options_and_json(
    tmp_path: Path, source: list[BagMessage], capsys: pytest.CaptureFixture[str]
) -> None:
    bag = _bag(tmp_path, source, lambda k, s, i: (s, i))
    out = tmp_path / "eval.json"
    args = [
        "bag",
        "eval",
        str(bag),
        "--stq-variant",
        "void-ignored",
        "--vpq-frame-step",
        "5",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    assert "STQ variant void-ignored: predictions on void ground truth left out" in capsys.readouterr().out
    video = json.loads(out.read_text())["video"]
    assert video["stq_variant"] == "void-ignored" and video["stq"] == pytest.approx(1.0)
    assert video["vpq"]["frame_step"] == 5 and video["vpq"]["vpq"]["All"] == pytest.approx(1.0)
    assert [w["windows"] for w in video["vpq"]["per_window"]] == [6, 5, 4, 3]


def test_pairs_by_stamp_so_a_time_shift_is_caught(tmp_path: Path, source: list[BagMessage]) -> None:
    gt = [
        (image_to_array(s.msg), image_to_array(i.msg, native=True))
        for s, i in zip(
            [m for m in source if m.topic == "/cam0/ground_truth/semantic"],
            [m for m in source if m.topic == "/cam0/ground_truth/instance_ids"],
            strict=True,
        )
    ]
    # each frame predicted with the maps of the next frame (stamped as this one)
    report = evaluate_bag(_bag(tmp_path, source, lambda k, s, i: gt[min(k + 1, FRAMES - 1)]), progress=False)
    assert report.pq.all.pq < 0.9


def test_unmatched_frames_are_reported(tmp_path: Path, source: list[BagMessage]) -> None:
    report = evaluate_bag(
        _bag(tmp_path, source, lambda k, s, i: None if k == 2 else (s, i), categories=False),
        LABELS,
        progress=False,
    )
    pairs = report.cameras[0]
    assert (pairs.namespace, pairs.matched, pairs.ground_truth_only, pairs.prediction_only) == (
        "/cam0",
        5,
        1,
        0,
    )
    assert re.search(r"\n/cam0 +5 +0 +1\n", report.table())
    assert report.to_dict()["cameras"][0]["ground_truth_only"] == 1


def test_label_set_needed_and_cameras_needed(tmp_path: Path, source: list[BagMessage]) -> None:
    bag = _bag(tmp_path, source, lambda k, s, i: (s, i), categories=False)
    with pytest.raises(BagError, match="panoptic/categories"):
        evaluate_bag(bag, progress=False)
    only_gt = tmp_path / "only_gt"
    with BagWriter(only_gt) as writer:
        m = source[0]
        writer.write_raw(m.topic, m.msgtype, m.raw, m.log_time_ns)
    with pytest.raises(BagError, match="no camera with panoptic/semantic"):
        evaluate_bag(only_gt, LABELS, progress=False)


def test_segment_map() -> None:
    semantic = np.array([[0, 0, 7, 7], [255, 5, 5, 7]], np.uint8)
    ids = np.array([[0, 0, 3, 3], [0, 4, 0, 3]], np.int32)
    segments, infos = segment_map(semantic, ids, LABELS, source="t")
    road, person_crowd = STUFF_SEGMENT_BASE + 0, CROWD_SEGMENT_BASE + 5
    # a person pixel without an id keeps its category (a crowd segment); void stays void
    assert segments.tolist() == [[road, road, 3, 3], [0, 4, person_crowd, 3]]
    assert [(s.id, s.category_id, s.iscrowd) for s in infos] == [
        (3, 7, False),
        (4, 5, False),
        (road, 0, False),
        (person_crowd, 5, True),
    ]
    # an id over two categories takes the more frequent one
    _, infos = segment_map(
        np.array([[7, 7, 5]], np.uint8), np.array([[2, 2, 2]], np.int32), LABELS, source="t"
    )
    assert [(s.id, s.category_id) for s in infos] == [(2, 7)]
    with pytest.raises(BagError, match=r"category ids \[9\]"):
        segment_map(np.array([[9]], np.uint8), np.array([[0]], np.int32), LABELS, source="t")
    with pytest.raises(BagError, match="differ in size"):
        segment_map(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.int32), LABELS, source="t")
    with pytest.raises(BagError, match="instance ids must lie"):
        segment_map(np.array([[7]], np.uint8), np.array([[STUFF_SEGMENT_BASE]], np.int32), LABELS, source="t")
