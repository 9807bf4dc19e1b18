"""Quality metrics: Panoptic Quality (PQ / SQ / RQ) and semantic mIoU, ROS-free."""

from __future__ import annotations

from panoptic_ros.metrics.panoptic_quality import (
    ClassPQ,
    PQResult,
    PQStat,
    PQSummary,
    evaluate_datasets,
    evaluate_folders,
    pq_from_maps,
)
from panoptic_ros.metrics.semantic import (
    ConfusionMatrix,
    SemanticResult,
    confusion_from_maps,
    semantic_from_panoptic,
)
from panoptic_ros.metrics.video import VideoResult, VideoStat, evaluate_video_folders

__all__ = [
    "ClassPQ",
    "ConfusionMatrix",
    "PQResult",
    "PQStat",
    "PQSummary",
    "SemanticResult",
    "VideoResult",
    "VideoStat",
    "confusion_from_maps",
    "evaluate_datasets",
    "evaluate_folders",
    "evaluate_video_folders",
    "pq_from_maps",
    "semantic_from_panoptic",
]
