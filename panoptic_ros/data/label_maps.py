"""COCO panoptic segments of the label images the node publishes (a semantic map and an instance map).

One rule for every place that turns published label images into a COCO segment map (``panoptic-ros
infer`` writing its results, ``panoptic-ros eval BAG`` reading a recorded node):

- a thing pixel with an instance (track) id ``i > 0`` belongs to segment ``i``;
- a thing pixel of category ``c`` without an id (a thing the tracker has not confirmed yet, or a
  crowd) belongs to the crowd segment ``CROWD_SEGMENT_BASE + c`` (``iscrowd = 1``): its category is
  known, its identity is not. It is not void: the semantic map says ``c`` there, and the video
  metrics score it as the references do (STQ reads it as track ``(c, 0)``; a void prediction on a
  labelled pixel would instead count in STQ's segmentation term as one more class with IoU 0);
- stuff of category ``c`` belongs to segment ``STUFF_SEGMENT_BASE + c``;
- void is segment 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from panoptic_ros.core.ids import CROWD_SEGMENT_BASE, STUFF_SEGMENT_BASE
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import DatasetError, SegmentInfo


def label_segments(
    semantic: np.ndarray,
    instance_ids: np.ndarray,
    label_set: LabelSet,
    *,
    thing_categories: Mapping[int, int] | None = None,
    source: str = "label maps",
) -> tuple[np.ndarray, list[SegmentInfo]]:
    """A frame's COCO segment map and its ``segments_info`` (sorted by id), by the module's rule.

    Args:
        semantic: ``[H, W]`` category ids, the label set's void value where void.
        instance_ids: ``[H, W]`` instance (track) ids, 0 for none.
        label_set: the categories (which are things, the void value).
        thing_categories: instance id -> category of every thing id in the map, when the caller
            knows them (the engine's instance table); without it, an id covering pixels of several
            categories takes the most frequent one.
        source: named in errors.

    Returns:
        ``[H, W]`` int64 segment ids (0 void) and one :class:`SegmentInfo` per id present (areas and
        boxes left at 0: the COCO writer measures them).

    Raises:
        DatasetError: the maps differ in size, hold categories outside the label set, instance ids
            outside ``[0, STUFF_SEGMENT_BASE)``, or ids missing from ``thing_categories``.
    """
    if semantic.shape != instance_ids.shape:
        raise DatasetError(
            f"{source}: semantic {semantic.shape} and instance_ids {instance_ids.shape} differ in size"
        )
    semantic = semantic.astype(np.int64, copy=False)
    instance = instance_ids.astype(np.int64, copy=False)
    known = np.zeros(label_set.max_id + 1, dtype=bool)
    known[label_set.class_to_id] = True
    void = semantic == label_set.void_semantic
    bad = ~void & (
        (semantic < 0) | (semantic > label_set.max_id) | ~known[np.clip(semantic, 0, label_set.max_id)]
    )
    if bad.any():
        raise DatasetError(
            f"{source}: category ids {np.unique(semantic[bad])[:10].tolist()} are not in the label set "
            f"{label_set.name!r}"
        )
    lut = label_set.is_thing_lut
    is_thing = ~void & lut[np.clip(semantic, 0, lut.size - 1)]
    if (instance[is_thing] >= STUFF_SEGMENT_BASE).any() or (instance < 0).any():
        raise DatasetError(f"{source}: instance ids must lie in [0, {STUFF_SEGMENT_BASE})")
    with_id = is_thing & (instance > 0)
    crowd = is_thing & ~with_id
    stuff = ~void & ~is_thing
    segment_map = np.where(
        with_id,
        instance,
        np.where(crowd, CROWD_SEGMENT_BASE + semantic, np.where(stuff, STUFF_SEGMENT_BASE + semantic, 0)),
    )
    infos = _thing_segments(instance[with_id], semantic[with_id], thing_categories, source)
    for base, mask, is_crowd in ((STUFF_SEGMENT_BASE, stuff, False), (CROWD_SEGMENT_BASE, crowd, True)):
        present = np.flatnonzero(np.bincount(semantic[mask], minlength=1))
        infos += [SegmentInfo(id=base + int(c), category_id=int(c), iscrowd=is_crowd) for c in present]
    return segment_map, infos


def _thing_segments(
    ids: np.ndarray, categories: np.ndarray, known: Mapping[int, int] | None, source: str
) -> list[SegmentInfo]:
    """One :class:`SegmentInfo` per thing id (sorted): from ``known``, else each id's most frequent
    category among its pixels."""
    if known is not None:
        present = np.unique(ids).tolist()
        missing = [i for i in present if i not in known]
        if missing:
            raise DatasetError(f"{source}: instance ids {missing[:10]} have no category")
        return [SegmentInfo(id=i, category_id=int(known[i])) for i in present]
    if not ids.size:
        return []
    pairs, counts = np.unique(np.stack([ids, categories], axis=1), axis=0, return_counts=True)
    order = np.lexsort((-counts, pairs[:, 0]))  # by id, the most frequent category first
    unique_ids, first = np.unique(pairs[order, 0], return_index=True)
    chosen = pairs[order, 1][first]
    return [SegmentInfo(id=int(i), category_id=int(c)) for i, c in zip(unique_ids, chosen, strict=True)]
