"""``panoptic-ros bag eval``: PQ, STQ and VPQ of a bag's outputs against the ground truth in the same
bag.

For every camera namespace ``<ns>`` with a ``<ns>/panoptic/semantic`` topic, each frame's
``panoptic/semantic`` + ``panoptic/instance_ids`` are paired by header stamp with
``ground_truth/semantic`` + ``ground_truth/instance_ids`` (as ``bag synth`` writes them and
``bag process`` copies them). Both sides become COCO-style segment maps: thing pixels -> their
instance id, stuff pixels -> ``STUFF_SEGMENT_BASE + category``, void (and thing pixels without an
instance id) -> 0. The metrics are the project's own: each frame's joint histogram
(:func:`~panoptic_ros.metrics.panoptic_quality.pair_histogram`) gives PQ / SQ / RQ and feeds one
:class:`~panoptic_ros.metrics.vpq.VPQAccumulator` per camera for VPQ, and one
:class:`~panoptic_ros.metrics.video.SequenceAccumulator` per camera gives STQ / AQ (as the STQ
reference computes them, or the ``void-ignored`` variant), ID switches and fragmentations (frames in
the order their pairs complete in the bag, which is stamp order for bags recorded in order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from panoptic_ros.core.image_codec import compressed_to_array, image_to_array
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.topics import COMPRESSED_SUFFIX, join_topic
from panoptic_ros.data.bag_io import message_counts, read_messages, topic_types
from panoptic_ros.data.bag_types import CATEGORY_ARRAY_TYPE, BagError
from panoptic_ros.data.coco_format import DatasetError, SegmentInfo
from panoptic_ros.data.label_maps import label_segments
from panoptic_ros.errors import ImageDecodeError
from panoptic_ros.metrics.panoptic_quality import PQResult, PQStat, pair_histogram, pq_from_histogram
from panoptic_ros.metrics.video import SequenceAccumulator, StqVariant, VideoStat, frame_labels
from panoptic_ros.metrics.video_result import VideoResult
from panoptic_ros.metrics.vpq import VPQAccumulator

PREDICTION_SUFFIX = "panoptic/semantic"
#: The four maps of a frame pair: (side, map) -> topic below the camera namespace.
MAPS = {
    ("pred", "semantic"): ("panoptic", "semantic"),
    ("pred", "instance_ids"): ("panoptic", "instance_ids"),
    ("gt", "semantic"): ("ground_truth", "semantic"),
    ("gt", "instance_ids"): ("ground_truth", "instance_ids"),
}


@dataclass(frozen=True)
class CameraPairs:
    """How the frames of one camera namespace paired up.

    Attributes:
        namespace: e.g. ``/cam0``.
        matched: frames with both prediction maps and both ground-truth maps (evaluated).
        prediction_only: stamps with a prediction map but not both ground-truth maps.
        ground_truth_only: stamps with a ground-truth map but not both prediction maps (e.g. frames
            skipped as malformed by ``bag process``).
    """

    namespace: str
    matched: int
    prediction_only: int
    ground_truth_only: int


@dataclass(frozen=True)
class BagEvalReport:
    """PQ (All / Things / Stuff, per class, with mIoU), STQ and VPQ (one sequence per camera) of a bag."""

    bag: Path
    label_set: str
    pq: PQResult
    video: VideoResult
    cameras: tuple[CameraPairs, ...]

    @property
    def matched(self) -> int:
        return sum(c.matched for c in self.cameras)

    def table(self) -> str:
        lines = [f"{self.bag} (label set {self.label_set})", ""]
        lines.append(f"{'camera':16s} {'matched':>8s} {'pred only':>10s} {'gt only':>8s}")
        for c in self.cameras:
            lines.append(f"{c.namespace:16s} {c.matched:8d} {c.prediction_only:10d} {c.ground_truth_only:8d}")
        lines += ["", self.pq.table(per_class=True), "", self.video.table(per_sequence=True)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bag": str(self.bag),
            "label_set": self.label_set,
            "cameras": [c.__dict__ for c in self.cameras],
            "pq": self.pq.to_dict(),
            "video": self.video.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def segment_map(
    semantic: np.ndarray, instance_ids: np.ndarray, label_set: LabelSet, *, source: str
) -> tuple[np.ndarray, list[SegmentInfo]]:
    """A frame's COCO-style segment map (``H x W`` int64, 0 void) and its ``segments_info`` from a
    semantic map (category ids, the label set's void value) and an instance map (0 for none), by the
    rule of :mod:`panoptic_ros.data.label_maps` (things without an id form one crowd segment per
    category; a segment id that covers pixels of several categories takes the most frequent one).

    Raises:
        BagError: the maps differ in size, hold unknown categories, or thing ids reach
            ``STUFF_SEGMENT_BASE``.
    """
    try:
        return label_segments(semantic, instance_ids, label_set, source=source)
    except DatasetError as err:
        raise BagError(str(err)) from err


def _namespaces(types: dict[str, str]) -> list[str]:
    """Namespaces (with their trailing slash) of the topics ending in ``panoptic/semantic`` (or its
    lossless ``/compressed`` variant)."""
    found = set()
    for topic in types:
        name = topic.removesuffix(COMPRESSED_SUFFIX)
        if name == PREDICTION_SUFFIX or name.endswith("/" + PREDICTION_SUFFIX):
            found.add(name[: -len(PREDICTION_SUFFIX)])
    return sorted(found)


def _map_topic(types: dict[str, str], ns: str, parts: tuple[str, str]) -> str | None:
    """The topic of one map of a namespace: the raw image, else its lossless PNG ``/compressed``."""
    raw = join_topic(ns, *parts)
    for topic in (raw, raw + COMPRESSED_SUFFIX):
        if topic in types:
            return topic
    return None


def _pixels(msg: Any) -> np.ndarray:
    """A label image's pixels: a raw ``Image``, or a PNG ``CompressedImage`` (lossless only)."""
    if hasattr(msg, "format"):
        if "png" not in str(msg.format).lower():
            raise ImageDecodeError(f"label images must be lossless; format {msg.format!r} is not PNG")
        return compressed_to_array(msg).array
    return np.array(image_to_array(msg, native=True))


def _label_set_from_bag(bag: Path, types: dict[str, str]) -> LabelSet:
    topics = [t for t, m in types.items() if m == CATEGORY_ARRAY_TYPE]
    if topics:
        for message in read_messages(bag, topics[:1]):
            if message.msg is not None:
                return LabelSet.from_message(message.msg)
    raise BagError(
        f"bag {bag} has no readable panoptic/categories message; name the label set (--labels synthetic)"
    )


def evaluate_bag(
    bag: str | Path,
    label_set: LabelSet | None = None,
    *,
    progress: bool = True,
    variant: StqVariant = "reference",
    frame_step: int = 1,
) -> BagEvalReport:
    """PQ, STQ and VPQ of every camera's outputs in ``bag`` against its ground truth (module docstring).

    ``label_set`` defaults to the one in the bag's ``panoptic/categories`` topic; ``variant`` is the
    STQ variant (:mod:`panoptic_ros.metrics.video`), ``frame_step`` the video frames between
    consecutive frames of the bag for the VPQ windows (:mod:`panoptic_ros.metrics.vpq`).

    Raises:
        BagError: the bag cannot be read, has no camera with both outputs and ground truth, or a map
            is malformed.
    """
    bag = Path(bag)
    types = topic_types(bag)
    topics = {
        ns: {key: _map_topic(types, ns, parts) for key, parts in MAPS.items()} for ns in _namespaces(types)
    }
    namespaces = [ns for ns, found in topics.items() if all(found.values())]
    if not namespaces:
        raise BagError(
            f"bag {bag} has no camera with panoptic/semantic, panoptic/instance_ids, ground_truth/semantic "
            f"and ground_truth/instance_ids; its topics: {sorted(types)}"
        )
    label_set = label_set or _label_set_from_bag(bag, types)
    route = {topics[ns][key]: (ns, key) for ns in namespaces for key in MAPS}
    category_ids = [c.id for c in label_set.categories]
    thing_ids = label_set.thing_ids
    stat = PQStat.zeros(category_ids)
    accumulators = {
        ns: SequenceAccumulator(ns.rstrip("/") or "/", category_ids, thing_ids=thing_ids, variant=variant)
        for ns in namespaces
    }
    vpq = {ns: VPQAccumulator(label_set, frame_step=frame_step) for ns in namespaces}
    waiting: dict[tuple[str, int], dict[tuple[str, str], np.ndarray]] = {}
    matched = dict.fromkeys(namespaces, 0)
    total = sum(message_counts(bag, list(route)).values())
    for message in tqdm(
        read_messages(bag, list(route)),
        total=total,
        desc=f"evaluating {bag.name}",
        unit="msg",
        disable=not progress,
    ):
        ns, key = route[message.topic]
        try:
            if message.msg is None:
                raise ImageDecodeError(f"not deserializable: {message.error}")
            pixels = _pixels(message.msg)
        except ImageDecodeError as err:
            raise BagError(f"{message.topic} at bag time {message.log_time_ns}: {err}") from err
        stamp = int(message.stamp_ns or 0)
        maps = waiting.setdefault((ns, stamp), {})
        maps[key] = pixels
        if len(maps) < len(MAPS):
            continue
        del waiting[(ns, stamp)]
        source = f"{ns}@{stamp}"
        gt_map, gt_segments = segment_map(
            maps[("gt", "semantic")], maps[("gt", "instance_ids")], label_set, source=f"ground truth {source}"
        )
        pred_map, pred_segments = segment_map(
            maps[("pred", "semantic")],
            maps[("pred", "instance_ids")],
            label_set,
            source=f"prediction {source}",
        )
        hist = pair_histogram(
            gt_map,
            gt_segments,
            pred_map,
            pred_segments,
            label_set=label_set,
            gt_source=f"ground truth {source}",
            pred_source=f"prediction {source}",
        )
        stat = stat + PQStat(stat.category_ids, *pq_from_histogram(hist, len(category_ids)), 1)
        vpq[ns].add(hist)
        accumulators[ns].add(
            frame_labels(gt_map, gt_segments, thing_ids, source=f"ground truth {source}"),
            frame_labels(pred_map, pred_segments, thing_ids, source=f"prediction {source}"),
            source=source,
        )
        matched[ns] += 1
    stats = VideoStat(tuple(replace(a.finish(), vpq=vpq[ns].finish()) for ns, a in accumulators.items()))
    video = stats.summarize(label_set)
    return BagEvalReport(
        bag=bag,
        label_set=label_set.name,
        pq=stat.summarize(label_set, semantic=video.semantic),
        video=video,
        cameras=tuple(_pairs(ns, matched[ns], waiting) for ns in namespaces),
    )


def _pairs(
    ns: str, matched: int, waiting: dict[tuple[str, int], dict[tuple[str, str], np.ndarray]]
) -> CameraPairs:
    left = [maps for (space, _), maps in waiting.items() if space == ns]
    pred_only = sum(1 for maps in left if any(side == "pred" for side, _ in maps) and not _both(maps, "gt"))
    gt_only = sum(1 for maps in left if any(side == "gt" for side, _ in maps) and not _both(maps, "pred"))
    return CameraPairs(ns.rstrip("/") or "/", matched, pred_only, gt_only)


def _both(maps: dict[tuple[str, str], np.ndarray], side: str) -> bool:
    return (side, "semantic") in maps and (side, "instance_ids") in maps
