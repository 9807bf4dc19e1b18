from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core.ids import STUFF_SEGMENT_BASE
from panoptic_ros.data import synthetic
from panoptic_ros.data.coco_panoptic import read_dataset
from panoptic_ros.data.synthetic import export_coco, generate
from panoptic_ros.data.synthetic_scene import CAR, PERSON, SKY, THING_CLASSES, VEGETATION


def test_deterministic_by_seed() -> None:
    a = list(generate(2, seed=3))
    b = list(generate(2, seed=3))
    c = list(generate(2, seed=4))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.instance, y.instance)
    assert not np.array_equal(a[0].image, c[0].image)


def test_labels_are_consistent() -> None:
    for sample in generate(6, seed=11):
        h, w = synthetic.DEFAULT_SIZE
        assert sample.image.shape == (h, w, 3) and sample.image.dtype == np.uint8
        is_thing = np.isin(sample.semantic, THING_CLASSES)
        assert (sample.instance[~is_thing] == 0).all(), "stuff pixels must have instance 0"
        assert (sample.instance[is_thing] > 0).all(), "every thing pixel belongs to an instance"
        for instance_id in np.unique(sample.instance[is_thing]):
            classes = np.unique(sample.semantic[sample.instance == instance_id])
            assert classes.size == 1, f"instance {instance_id} has several classes {classes}"
        assert (sample.semantic == SKY).any()


def test_scenes_are_varied_and_textured() -> None:
    samples = list(generate(12, seed=5))
    counts = [np.unique(s.instance).size - 1 for s in samples]
    assert min(counts) >= 2 and max(counts) >= 8
    areas = np.concatenate([np.unique(s.instance[s.instance > 0], return_counts=True)[1] for s in samples])
    assert areas.min() < 150 and areas.max() > 3000, "small and large instances"
    touching = sum(
        int(np.unique(np.concatenate([s.instance[:, 0], s.instance[:, -1]])).size > 1) for s in samples
    )
    assert touching >= 3, "some things are cut by the frame border"
    # texture: a stuff region is not one flat color
    s = samples[0]
    assert s.image[s.semantic == SKY].std(axis=0).max() > 5
    classes = set(np.unique(np.concatenate([x.semantic.ravel() for x in samples])).tolist())
    assert {PERSON, CAR} <= classes


def test_sequences_keep_ids_and_move() -> None:
    frames = list(generate(1, seed=4, sequence_length=40))
    assert [f.frame for f in frames] == list(range(40))
    first_seen: dict[int, int] = {}
    cls: dict[int, int] = {}
    centroids: dict[int, list[float]] = {}
    for f in frames:
        for instance_id in np.unique(f.instance[f.instance > 0]):
            mask = f.instance == instance_id
            category = int(f.semantic[mask][0])
            assert cls.setdefault(int(instance_id), category) == category, "an id changed class"
            first_seen.setdefault(int(instance_id), f.frame)
            centroids.setdefault(int(instance_id), []).append(float(np.nonzero(mask)[1].mean()))
    assert any(v > 0 for v in first_seen.values()), "things enter during the sequence"
    last = set(np.unique(frames[-1].instance).tolist())
    assert any(i not in last for i in first_seen), "things leave during the sequence"
    moved = [abs(c[-1] - c[0]) for c in centroids.values() if len(c) > 10]
    assert max(moved) > 10, "things move"


def test_things_can_leave_and_come_back_and_pass_behind_trunks() -> None:
    plain = list(generate(3, seed=4, sequence_length=60))
    frames = list(generate(3, seed=4, sequence_length=60, returns=1.0, occluders=1))
    gaps = []
    for sequence in range(3):
        last: dict[int, int] = {}
        for f in frames[60 * sequence : 60 * (sequence + 1)]:
            for instance_id in np.unique(f.instance[f.instance > 0]).tolist():
                if instance_id in last and f.frame - last[instance_id] > 1:
                    gaps.append(f.frame - last[instance_id] - 1)
                last[instance_id] = f.frame
    assert len(gaps) >= 4 and max(gaps) >= synthetic.RETURN_FRAMES[0], "things disappear and come back"
    trunk = (frames[0].semantic == VEGETATION).all(axis=0)  # full-height vegetation columns
    assert trunk.sum() >= synthetic.OCCLUDER_WIDTH[0] * trunk.size - 2
    assert not (plain[0].semantic == VEGETATION).all(axis=0).any()
    # the options add to the default scene: the same things, the trunk in front
    np.testing.assert_array_equal(frames[0].instance[:, ~trunk], plain[0].instance[:, ~trunk])
    with pytest.raises(ValueError, match="returns"):
        next(generate(1, seed=0, sequence_length=2, returns=2.0))


def test_export_coco_round_trip(tmp_path: Path) -> None:
    folders = export_coco(tmp_path / "seqs", 1, seed=8, sequence_length=3, height=96, width=192)
    assert folders == [tmp_path / "seqs" / "seq_0000"]
    dataset = read_dataset(folders[0])
    assert len(dataset) == 3
    frames = list(generate(1, seed=8, sequence_length=3, height=96, width=192))
    for frame, annotation in zip(frames, sorted(dataset.annotations, key=lambda a: a.file_name), strict=True):
        segments = dataset.load_segment_map(annotation)
        things = {s.id: s.category_id for s in annotation.segments_info if s.id < STUFF_SEGMENT_BASE}
        assert set(things) == set(np.unique(frame.instance[frame.instance > 0]).tolist())
        assert np.array_equal(segments >= STUFF_SEGMENT_BASE, ~np.isin(frame.semantic, THING_CLASSES))
        assert np.array_equal(dataset.load_image(annotation), frame.image)


def test_export_refuses_existing(tmp_path: Path) -> None:
    export_coco(tmp_path / "a", 1, seed=1, height=32, width=64)
    with pytest.raises(Exception, match="already holds"):
        export_coco(tmp_path / "a", 1, seed=1, height=32, width=64)
