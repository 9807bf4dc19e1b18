"""The COCO panoptic format (:mod:`panoptic_ros.data.coco_format`: RGB id encoding, segments_info
from maps) and folder (:mod:`panoptic_ros.data.coco_panoptic`: writer/reader round trip and the errors
for broken folders)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_ros.core.labels import Category, LabelSet
from panoptic_ros.data.coco_format import (
    BBox,
    DatasetError,
    SegmentInfo,
    read_segment_png,
    segment_stats,
    segments_from_map,
    segments_from_panoptic,
    write_segment_png,
)
from panoptic_ros.data.coco_panoptic import CocoPanopticWriter, read_dataset

LABELS = LabelSet(
    "roundtrip",
    (
        Category(0, "road", False, (128, 64, 128)),
        Category(7, "car", True, (0, 0, 142)),
        Category(200, "wall", False, (102, 102, 156)),
    ),
)


def test_png_encodes_ids_as_rgb(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 256], [65536, 0x030201, (1 << 24) - 1]])
    path = tmp_path / "ids.png"
    write_segment_png(path, ids)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # OpenCV's channel order is BGR
    assert bgr[1, 1].tolist() == [3, 2, 1]  # R = 1, G = 2, B = 3
    assert bgr[0, 2].tolist() == [0, 1, 0]
    assert bgr[1, 0].tolist() == [1, 0, 0]
    np.testing.assert_array_equal(read_segment_png(path), ids)
    with pytest.raises(DatasetError, match=r"\[0, 16777215\]"):
        write_segment_png(path, np.array([[1 << 24]]))


def test_segment_stats_by_hand() -> None:
    ids = np.array(
        [
            [0, 5, 5, 0],
            [3, 5, 0, 0],
            [3, 3, 0, 9],
        ]
    )
    stats = segment_stats(ids)
    assert stats.ids.tolist() == [3, 5, 9]
    assert stats.areas.tolist() == [3, 3, 1]
    assert stats.bboxes.tolist() == [[0, 1, 2, 2], [1, 0, 2, 2], [3, 2, 1, 1]]
    segments = segments_from_map(ids, {3: 0, 5: 7, 9: 200, 11: 7}, crowd={9})
    assert segments == (
        SegmentInfo(3, 0, False, 3, BBox(0, 1, 2, 2)),
        SegmentInfo(5, 7, False, 3, BBox(1, 0, 2, 2)),
        SegmentInfo(9, 200, True, 1, BBox(3, 2, 1, 1)),
    )
    with pytest.raises(DatasetError, match=r"\[9\].*no category"):
        segments_from_map(ids, {3: 0, 5: 7})
    empty = segment_stats(np.zeros((0, 3), dtype=np.int64))
    assert empty.ids.size == 0 and empty.bboxes.shape == (0, 4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 12), width=st.integers(1, 12))
def test_segment_stats_match_masks(seed: int, height: int, width: int) -> None:
    ids = np.random.default_rng(seed).integers(0, 6, (height, width)) * 1000
    stats = segment_stats(ids)
    expected_ids = [int(i) for i in np.unique(ids) if i]
    assert stats.ids.tolist() == expected_ids
    for k, segment_id in enumerate(expected_ids):
        rows, cols = np.nonzero(ids == segment_id)
        assert stats.areas[k] == rows.size
        box = [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
        assert stats.bboxes[k].tolist() == box


def test_segments_from_panoptic() -> None:
    combined = np.array([[-1, 7001, 7001], [0, 0, 7002], [200000, 0, -1]])
    segment_map, segments = segments_from_panoptic(combined)
    # combined ids in order: 0 (road) -> 1, 7001 -> 2, 7002 -> 3, 200000 -> 4
    np.testing.assert_array_equal(segment_map, [[0, 2, 2], [1, 1, 3], [4, 1, 0]])
    assert [(s.id, s.category_id, s.area) for s in segments] == [(1, 0, 3), (2, 7, 2), (3, 7, 1), (4, 200, 1)]


def _sample(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, tuple[SegmentInfo, ...]]:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    segment_map = np.kron(rng.integers(0, 5, (3, 3)), np.ones((height // 3 + 1, width // 3 + 1), np.int64))
    segment_map = segment_map[:height, :width] * 70001  # ids spanning all three bytes
    category_of = {int(i): [0, 7, 200][int(i) % 3] for i in np.unique(segment_map) if i}
    crowd = [i for i in category_of if category_of[i] == 7][:1]
    return image, segment_map, segments_from_map(segment_map, category_of, crowd)


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    samples = {"frame_a": _sample(rng, 15, 20), "frame_b": _sample(rng, 9, 7)}
    with CocoPanopticWriter(tmp_path, LABELS) as writer:
        for stem, (image, segment_map, segments) in samples.items():
            written = writer.add(stem, image, segment_map, segments)
            assert written.segments_info == segments
        assert len(writer) == 2
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left nothing behind

    dataset = read_dataset(tmp_path)
    assert len(dataset) == 2
    assert dataset.label_set == LABELS
    assert dataset.supercategories == {0: "stuff", 7: "thing", 200: "stuff"}
    for stem, (image, segment_map, segments) in samples.items():
        annotation = dataset.annotation(f"{stem}.png")
        assert annotation.segments_info == segments
        assert dataset.annotation_for_image(annotation.image_id) is annotation
        record = dataset.image(annotation.image_id)
        assert (record.file_name, record.height, record.width) == (f"{stem}.png", *segment_map.shape)
        loaded = dataset.load_segment_map(annotation)
        assert loaded.dtype == np.int64
        np.testing.assert_array_equal(loaded, segment_map)
        np.testing.assert_array_equal(dataset.load_segment_map(f"{stem}.png"), segment_map)
        np.testing.assert_array_equal(dataset.load_image(annotation), image)
        np.testing.assert_array_equal(dataset.load_image(record.id), image)
    data = json.loads((tmp_path / "panoptic.json").read_text())
    assert data["categories"][1] == {
        "id": 7,
        "name": "car",
        "supercategory": "thing",
        "isthing": 1,
        "color": [0, 0, 142],
    }
    assert set(data["annotations"][0]["segments_info"][0]) == {"id", "category_id", "iscrowd", "area", "bbox"}


def test_writer_without_images_and_area_bbox_recomputed(tmp_path: Path) -> None:
    segment_map = np.array([[0, 4], [4, 4]])
    with CocoPanopticWriter(tmp_path, LABELS, supercategories={7: "vehicle"}) as writer:
        (written,) = writer.add("p", None, segment_map, [SegmentInfo(4, 7, area=99)]).segments_info
    assert written == SegmentInfo(4, 7, False, 3, BBox(0, 0, 2, 2))
    assert not (tmp_path / "images" / "p.png").exists()
    dataset = read_dataset(tmp_path)
    assert dataset.supercategories[7] == "vehicle"
    with pytest.raises(DatasetError, match=r"images/p\.png does not exist"):
        dataset.load_image(dataset.annotation("p.png"))


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    segment_map = np.array([[0, 4], [5, 5]])
    with CocoPanopticWriter(tmp_path, LABELS) as writer:
        with pytest.raises(DatasetError, match=r"\[5\] are in the PNG but not in segments_info"):
            writer.add("a", None, segment_map, [SegmentInfo(4, 7)])
        with pytest.raises(DatasetError, match=r"\[6\] that have no pixels"):
            writer.add("a", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0), SegmentInfo(6, 0)])
        with pytest.raises(DatasetError, match="category_id 3"):
            writer.add("a", None, segment_map, [SegmentInfo(4, 3), SegmentInfo(5, 0)])
        with pytest.raises(DatasetError, match="listed twice"):
            writer.add("a", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(4, 0)])
        with pytest.raises(DatasetError, match="like its segment map"):
            writer.add(
                "a", np.zeros((3, 2, 3), np.uint8), segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0)]
            )
        with pytest.raises(DatasetError, match="plain file name"):
            writer.add("sub/a", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0)])
        writer.add("a", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0)])
        with pytest.raises(DatasetError, match="already added"):
            writer.add("a", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0)])
    with pytest.raises(DatasetError, match="closed"):
        writer.add("b", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0)])
    # the folder now holds a dataset: a new writer needs overwrite=True
    with pytest.raises(DatasetError, match="overwrite=True"):
        CocoPanopticWriter(tmp_path, LABELS)
    with CocoPanopticWriter(tmp_path, LABELS, overwrite=True) as writer:
        writer.add("c", None, segment_map, [SegmentInfo(4, 7), SegmentInfo(5, 0)])
    assert [a.file_name for a in read_dataset(tmp_path).annotations] == ["c.png"]


def test_writer_leaves_no_json_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), CocoPanopticWriter(tmp_path, LABELS) as writer:
        writer.add("a", None, np.array([[4]]), [SegmentInfo(4, 7)])
        raise RuntimeError("interrupted")
    assert not (tmp_path / "panoptic.json").exists()
    with pytest.raises(DatasetError, match=r"panoptic\.json does not exist"):
        read_dataset(tmp_path)


def _dataset(tmp_path: Path) -> Path:
    with CocoPanopticWriter(tmp_path, LABELS) as writer:
        writer.add("a", None, np.array([[0, 4], [5, 5]]), [SegmentInfo(4, 7), SegmentInfo(5, 0)])
    return tmp_path


def _edit_json(root: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    path = root / "panoptic.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_reader_errors_for_missing_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")
    root = _dataset(tmp_path / "d")
    (root / "panoptic.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"panoptic\.json is not valid JSON"):
        read_dataset(root)
    (root / "panoptic.json").write_text("[]")
    with pytest.raises(DatasetError, match="'annotations' list"):
        read_dataset(root)

    root = _dataset(tmp_path / "e")
    _edit_json(root, lambda d: d["annotations"][0]["segments_info"][0].update(category_id=3))
    with pytest.raises(DatasetError, match=r"'a\.png'.*category_id 3"):
        read_dataset(root)

    root = _dataset(tmp_path / "f")
    _edit_json(root, lambda d: d["annotations"][0].pop("segments_info"))
    with pytest.raises(DatasetError, match="segments_info"):
        read_dataset(root)

    root = _dataset(tmp_path / "g")
    _edit_json(root, lambda d: d["annotations"][0].update(image_id=99))
    with pytest.raises(DatasetError, match="image_id 99"):
        read_dataset(root)

    root = _dataset(tmp_path / "h")
    _edit_json(root, lambda d: d["annotations"].append(dict(d["annotations"][0])))
    with pytest.raises(DatasetError, match="appears twice"):
        read_dataset(root)

    root = _dataset(tmp_path / "i")
    _edit_json(root, lambda d: d["categories"].append(dict(d["categories"][0])))
    with pytest.raises(DatasetError, match=r"invalid categories.*appears twice"):
        read_dataset(root)

    root = _dataset(tmp_path / "j")
    _edit_json(root, lambda d: d["annotations"][0]["segments_info"][0].update(id=0))
    with pytest.raises(DatasetError, match="0 is void"):
        read_dataset(root)


def test_reader_errors_for_inconsistent_pngs(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "a")
    _edit_json(root, lambda d: d["annotations"][0]["segments_info"].pop())
    dataset = read_dataset(root)
    with pytest.raises(DatasetError, match=r"panoptic/a\.png: segment ids \[5\] are in the PNG but not"):
        dataset.load_segment_map("a.png")
    dataset.load_segment_map("a.png", check_ids=False)  # the check can be left to the caller

    root = _dataset(tmp_path / "b")
    _edit_json(root, lambda d: d["annotations"][0]["segments_info"].append({"id": 6, "category_id": 0}))
    with pytest.raises(DatasetError, match=r"a\.png: segments_info lists ids \[6\] that have no pixels"):
        read_dataset(root).load_segment_map("a.png")

    root = _dataset(tmp_path / "c")
    _edit_json(root, lambda d: d["images"][0].update(width=3))
    with pytest.raises(DatasetError, match=r"a\.png is 2 x 2 .* is 3 x 2"):
        read_dataset(root).load_segment_map("a.png")

    root = _dataset(tmp_path / "d")
    (root / "panoptic" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"a\.png does not exist"):
        read_dataset(root).load_segment_map("a.png")

    root = _dataset(tmp_path / "e")
    cv2.imwrite(str(root / "panoptic" / "a.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match="must be 8-bit RGB"):
        read_dataset(root).load_segment_map("a.png")

    (root / "panoptic" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read"):
        read_dataset(root).load_segment_map("a.png")

    with pytest.raises(DatasetError, match=r"no annotation with file_name 'zz\.png'"):
        read_dataset(root).annotation("zz.png")


def test_reads_official_layout_without_colors_and_with_string_ids(tmp_path: Path) -> None:
    png_dir = tmp_path / "annotations" / "panoptic_val"
    png_dir.mkdir(parents=True)
    write_segment_png(png_dir / "city_000001.png", np.array([[0, 300], [300, 300]]))
    json_file = tmp_path / "annotations" / "panoptic_val.json"
    json_file.write_text(
        json.dumps(
            {
                "images": [{"id": "city_000001", "file_name": "city_000001.jpg", "width": 2, "height": 2}],
                "annotations": [
                    {
                        "image_id": "city_000001",
                        "file_name": "city_000001.png",
                        "segments_info": [{"id": 300, "category_id": 26, "iscrowd": 0}],
                    }
                ],
                "categories": [{"id": 26, "name": "car", "supercategory": "vehicle", "isthing": 1}],
            }
        )
    )
    dataset = read_dataset(tmp_path, json_file=json_file, panoptic_dir=png_dir)
    assert dataset.label_set is not None and dataset.label_set.by_id(26).is_thing
    assert dataset.label_set.name == tmp_path.name
    annotation = dataset.annotation_for_image("city_000001")
    assert annotation.segments_info == (SegmentInfo(300, 26),)
    np.testing.assert_array_equal(dataset.load_segment_map(annotation), [[0, 300], [300, 300]])


def test_predictions_without_images_or_categories(tmp_path: Path) -> None:
    (tmp_path / "panoptic").mkdir()
    write_segment_png(tmp_path / "panoptic" / "a.png", np.array([[1]]))
    (tmp_path / "panoptic.json").write_text(
        json.dumps(
            {
                "annotations": [
                    {"image_id": 1, "file_name": "a.png", "segments_info": [{"id": 1, "category_id": 5}]}
                ]
            }
        )
    )
    dataset = read_dataset(tmp_path)
    assert dataset.label_set is None and dataset.images == ()
    np.testing.assert_array_equal(dataset.load_segment_map("a.png"), [[1]])
