"""The COCO panoptic format: its records, segment maps and PNG id encoding, without the folder.

This module owns what one annotation is, independently of where it is stored: the records of
``panoptic.json`` (:class:`SegmentInfo`, :class:`ImageRecord`, :class:`Annotation`, each with its JSON
form), :class:`DatasetError`, the checks of a segment map (``H x W`` ids in ``[0, 2**24)``, 0 = void)
and of its ids against ``segments_info``, the measurement of its segments (:func:`segment_stats`),
``segments_info`` for a segment map (:func:`segments_from_map`) or a combined ``category * divisor +
instance`` map (:func:`segments_from_panoptic`), the ``categories`` list of a label set and back,
and the PNG encoding of ids (``id = R + 256 * G + 256**2 * B``; :func:`write_segment_png`,
:func:`read_segment_png`).

The dataset folder (``panoptic.json`` plus the PNG and image folders), its writer and its reader are
:mod:`panoptic_ros.data.coco_panoptic`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, id_to_rgb, rgb_to_id
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.segments import segment_geometry
from panoptic_ros.errors import LabelSetError, PanopticRosError

VOID_ID = 0
MAX_SEGMENT_ID = (1 << 24) - 1

ImageId = int | str


class BBox(NamedTuple):
    """Axis-aligned box around a segment's pixels: top-left corner and size, in pixels (COCO's
    ``[x, y, width, height]``)."""

    x: int
    y: int
    width: int
    height: int


NO_BBOX = BBox(0, 0, 0, 0)


class DatasetError(PanopticRosError, ValueError):
    """A dataset folder, its JSON or one of its PNGs is missing, malformed or inconsistent.

    The message names the file (and the entry) that is wrong.
    """


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One entry of an annotation's ``segments_info``.

    ``id`` is the segment's value in the PNG (``1 .. 2**24 - 1``); ``bbox`` is ``(x, y, w, h)`` in
    pixels around the segment's pixels. Predictions need only ``id`` and ``category_id``.
    """

    id: int
    category_id: int
    iscrowd: bool = False
    area: int = 0
    bbox: BBox = NO_BBOX

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category_id": self.category_id,
            "iscrowd": int(self.iscrowd),
            "area": self.area,
            "bbox": list(self.bbox),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str) -> SegmentInfo:
        """Parse one ``segments_info`` entry; errors name ``source`` and the entry."""
        try:
            segment_id = int(data["id"])
            category_id = int(data["category_id"])
            iscrowd = int(data.get("iscrowd", 0))
            area = int(data.get("area", 0))
            bbox = BBox(*(int(v) for v in data.get("bbox", (0, 0, 0, 0))))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(
                f"{source}: segment {dict(data)!r} is not a segments_info entry ({type(err).__name__}: "
                f"{err}); expected id, category_id and optionally iscrowd, area, bbox [x, y, w, h]"
            ) from err
        if not 0 < segment_id <= MAX_SEGMENT_ID:
            raise DatasetError(f"{source}: segment id {segment_id} outside [1, {MAX_SEGMENT_ID}] (0 is void)")
        if iscrowd not in (0, 1):
            raise DatasetError(f"{source}: segment id {segment_id} has iscrowd={iscrowd}; expected 0 or 1")
        return cls(segment_id, category_id, bool(iscrowd), area, bbox)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One entry of ``images``: the input image file (relative to ``images/``) and its size."""

    id: ImageId
    file_name: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "file_name": self.file_name, "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, entry: Any, *, source: str) -> ImageRecord:
        """Parse one ``images`` entry; errors name ``source`` (the JSON file) and the entry."""
        try:
            image_id = entry["id"]
            if not isinstance(image_id, int | str) or isinstance(image_id, bool):
                raise TypeError(f"id {image_id!r} must be an integer or a string")
            record = cls(image_id, str(entry["file_name"]), int(entry["width"]), int(entry["height"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(
                f"{source}: image entry {entry!r} is invalid ({type(err).__name__}: {err}); expected id, "
                "file_name, width, height"
            ) from err
        if record.width <= 0 or record.height <= 0:
            raise DatasetError(f"{source}: image {record.id!r} has size {record.width} x {record.height}")
        return record


@dataclass(frozen=True, slots=True)
class Annotation:
    """One entry of ``annotations``: the PNG (relative to ``panoptic/``) and its segments."""

    image_id: ImageId
    file_name: str
    segments_info: tuple[SegmentInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "file_name": self.file_name,
            "segments_info": [s.to_json() for s in self.segments_info],
        }

    @classmethod
    def from_json(cls, entry: Any, *, source: str, label_set: LabelSet | None = None) -> Annotation:
        """Parse one ``annotations`` entry; errors name ``source`` (the JSON file) and the entry. With a
        ``label_set``, every segment's category must be in it."""
        try:
            image_id = entry["image_id"]
            file_name = str(entry["file_name"])
            raw_segments = entry["segments_info"]
            if not isinstance(image_id, int | str) or isinstance(image_id, bool):
                raise TypeError(f"image_id {image_id!r} must be an integer or a string")
            if not isinstance(raw_segments, list):
                raise TypeError("segments_info must be a list")
        except (KeyError, TypeError) as err:
            raise DatasetError(
                f"{source}: annotation {str(entry)[:200]} is invalid ({type(err).__name__}: {err}); "
                "expected image_id, file_name, segments_info"
            ) from err
        where = f"{source} annotation {file_name!r}"
        segments = tuple(SegmentInfo.from_json(s, source=where) for s in raw_segments)
        seen: set[int] = set()
        for segment in segments:
            if segment.id in seen:
                raise DatasetError(f"{where}: segment id {segment.id} appears twice in segments_info")
            seen.add(segment.id)
            if label_set is not None and segment.category_id not in label_set:
                raise DatasetError(
                    f"{where}: segment id {segment.id} has category_id {segment.category_id}, which is not "
                    "in 'categories'"
                )
        return cls(image_id=image_id, file_name=file_name, segments_info=segments)


class SegmentStats(NamedTuple):
    """Per-segment pixel statistics of a segment map, void (id 0) left out, sorted by id."""

    ids: np.ndarray  # int64 (n,)
    areas: np.ndarray  # int64 (n,)
    bboxes: np.ndarray  # int64 (n, 4): x, y, w, h


# --------------------------------------------------------------------------------------------------
# categories


def categories_to_json(label_set: LabelSet, supercategories: Mapping[int, str]) -> list[dict[str, Any]]:
    """The ``categories`` list of a label set; ``supercategories`` (category id -> name) defaults to
    ``"thing"``/``"stuff"``."""
    return [
        {
            "id": c.id,
            "name": c.name,
            "supercategory": supercategories.get(c.id, "thing" if c.is_thing else "stuff"),
            "isthing": int(c.is_thing),
            "color": list(c.color),
        }
        for c in label_set
    ]


def _default_color(category_id: int) -> tuple[int, int, int]:
    """A stable color for datasets whose categories carry none."""
    return (37 * category_id % 200 + 40, 91 * category_id % 200 + 40, 157 * category_id % 200 + 40)


def categories_from_json(
    entries: Sequence[Any], *, name: str, source: str
) -> tuple[LabelSet | None, dict[int, str]]:
    """The label set ``name`` of a ``categories`` list (None when it is empty) and its supercategories;
    errors name ``source`` (the JSON file) and the entry."""
    if not entries:
        return None, {}
    converted = []
    supercategories: dict[int, str] = {}
    for entry in entries:
        try:
            category_id = int(entry["id"])
            converted.append(
                {
                    "id": category_id,
                    "name": entry["name"],
                    "is_thing": entry["isthing"],
                    "color": entry.get("color") or _default_color(category_id),
                }
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise DatasetError(
                f"{source}: category {entry!r} is not a COCO panoptic category ({type(err).__name__}: "
                f"{err}); expected id, name, isthing and optionally supercategory, color"
            ) from err
        if "supercategory" in entry:
            supercategories[category_id] = str(entry["supercategory"])
    try:
        label_set = LabelSet.from_dict({"name": name, "categories": converted}, source=source)
    except LabelSetError as err:
        raise DatasetError(f"{source}: invalid categories: {err}") from err
    return label_set, supercategories


# --------------------------------------------------------------------------------------------------
# segment maps


def check_segment_map(segment_map: np.ndarray, *, source: str) -> np.ndarray:
    """``segment_map`` as an ``H x W`` int64 array of ids in ``[0, 2**24)``, else :class:`DatasetError`."""
    array = np.asarray(segment_map)
    if array.ndim != 2:
        raise DatasetError(f"{source}: a segment map must be H x W, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(f"{source}: a segment map must hold integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() > MAX_SEGMENT_ID):
        raise DatasetError(
            f"{source}: segment ids must lie in [0, {MAX_SEGMENT_ID}] (0 = void), "
            f"got [{array.min()}, {array.max()}]"
        )
    return array


def segment_stats(segment_map: np.ndarray) -> SegmentStats:
    """Area and bounding box of every non-void segment, measured by
    :func:`~panoptic_ros.core.segments.segment_geometry` on the CPU (no Python loop over pixels or
    segments)."""
    array = check_segment_map(segment_map, source="segment map")
    empty = np.zeros(0, dtype=np.int64)
    if array.size == 0:
        return SegmentStats(empty, empty, np.zeros((0, 4), dtype=np.int64))
    values, inverse = np.unique(array, return_inverse=True)
    inverse = inverse.reshape(array.shape)
    if values[0] == VOID_ID:  # void is not a segment: its pixels take the "no segment" index
        values = values[1:]
        inverse = np.where(inverse == 0, values.size, inverse - 1)
    index = torch.from_numpy(np.ascontiguousarray(inverse, dtype=np.int64))
    geometry = segment_geometry(index, int(values.size))
    return SegmentStats(values.astype(np.int64), geometry.areas.numpy(), geometry.bboxes.numpy())


def segments_from_map(
    segment_map: np.ndarray,
    category_of: Mapping[int, int],
    crowd: Collection[int] = (),
) -> tuple[SegmentInfo, ...]:
    """``segments_info`` (sorted by id) for every non-void id of ``segment_map``.

    Args:
        segment_map: ``H x W`` segment ids, 0 = void.
        category_of: segment id -> category id; must cover every id in the map. Ids without pixels
            are left out (the format has no empty segments).
        crowd: ids of crowd segments (``iscrowd = 1``).
    """
    stats = segment_stats(segment_map)
    missing = [int(i) for i in stats.ids if int(i) not in category_of]
    if missing:
        raise DatasetError(
            f"segment ids {missing[:10]} are in the segment map but have no category; "
            "give a category_id for every non-zero id"
        )
    crowd_ids = set(crowd)
    return tuple(
        SegmentInfo(
            id=int(segment_id),
            category_id=int(category_of[int(segment_id)]),
            iscrowd=int(segment_id) in crowd_ids,
            area=int(area),
            bbox=BBox(*(int(v) for v in bbox)),
        )
        for segment_id, area, bbox in zip(stats.ids, stats.areas, stats.bboxes, strict=True)
    )


def segments_from_panoptic(
    panoptic: np.ndarray, *, label_divisor: int = DEFAULT_LABEL_DIVISOR
) -> tuple[np.ndarray, tuple[SegmentInfo, ...]]:
    """Convert a combined panoptic map (``category * label_divisor + instance``, negative = void)
    into a segment map (ids ``1..n`` in order of combined id, 0 = void) and its ``segments_info``."""
    combined = np.asarray(panoptic, dtype=np.int64)
    if combined.ndim != 2:
        raise DatasetError(f"a panoptic map must be H x W, got shape {combined.shape}")
    values, inverse = np.unique(combined, return_inverse=True)
    labeled = values >= 0
    new_ids = np.where(labeled, np.cumsum(labeled), VOID_ID)
    if new_ids.size and new_ids.max() > MAX_SEGMENT_ID:
        raise DatasetError(f"{int(new_ids.max())} segments do not fit the 24-bit COCO segment ids")
    segment_map = new_ids[inverse.reshape(combined.shape)]
    category_of = {int(i): int(v // label_divisor) for i, v in zip(new_ids, values, strict=True) if v >= 0}
    return segment_map, segments_from_map(segment_map, category_of)


def check_ids_match(in_png: set[int], in_json: set[int], source: str) -> None:
    """The non-zero ids of a PNG must be exactly the ids of its ``segments_info``, else
    :class:`DatasetError` naming ``source`` and the ids on either side."""
    only_png = sorted(in_png - in_json)
    only_json = sorted(in_json - in_png)
    if only_png:
        raise DatasetError(
            f"{source}: segment ids {only_png[:10]} are in the PNG but not in segments_info "
            f"({len(only_png)} in all); every non-zero id needs a segments_info entry"
        )
    if only_json:
        raise DatasetError(
            f"{source}: segments_info lists ids {only_json[:10]} that have no pixels in the PNG "
            f"({len(only_json)} in all); remove them or fix the PNG"
        )


# --------------------------------------------------------------------------------------------------
# PNG I/O


def write_segment_png(path: Path, segment_map: np.ndarray) -> None:
    """Write a segment map as a COCO panoptic PNG (RGB-encoded ids)."""
    rgb = id_to_rgb(check_segment_map(segment_map, source=str(path)))
    write_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def read_segment_png(path: Path) -> np.ndarray:
    """Read a COCO panoptic PNG as ``H x W`` int64 segment ids."""
    if not path.is_file():
        raise DatasetError(f"panoptic PNG {path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise DatasetError(f"cannot read {path} as an image; is it a PNG file?")
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise DatasetError(
            f"{path}: a COCO panoptic PNG must be 8-bit RGB, got dtype {bgr.dtype} and shape {bgr.shape}"
        )
    return rgb_to_id(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def write_png(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (gray or BGR, as OpenCV takes it) as an image file, else :class:`DatasetError`."""
    try:
        ok = cv2.imwrite(str(path), array)
    except cv2.error as err:
        raise DatasetError(f"cannot write {path}: {err}") from err
    if not ok:
        raise DatasetError(f"cannot write {path}; check that the folder exists and is writable")
