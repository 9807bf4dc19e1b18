"""GPU panoptic fusion, one module per decoder family; families.py declares each family and its roles."""

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
from panoptic_ros.fusion.detection_semantic import (
    Detections,
    DetectionSemanticOutput,
    DetectionSemanticParams,
    fuse_detection_semantic,
)
from panoptic_ros.fusion.mask_classification import (
    MaskClassificationOutput,
    MaskClassificationParams,
    fuse_mask_classification,
    fuse_mask_classification_batch,
    transformers_result,
)

__all__ = [
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "CenterOffsetOutput",
    "CenterOffsetParams",
    "CenterPoints",
    "DetectionSemanticOutput",
    "DetectionSemanticParams",
    "Detections",
    "FusionInputError",
    "MaskClassificationOutput",
    "MaskClassificationParams",
    "MergeResult",
    "SegmentStats",
    "find_centers",
    "fuse_center_offset",
    "fuse_center_offset_batch",
    "fuse_detection_semantic",
    "fuse_mask_classification",
    "fuse_mask_classification_batch",
    "group_pixels",
    "grouping_chunk_size",
    "merge_segments",
    "segment_stats",
    "semantic_argmax",
    "thing_class_mask",
    "transformers_result",
]
