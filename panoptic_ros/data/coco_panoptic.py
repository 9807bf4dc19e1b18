"""The COCO panoptic dataset folder: one folder per dataset (ground truth or predictions).

Layout::

    root/
      images/<stem>.png      input images (optional; predictions usually have none)
      panoptic/<stem>.png    segment ids as RGB: id = R + 256 * G + 256**2 * B, 0 = void
      panoptic.json          {"images": [...], "annotations": [...], "categories": [...]}

``panoptic.json`` holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
(``image_id``, ``file_name`` of the PNG, ``segments_info``: ``id``, ``category_id``, ``iscrowd``,
``area``, ``bbox`` = ``[x, y, w, h]``) and ``categories`` (``id``, ``name``, ``supercategory``,
``isthing``, ``color``). This is the format the reference PQ tool (``pq_compute``) reads.

This module owns the folder: :class:`CocoPanopticWriter` writes one, :func:`read_dataset` reads one
(the official COCO files too, by naming the JSON file and folders) into a
:class:`CocoPanopticDataset`, and the file-level checks (the JSON's lists, duplicate and dangling
ids, PNG sizes). The records and their JSON forms, segment maps and the PNG encoding are
:mod:`panoptic_ros.data.coco_format`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import (
    VOID_ID,
    Annotation,
    BBox,
    DatasetError,
    ImageId,
    ImageRecord,
    SegmentInfo,
    categories_from_json,
    categories_to_json,
    check_ids_match,
    check_segment_map,
    read_segment_png,
    segment_stats,
    write_png,
    write_segment_png,
)

JSON_NAME = "panoptic.json"
PANOPTIC_DIR = "panoptic"
IMAGES_DIR = "images"


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
            write_png(self.root / IMAGES_DIR / file_name, image)
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
        check_ids_match(present, set(by_id), source)
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
        data = {
            "info": {"description": "written by panoptic_ros", "label_set": self.label_set.name},
            "images": [r.to_json() for r in self._images],
            "annotations": [a.to_json() for a in self._annotations],
            "categories": categories_to_json(self.label_set, self._supercategories),
        }
        _write_json_atomic(path, data)
        return path


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
            check_ids_match(present, {s.id for s in annotation.segments_info}, str(path))
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

    source = str(json_path)
    info = data.get("info")
    name = str(info.get("label_set", root.name)) if isinstance(info, Mapping) else root.name
    label_set, supercategories = categories_from_json(
        _list(data, "categories", json_path), name=name, source=source
    )
    images = tuple(ImageRecord.from_json(entry, source=source) for entry in _list(data, "images", json_path))
    annotations = tuple(
        Annotation.from_json(entry, source=source, label_set=label_set)
        for entry in _list(data, "annotations", json_path)
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
