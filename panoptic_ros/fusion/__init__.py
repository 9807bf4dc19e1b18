"""GPU panoptic fusion, one module per decoder family (see DESIGN.md, "decoder families")."""

from __future__ import annotations

from panoptic_ros.fusion.center_offset import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    CenterOffsetOutput,
    CenterOffsetParams,
    CenterPoints,
    FusionInputError,
    MergeResult,
    SegmentStats,
    find_centers,
    fuse_center_offset,
    fuse_center_offset_batch,
    group_pixels,
    grouping_chunk_size,
    merge_segments,
    segment_stats,
    semantic_argmax,
    thing_class_mask,
)

__all__ = [
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "CenterOffsetOutput",
    "CenterOffsetParams",
    "CenterPoints",
    "FusionInputError",
    "MergeResult",
    "SegmentStats",
    "find_centers",
    "fuse_center_offset",
    "fuse_center_offset_batch",
    "group_pixels",
    "grouping_chunk_size",
    "merge_segments",
    "segment_stats",
    "semantic_argmax",
    "thing_class_mask",
]
