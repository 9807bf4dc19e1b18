"""Quality metrics: Panoptic Quality (PQ / SQ / RQ), semantic mIoU, video quality (STQ / AQ and identity
counts, VPQ) and their evaluation of COCO panoptic folders, ROS-free."""

from __future__ import annotations

from panoptic_ros.metrics.folders import evaluate_datasets, evaluate_folders, evaluate_video_folders
from panoptic_ros.metrics.panoptic_quality import ClassPQ, PQResult, PQStat, PQSummary, pq_from_maps
from panoptic_ros.metrics.semantic import (
    ConfusionMatrix,
    SemanticResult,
    confusion_from_maps,
    semantic_from_panoptic,
)
from panoptic_ros.metrics.video import VideoStat
from panoptic_ros.metrics.video_result import VideoResult
from panoptic_ros.metrics.vpq import VPQAccumulator, VPQResult, VPQStat

__all__ = [
    "ClassPQ",
    "ConfusionMatrix",
    "PQResult",
    "PQStat",
    "PQSummary",
    "SemanticResult",
    "VPQAccumulator",
    "VPQResult",
    "VPQStat",
    "VideoResult",
    "VideoStat",
    "confusion_from_maps",
    "evaluate_datasets",
    "evaluate_folders",
    "evaluate_video_folders",
    "pq_from_maps",
    "semantic_from_panoptic",
]
