"""Evaluation of COCO panoptic folders: the metrics of a prediction folder against a ground-truth one.

This module owns the pairing of ground truth and predictions stored as COCO panoptic folders
(:mod:`panoptic_ros.data.coco_panoptic`): frames are matched by PNG file name, sequences by folder
name, and a missing prediction is an error. Each pair of maps is handed to the metrics:

- :func:`evaluate_datasets` / :func:`evaluate_folders`: PQ / SQ / RQ
  (:func:`~panoptic_ros.metrics.panoptic_quality.pq_from_maps`) and mIoU of a set of images;
- :func:`evaluate_sequence` / :func:`evaluate_video_folders`: STQ / AQ / SQ and identity counts
  (:class:`~panoptic_ros.metrics.video.SequenceAccumulator`) and VPQ
  (:class:`~panoptic_ros.metrics.vpq.VPQAccumulator`) of folders of sequences.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.data.coco_format import DatasetError
from panoptic_ros.data.coco_panoptic import JSON_NAME, CocoPanopticDataset, read_dataset
from panoptic_ros.metrics.panoptic_quality import PQResult, PQStat, pair_histogram, pq_from_maps
from panoptic_ros.metrics.semantic import ConfusionMatrix, confusion_from_maps, semantic_from_panoptic
from panoptic_ros.metrics.video import SequenceAccumulator, SequenceStat, StqVariant, VideoStat, frame_labels
from panoptic_ros.metrics.video_result import VideoResult
from panoptic_ros.metrics.vpq import VPQAccumulator

# --------------------------------------------------------------------------------------------------
# images: panoptic quality


def evaluate_datasets(
    gt: CocoPanopticDataset, pred: CocoPanopticDataset, *, progress: bool = True
) -> PQResult:
    """PQ (and mIoU) of every ground-truth annotation against the prediction with the same PNG
    file name. Predictions without ground truth are ignored; a missing prediction is an error."""
    if gt.label_set is None:
        raise DatasetError(f"{gt.json_path} has no 'categories'; ground truth must define its categories")
    label_set = gt.label_set
    missing = [a.file_name for a in gt.annotations if not pred.has_annotation(a.file_name)]
    if missing:
        raise DatasetError(
            f"{pred.json_path} has no prediction for {len(missing)} of the {len(gt)} ground-truth "
            f"images, e.g. {missing[:5]}; predictions are matched by annotation file_name"
        )
    category_ids = tuple(c.id for c in label_set)
    stat = PQStat.zeros(category_ids)
    confusion = ConfusionMatrix.zeros(category_ids)
    for gt_ann in tqdm(gt.annotations, desc="panoptic quality", unit="image", disable=not progress):
        pred_ann = pred.annotation(gt_ann.file_name)
        gt_source = str(gt.panoptic_dir / gt_ann.file_name)
        pred_source = str(pred.panoptic_dir / pred_ann.file_name)
        # ids are checked against segments_info by pq_from_maps, sizes against the records here
        gt_map = gt.load_segment_map(gt_ann, check_ids=False)
        pred_map = pred.load_segment_map(pred_ann, check_ids=False)
        stat = stat + pq_from_maps(
            gt_map,
            gt_ann.segments_info,
            pred_map,
            pred_ann.segments_info,
            label_set=label_set,
            gt_source=gt_source,
            pred_source=pred_source,
        )
        confusion = confusion + confusion_from_maps(
            semantic_from_panoptic(gt_map, gt_ann.segments_info, source=gt_source),
            semantic_from_panoptic(pred_map, pred_ann.segments_info, source=pred_source),
            category_ids,
            source=pred_source,
        )
    return stat.summarize(label_set, semantic=confusion.result(label_set))


def evaluate_folders(gt_dir: str | Path, pred_dir: str | Path, *, progress: bool = True) -> PQResult:
    """PQ / SQ / RQ (and mIoU) of a prediction folder against a ground-truth folder, both in the COCO
    panoptic layout of :mod:`panoptic_ros.data.coco_panoptic`."""
    return evaluate_datasets(read_dataset(gt_dir), read_dataset(pred_dir), progress=progress)


# --------------------------------------------------------------------------------------------------
# sequences: video quality


def evaluate_sequence(
    gt: CocoPanopticDataset,
    pred: CocoPanopticDataset,
    *,
    name: str,
    label_set: LabelSet,
    variant: StqVariant = "reference",
    frame_step: int = 1,
) -> SequenceStat:
    """The statistics of one sequence (STQ under ``variant``, identity counts, VPQ with windows of
    frames ``frame_step`` video frames apart): every gt annotation, in file-name order, against the
    prediction with the same file name (a missing prediction is an error)."""
    missing = [a.file_name for a in gt.annotations if not pred.has_annotation(a.file_name)]
    if missing:
        raise DatasetError(
            f"{pred.json_path} has no prediction for {len(missing)} of the {len(gt)} ground-truth frames, "
            f"e.g. {missing[:5]}; predictions are matched by annotation file_name"
        )
    things = [c.id for c in label_set if c.is_thing]
    accumulator = SequenceAccumulator(name, [c.id for c in label_set], thing_ids=things, variant=variant)
    vpq = VPQAccumulator(label_set, frame_step=frame_step)
    for gt_ann in sorted(gt.annotations, key=lambda a: a.file_name):
        pred_ann = pred.annotation(gt_ann.file_name)
        gt_source = str(gt.panoptic_dir / gt_ann.file_name)
        pred_source = str(pred.panoptic_dir / pred_ann.file_name)
        known = {c.id for c in label_set}
        unknown = sorted({s.category_id for s in pred_ann.segments_info} - known)
        if unknown:
            raise DatasetError(f"{pred_source}: categories {unknown[:10]} are not in the ground truth's")
        gt_map, pred_map = gt.load_segment_map(gt_ann), pred.load_segment_map(pred_ann)
        accumulator.add(
            frame_labels(gt_map, gt_ann.segments_info, things, source=gt_source),
            frame_labels(pred_map, pred_ann.segments_info, things, source=pred_source),
            source=pred_source,
        )
        vpq.add(
            pair_histogram(
                gt_map, gt_ann.segments_info, pred_map, pred_ann.segments_info, label_set=label_set,
                gt_source=gt_source, pred_source=pred_source,
            )
        )  # fmt: skip
    return replace(accumulator.finish(), vpq=vpq.finish())


def _sequence_folders(root: Path) -> list[Path]:
    if (root / JSON_NAME).is_file():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{JSON_NAME}"))


def evaluate_video_folders(
    gt_root: str | Path,
    pred_root: str | Path,
    *,
    progress: bool = False,
    variant: StqVariant = "reference",
    frame_step: int = 1,
) -> VideoResult:
    """STQ, AQ, SQ, identity counts and VPQ of predicted sequences against ground-truth sequences
    (``variant``: :mod:`panoptic_ros.metrics.video`; ``frame_step``: :mod:`panoptic_ros.metrics.vpq`).

    ``gt_root`` holds one COCO panoptic folder per sequence (``gt_root/seq_NNNN/{panoptic.json,
    panoptic/*.png}``, as written by :func:`panoptic_ros.data.synthetic.export_coco` with a
    ``sequence_length``), or is itself one such folder. ``pred_root`` has the same layout; sequences
    are matched by folder name and frames by PNG file name, taken in file-name order. In predictions
    the segment ids of things are track ids, stable across the frames of a sequence.
    """
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if not gt_root.is_dir():
        raise DatasetError(f"ground-truth folder {gt_root} does not exist")
    folders = _sequence_folders(gt_root)
    if not folders:
        raise DatasetError(
            f"{gt_root} holds no sequence: expected {JSON_NAME} in it or in its sub-folders "
            "(one per sequence)"
        )
    single = folders == [gt_root]
    stat = VideoStat()
    label_set: LabelSet | None = None
    for folder in tqdm(folders, desc="video quality", unit="sequence", disable=not progress):
        pred_folder = pred_root if single else pred_root / folder.name
        if not (pred_folder / JSON_NAME).is_file():
            raise DatasetError(
                f"no prediction for sequence {folder.name!r}: {pred_folder / JSON_NAME} does not exist; "
                "predictions need the ground truth's sequence folder names"
            )
        gt = read_dataset(folder)
        if gt.label_set is None:
            raise DatasetError(f"{gt.json_path} has no 'categories'; ground truth must define its categories")
        if label_set is None:
            label_set = gt.label_set
        elif [(c.id, c.is_thing) for c in gt.label_set] != [(c.id, c.is_thing) for c in label_set]:
            raise DatasetError(f"{gt.json_path}: categories differ from those of the first sequence")
        sequence = evaluate_sequence(
            gt, read_dataset(pred_folder), name=folder.name, label_set=label_set, variant=variant,
            frame_step=frame_step,
        )  # fmt: skip
        stat = stat + VideoStat((sequence,))
    return stat.summarize(label_set)
