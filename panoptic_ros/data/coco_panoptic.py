"""The COCO panoptic dataset format: one folder per dataset (ground truth or predictions).

Layout::

    root/
      images/<stem>.png      input images (optional; predictions usually have none)
      panoptic/<stem>.png    segment ids as RGB: id = R + 256 * G + 256**2 * B, 0 = void
      panoptic.json          {"images": [...], "annotations": [...], "categories": [...]}

``panoptic.json`` holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
(``image_id``, ``file_name`` of the PNG, ``segments_info``: ``id``, ``category_id``, ``iscrowd``,
``area``, ``bbox`` = ``[x, y, w, h]``) and ``categories`` (``id``, ``name``, ``supercategory``,
``isthing``, ``color``). This is the format the reference PQ tool (``pq_compute``) reads.

:class:`CocoPanopticWriter` writes such a folder, :func:`read_dataset` reads one (the official COCO
files too, by naming the JSON file and folders), :func:`segments_from_map` builds ``segments_info``
for a segment map, :func:`segments_from_panoptic` converts a combined ``category * divisor +
instance`` map into a segment map plus ``segments_info``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import cv2
import numpy as np

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, id_to_rgb, rgb_to_id
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.types import BBox
from panoptic_ros.errors import LabelSetError, PanopticRosError

JSON_NAME = "panoptic.json"
PANOPTIC_DIR = "panoptic"
IMAGES_DIR = "images"
VOID_ID = 0
MAX_SEGMENT_ID = (1 << 24) - 1

ImageId = int | str
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


class SegmentStats(NamedTuple):
    """Per-segment pixel statistics of a segment map, void (id 0) left out, sorted by id."""

    ids: np.ndarray  # int64 (n,)
    areas: np.ndarray  # int64 (n,)
    bboxes: np.ndarray  # int64 (n, 4): x, y, w, h


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
    """Area and bounding box of every non-void segment, from one sort of the pixels (no Python
    loop over pixels or segments)."""
    array = check_segment_map(segment_map, source="segment map")
    width = array.shape[1]
    flat = array.ravel()
    empty = np.zeros(0, dtype=np.int64)
    if flat.size == 0:
        return SegmentStats(empty, empty, np.zeros((0, 4), dtype=np.int64))
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))
    ids = ordered[starts]
    areas = np.diff(np.concatenate((starts, [flat.size])))
    rows, cols = np.divmod(order, width)
    x0 = np.minimum.reduceat(cols, starts)
    x1 = np.maximum.reduceat(cols, starts)
    y0 = np.minimum.reduceat(rows, starts)
    y1 = np.maximum.reduceat(rows, starts)
    bboxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1).astype(np.int64)
    keep = ids != VOID_ID
    return SegmentStats(ids[keep], areas[keep].astype(np.int64), bboxes[keep])


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


# --------------------------------------------------------------------------------------------------
# PNG I/O


def write_segment_png(path: Path, segment_map: np.ndarray) -> None:
    """Write a segment map as a COCO panoptic PNG (RGB-encoded ids)."""
    rgb = id_to_rgb(check_segment_map(segment_map, source=str(path)))
    _write_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


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


def _write_png(path: Path, array: np.ndarray) -> None:
    try:
        ok = cv2.imwrite(str(path), array)
    except cv2.error as err:
        raise DatasetError(f"cannot write {path}: {err}") from err
    if not ok:
        raise DatasetError(f"cannot write {path}; check that the folder exists and is writable")


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as stream:
            json.dump(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"cannot write {path}: {err}") from err


# --------------------------------------------------------------------------------------------------
# writer


class CocoPanopticWriter:
    """Writes a COCO panoptic folder: PNGs on :meth:`add`, ``panoptic.json`` atomically on :meth:`close`.

    Use it as a context manager; when the block raises, ``panoptic.json`` is not written, so a
    half-written folder is never mistaken for a complete dataset.

    Args:
        root: the dataset folder (created if needed).
        label_set: the categories written to ``categories``; every segment's category must be in it.
        overwrite: allow a folder that already holds ``panoptic.json`` or panoptic PNGs (files with
            the same names are replaced, ``panoptic.json`` lists only what this writer added).
        supercategories: optional category id -> supercategory name; default ``"thing"``/``"stuff"``.
    """

    def __init__(
        self,
        root: Path,
        label_set: LabelSet,
        *,
        overwrite: bool = False,
        supercategories: Mapping[int, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.label_set = label_set
        self._supercategories = dict(supercategories or {})
        self._images: list[ImageRecord] = []
        self._annotations: list[Annotation] = []
        self._stems: set[str] = set()
        self._closed = False
        png_dir = self.root / PANOPTIC_DIR
        if not overwrite and (
            (self.root / JSON_NAME).exists() or (png_dir.is_dir() and any(png_dir.glob("*.png")))
        ):
            raise DatasetError(
                f"{self.root} already holds a COCO panoptic dataset; choose an empty folder or pass "
                "overwrite=True"
            )
        try:
            png_dir.mkdir(parents=True, exist_ok=True)
            (self.root / IMAGES_DIR).mkdir(exist_ok=True)
        except OSError as err:
            raise DatasetError(f"cannot create the dataset folders under {self.root}: {err}") from err

    def __enter__(self) -> CocoPanopticWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True

    def __len__(self) -> int:
        return len(self._annotations)

    def add(
        self,
        file_stem: str,
        image_rgb: np.ndarray | None,
        segment_map: np.ndarray,
        segments: Sequence[SegmentInfo],
    ) -> Annotation:
        """Write one image: ``images/<stem>.png`` (when ``image_rgb`` is given) and
        ``panoptic/<stem>.png``.

        ``segments`` must list every non-zero id of ``segment_map`` exactly once; their ``id``,
        ``category_id`` and ``iscrowd`` are kept, ``area`` and ``bbox`` are recomputed from the map.
        Returns the annotation as it will appear in ``panoptic.json``.
        """
        if self._closed:
            raise DatasetError(f"writer for {self.root} is closed; open a new one to add images")
        if not file_stem or any(sep in file_stem for sep in ("/", "\\")) or file_stem in (".", ".."):
            raise DatasetError(f"file_stem {file_stem!r} must be a plain file name without folders")
        if file_stem in self._stems:
            raise DatasetError(f"{self.root}: image {file_stem!r} was already added")
        file_name = f"{file_stem}.png"
        source = f"{self.root / PANOPTIC_DIR / file_name}"
        ids = check_segment_map(segment_map, source=source)
        height, width = ids.shape
        written = self._checked_segments(ids, segments, source)
        if image_rgb is not None:
            image = np.asarray(image_rgb)
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.shape[:2] != (height, width):
                raise DatasetError(
                    f"{self.root / IMAGES_DIR / file_name}: the image must be uint8 {height} x {width} "
                    f"(x 3, RGB) like its segment map, got dtype {image.dtype} and shape {image.shape}"
                )
            if image.ndim == 3:
                if image.shape[2] != 3:
                    raise DatasetError(f"{file_name}: expected 3 RGB channels, got {image.shape[2]}")
                image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            _write_png(self.root / IMAGES_DIR / file_name, image)
        write_segment_png(self.root / PANOPTIC_DIR / file_name, ids)
        image_id = len(self._images) + 1
        annotation = Annotation(image_id=image_id, file_name=file_name, segments_info=written)
        self._images.append(ImageRecord(image_id, file_name, width, height))
        self._annotations.append(annotation)
        self._stems.add(file_stem)
        return annotation

    def _checked_segments(
        self, ids: np.ndarray, segments: Sequence[SegmentInfo], source: str
    ) -> tuple[SegmentInfo, ...]:
        by_id: dict[int, SegmentInfo] = {}
        for segment in segments:
            if segment.id in by_id:
                raise DatasetError(f"{source}: segment id {segment.id} is listed twice in segments")
            if segment.category_id not in self.label_set:
                raise DatasetError(
                    f"{source}: segment id {segment.id} has category_id {segment.category_id}, which label "
                    f"set {self.label_set.name!r} does not have"
                )
            by_id[segment.id] = segment
        stats = segment_stats(ids)
        present = {int(i) for i in stats.ids}
        _check_ids_match(present, set(by_id), source)
        return tuple(
            SegmentInfo(
                id=int(segment_id),
                category_id=by_id[int(segment_id)].category_id,
                iscrowd=by_id[int(segment_id)].iscrowd,
                area=int(area),
                bbox=BBox(*(int(v) for v in bbox)),
            )
            for segment_id, area, bbox in zip(stats.ids, stats.areas, stats.bboxes, strict=True)
        )

    def close(self) -> Path:
        """Write ``panoptic.json`` (atomically) and return its path; a second call does nothing."""
        path = self.root / JSON_NAME
        if self._closed:
            return path
        self._closed = True
        categories = [
            {
                "id": c.id,
                "name": c.name,
                "supercategory": self._supercategories.get(c.id, "thing" if c.is_thing else "stuff"),
                "isthing": int(c.is_thing),
                "color": list(c.color),
            }
            for c in self.label_set
        ]
        data = {
            "info": {"description": "written by panoptic_ros", "label_set": self.label_set.name},
            "images": [r.to_json() for r in self._images],
            "annotations": [a.to_json() for a in self._annotations],
            "categories": categories,
        }
        _write_json_atomic(path, data)
        return path


def _check_ids_match(in_png: set[int], in_json: set[int], source: str) -> None:
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
# reader


@dataclass(frozen=True)
class CocoPanopticDataset:
    """A COCO panoptic folder as read by :func:`read_dataset`.

    ``label_set`` is None when the JSON has no ``categories`` (allowed for predictions, as in the COCO
    results format); ``images`` may be empty for the same reason.
    """

    root: Path
    json_path: Path
    panoptic_dir: Path
    images_dir: Path
    images: tuple[ImageRecord, ...]
    annotations: tuple[Annotation, ...]
    label_set: LabelSet | None
    supercategories: Mapping[int, str]
    _images_by_id: dict[ImageId, ImageRecord] = field(init=False, repr=False, compare=False)
    _by_file: dict[str, Annotation] = field(init=False, repr=False, compare=False)
    _by_image: dict[ImageId, Annotation] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        images_by_id: dict[ImageId, ImageRecord] = {}
        for record in self.images:
            if record.id in images_by_id:
                raise DatasetError(f"{self.json_path}: image id {record.id!r} appears twice in 'images'")
            images_by_id[record.id] = record
        by_file: dict[str, Annotation] = {}
        by_image: dict[ImageId, Annotation] = {}
        for annotation in self.annotations:
            if annotation.file_name in by_file:
                raise DatasetError(
                    f"{self.json_path}: annotation file_name {annotation.file_name!r} appears twice"
                )
            if annotation.image_id in by_image:
                raise DatasetError(
                    f"{self.json_path}: image_id {annotation.image_id!r} has more than one annotation"
                )
            if images_by_id and annotation.image_id not in images_by_id:
                raise DatasetError(
                    f"{self.json_path}: annotation {annotation.file_name!r} refers to image_id "
                    f"{annotation.image_id!r}, which is not in 'images'"
                )
            by_file[annotation.file_name] = annotation
            by_image[annotation.image_id] = annotation
        object.__setattr__(self, "_images_by_id", images_by_id)
        object.__setattr__(self, "_by_file", by_file)
        object.__setattr__(self, "_by_image", by_image)

    def __len__(self) -> int:
        return len(self.annotations)

    def has_annotation(self, file_name: str) -> bool:
        return file_name in self._by_file

    def annotation(self, file_name: str) -> Annotation:
        """The annotation of a PNG file name (``"000001.png"``)."""
        try:
            return self._by_file[file_name]
        except KeyError as err:
            raise DatasetError(f"{self.json_path} has no annotation with file_name {file_name!r}") from err

    def annotation_for_image(self, image_id: ImageId) -> Annotation:
        try:
            return self._by_image[image_id]
        except KeyError as err:
            raise DatasetError(f"{self.json_path} has no annotation for image_id {image_id!r}") from err

    def image(self, image_id: ImageId) -> ImageRecord:
        try:
            return self._images_by_id[image_id]
        except KeyError as err:
            raise DatasetError(f"{self.json_path} has no image with id {image_id!r}") from err

    def load_segment_map(self, annotation: Annotation | str, *, check_ids: bool = True) -> np.ndarray:
        """The ``H x W`` int64 segment ids of an annotation (or PNG file name).

        The size must match the image record (when ``images`` lists the image); with ``check_ids``
        the PNG's non-zero ids must equal the ids of ``segments_info``.
        """
        if isinstance(annotation, str):
            annotation = self.annotation(annotation)
        path = self.panoptic_dir / annotation.file_name
        ids = read_segment_png(path)
        record = self._images_by_id.get(annotation.image_id)
        if record is not None and ids.shape != (record.height, record.width):
            raise DatasetError(
                f"{path} is {ids.shape[1]} x {ids.shape[0]} (w x h) but {self.json_path} says image "
                f"{record.id!r} is {record.width} x {record.height}"
            )
        if check_ids:
            present = {int(i) for i in np.unique(ids)} - {VOID_ID}
            _check_ids_match(present, {s.id for s in annotation.segments_info}, str(path))
        return ids

    def load_image(self, image: ImageRecord | Annotation | ImageId) -> np.ndarray:
        """The input image (``H x W x 3`` uint8 RGB) of an image record, annotation or image id."""
        if isinstance(image, Annotation):
            image = self.image(image.image_id)
        elif not isinstance(image, ImageRecord):
            image = self.image(image)
        path = self.images_dir / image.file_name
        if not path.is_file():
            raise DatasetError(f"input image {path} does not exist")
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read {path} as an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_dataset(
    root: str | Path,
    *,
    json_file: str | Path | None = None,
    panoptic_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
) -> CocoPanopticDataset:
    """Read a COCO panoptic folder (see the module docstring).

    ``json_file``, ``panoptic_dir`` and ``images_dir`` default to ``root/panoptic.json``,
    ``root/panoptic`` and ``root/images``; give them to read the official COCO layout, e.g.
    ``read_dataset(coco, json_file=coco / "annotations/panoptic_val2017.json", panoptic_dir=coco /
    "annotations/panoptic_val2017", images_dir=coco / "val2017")``. PNGs are read lazily by
    :meth:`CocoPanopticDataset.load_segment_map`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    json_path = Path(json_file) if json_file is not None else root / JSON_NAME
    png_dir = Path(panoptic_dir) if panoptic_dir is not None else root / PANOPTIC_DIR
    img_dir = Path(images_dir) if images_dir is not None else root / IMAGES_DIR
    if not json_path.is_file():
        raise DatasetError(f"{json_path} does not exist; a COCO panoptic folder needs {JSON_NAME}")
    if not png_dir.is_dir():
        raise DatasetError(f"{png_dir} does not exist; a COCO panoptic folder needs the PNG folder")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {json_path}: {err}") from err
    except json.JSONDecodeError as err:
        raise DatasetError(f"{json_path} is not valid JSON: {err}") from err
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{json_path}: expected a JSON object with an 'annotations' list")

    label_set, supercategories = _parse_categories(data, json_path, default_name=root.name)
    images = tuple(_parse_image(entry, json_path) for entry in _list(data, "images", json_path))
    annotations = tuple(
        _parse_annotation(entry, json_path, label_set) for entry in _list(data, "annotations", json_path)
    )
    return CocoPanopticDataset(
        root=root,
        json_path=json_path,
        panoptic_dir=png_dir,
        images_dir=img_dir,
        images=images,
        annotations=annotations,
        label_set=label_set,
        supercategories=supercategories,
    )


def _list(data: Mapping[str, Any], key: str, json_path: Path) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise DatasetError(f"{json_path}: '{key}' must be a list, got {type(value).__name__}")
    return value


def _default_color(category_id: int) -> tuple[int, int, int]:
    """A stable color for datasets whose categories carry none."""
    return (37 * category_id % 200 + 40, 91 * category_id % 200 + 40, 157 * category_id % 200 + 40)


def _parse_categories(
    data: Mapping[str, Any], json_path: Path, *, default_name: str
) -> tuple[LabelSet | None, dict[int, str]]:
    entries = _list(data, "categories", json_path)
    if not entries:
        return None, {}
    info = data.get("info")
    name = str(info.get("label_set", default_name)) if isinstance(info, Mapping) else default_name
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
                f"{json_path}: category {entry!r} is not a COCO panoptic category ({type(err).__name__}: "
                f"{err}); expected id, name, isthing and optionally supercategory, color"
            ) from err
        if "supercategory" in entry:
            supercategories[category_id] = str(entry["supercategory"])
    try:
        label_set = LabelSet.from_dict({"name": name, "categories": converted}, source=str(json_path))
    except LabelSetError as err:
        raise DatasetError(f"{json_path}: invalid categories: {err}") from err
    return label_set, supercategories


def _parse_image(entry: Any, json_path: Path) -> ImageRecord:
    try:
        image_id = entry["id"]
        if not isinstance(image_id, int | str) or isinstance(image_id, bool):
            raise TypeError(f"id {image_id!r} must be an integer or a string")
        record = ImageRecord(image_id, str(entry["file_name"]), int(entry["width"]), int(entry["height"]))
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(
            f"{json_path}: image entry {entry!r} is invalid ({type(err).__name__}: {err}); expected id, "
            "file_name, width, height"
        ) from err
    if record.width <= 0 or record.height <= 0:
        raise DatasetError(f"{json_path}: image {record.id!r} has size {record.width} x {record.height}")
    return record


def _parse_annotation(entry: Any, json_path: Path, label_set: LabelSet | None) -> Annotation:
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
            f"{json_path}: annotation {str(entry)[:200]} is invalid ({type(err).__name__}: {err}); "
            "expected image_id, file_name, segments_info"
        ) from err
    source = f"{json_path} annotation {file_name!r}"
    segments = tuple(SegmentInfo.from_json(s, source=source) for s in raw_segments)
    seen: set[int] = set()
    for segment in segments:
        if segment.id in seen:
            raise DatasetError(f"{source}: segment id {segment.id} appears twice in segments_info")
        seen.add(segment.id)
        if label_set is not None and segment.category_id not in label_set:
            raise DatasetError(
                f"{source}: segment id {segment.id} has category_id {segment.category_id}, which is not "
                "in 'categories'"
            )
    return Annotation(image_id=image_id, file_name=file_name, segments_info=segments)
