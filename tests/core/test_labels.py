from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from panoptic_ros.core.labels import Category, LabelSet, load_label_set, shipped_label_sets
from panoptic_ros.errors import LabelSetError
from tests.conftest import REPO

SHARED_COCO = Path(__file__).resolve().parents[3] / "shared" / "data" / "coco_panoptic_categories.json"


def test_shipped_sets() -> None:
    assert set(shipped_label_sets()) >= {"cityscapes", "coco_panoptic", "synthetic"}


def test_cityscapes_train_ids_and_official_colors() -> None:
    cs = load_label_set("cityscapes")
    assert len(cs) == 19 and len(cs.thing_ids) == 8 and len(cs.stuff_ids) == 11
    assert [c.id for c in cs] == list(range(19))
    assert cs.by_name("road").color == (128, 64, 128)
    assert cs.by_name("car").color == (0, 0, 142) and cs.by_name("car").is_thing
    assert cs.by_name("sky").color == (70, 130, 180) and not cs.by_name("sky").is_thing
    assert cs.by_id(18).name == "bicycle"
    assert cs.void_semantic == 255


def test_coco_panoptic_matches_reference_table() -> None:
    coco = load_label_set("coco_panoptic")
    assert len(coco) == 133 and len(coco.thing_ids) == 80 and len(coco.stuff_ids) == 53
    if SHARED_COCO.is_file():  # the reference table next to the checkout
        reference = {c["id"]: c for c in json.loads(SHARED_COCO.read_text())}
        for category in coco:
            ref = reference[category.id]
            assert (category.name, category.is_thing, list(category.color)) == (
                ref["name"],
                bool(ref["isthing"]),
                ref["color"],
            )
    # class index and category id differ for COCO
    assert coco.class_to_id[0] == 1 and coco.class_to_id[-1] == 200
    assert coco.index_of(200) == 132


def test_synthetic_set() -> None:
    syn = load_label_set("synthetic")
    assert {c.name for c in syn if c.is_thing} >= {"car", "person"}
    assert {"road", "sky", "building", "vegetation", "sidewalk"} <= {c.name for c in syn if not c.is_thing}


def test_luts() -> None:
    syn = load_label_set("synthetic")
    assert syn.is_thing_lut.tolist() == [c.is_thing for c in syn]
    semantic = np.array([[0, 7], [255, 4]])
    colors = syn.color_lut[semantic]
    assert colors[0, 0].tolist() == [128, 64, 128]
    assert colors[1, 0].tolist() == [0, 0, 0]  # void is black


def test_mono16_void_for_large_ids() -> None:
    big = LabelSet("big", (Category(0, "a", False, (1, 2, 3)), Category(300, "b", True, (4, 5, 6))))
    assert big.void_semantic == 65535
    assert big.color_lut.shape == (65536, 3)


def test_round_trip_dict() -> None:
    coco = load_label_set("coco_panoptic")
    assert LabelSet.from_dict(coco.to_dict()) == coco


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "categories": []}, "no categories"),
        (
            {"name": "x", "categories": [{"id": 1, "name": "a", "is_thing": 0, "color": [1, 2, 3]}] * 2},
            "appears twice",
        ),
        ({"name": "x", "categories": [{"id": 1, "name": "a", "is_thing": 0, "color": [1, 2, 300]}]}, "color"),
        ({"name": "x", "categories": [{"id": -1, "name": "a", "is_thing": 0, "color": [1, 2, 3]}]}, "id=-1"),
        ({"name": "x", "categories": [{"id": 1, "name": "a", "color": [1, 2, 3]}]}, "is_thing"),
        (
            {"name": "x", "categories": [{"id": 1, "name": "a", "is_thing": "maybe", "color": [1, 2, 3]}]},
            "maybe",
        ),
        ({"categories": []}, "name"),
    ],
)
def test_invalid_label_sets_are_refused(data: dict, message: str) -> None:
    with pytest.raises(LabelSetError, match=message):
        LabelSet.from_dict(data, source="test.yaml")


def test_unknown_name_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(LabelSetError, match="shipped: cityscapes"):
        load_label_set("kitti")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(LabelSetError, match="not valid YAML"):
        load_label_set(bad)
    with pytest.raises(LabelSetError, match="cannot read"):
        load_label_set(tmp_path / "missing.yaml")
    with pytest.raises(LabelSetError, match="no category 'truck'"):
        load_label_set("synthetic").by_name("truck")


def test_a_label_set_hashes_by_its_fields_in_any_process() -> None:
    """The hash is worked out once per label set (it keys per-frame caches); equal sets hash equal, and
    a set sent to another process is rebuilt there (string hashes differ between processes)."""
    import pickle
    import subprocess
    import sys

    coco = load_label_set("coco_panoptic")
    same = LabelSet(coco.name, coco.categories)
    assert same == coco and hash(same) == hash(coco) and {coco: 1}[same] == 1
    payload = pickle.dumps(coco)
    script = (
        "import pickle, sys; from panoptic_ros.core.labels import LabelSet, load_label_set; "
        "s = pickle.loads(sys.stdin.buffer.read()); t = load_label_set('coco_panoptic'); "
        "print(s == t and hash(s) == hash(t) and {t: 1}[s] == 1)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=payload, capture_output=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == b"True"
