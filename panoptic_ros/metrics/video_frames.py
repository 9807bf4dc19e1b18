"""A frame's labels for the video metrics (:mod:`panoptic_ros.metrics.video`): category ids, track ids
and crowd pixels per pixel, from arrays or from a COCO panoptic segment map."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np

from panoptic_ros.data.coco_format import VOID_ID, DatasetError, SegmentInfo, check_segment_map
from panoptic_ros.metrics.semantic import SEMANTIC_VOID


class FrameLabels(NamedTuple):
    """One frame's labels for the video metrics (ground truth or prediction).

    Attributes:
        semantic: ``[H, W]`` integer category ids, :data:`~panoptic_ros.metrics.semantic.SEMANTIC_VOID`
            (-1) for void.
        tracks: ``[H, W]`` integer track id (``0 <= id < 2**32``) of thing pixels (``> 0``), 0
            elsewhere (stuff, void, and for ground truth crowd: a gt thing pixel with id 0 is crowd
            when the thing categories are known, as in the reference).
        crowd: ``[H, W]`` bool crowd pixels (ground truth only; None for none).
    """

    semantic: np.ndarray
    tracks: np.ndarray
    crowd: np.ndarray | None = None


def frame_labels(
    segment_map: np.ndarray,
    segments: Sequence[SegmentInfo],
    thing_ids: Collection[int],
    *,
    source: str = "segment map",
) -> FrameLabels:
    """:class:`FrameLabels` of a COCO panoptic segment map: segments of thing categories are tracks
    with their segment id as track id; crowd segments become crowd (no track).

    Raises:
        DatasetError: the map holds an id that ``segments`` does not list.
    """
    ids_map = check_segment_map(segment_map, source=source)
    values, inverse = np.unique(ids_map, return_inverse=True)
    by_id = {s.id: s for s in segments}
    unknown = [int(v) for v in values if v != VOID_ID and int(v) not in by_id]
    if unknown:
        raise DatasetError(
            f"{source}: segment ids {unknown[:10]} are in the PNG but not in segments_info; every non-zero "
            "id needs an entry"
        )
    things = set(thing_ids)
    semantic = np.full(values.size, SEMANTIC_VOID, dtype=np.int64)
    tracks = np.zeros(values.size, dtype=np.int64)
    crowd = np.zeros(values.size, dtype=bool)
    for k, value in enumerate(values.tolist()):
        if value == VOID_ID:
            continue
        info = by_id[value]
        semantic[k] = info.category_id
        crowd[k] = info.iscrowd
        if info.category_id in things and not info.iscrowd:
            tracks[k] = value
    shape = ids_map.shape
    return FrameLabels(
        semantic[inverse].reshape(shape), tracks[inverse].reshape(shape), crowd[inverse].reshape(shape)
    )
