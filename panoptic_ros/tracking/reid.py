"""Re-identification: a thing that left the view or was hidden for a while gets its old id back.

After the two association stages of :class:`~panoptic_ros.tracking.tracker.Tracker`, the high-score
instances that no track claimed would start new tracks. Before they do, they are compared with the
*candidates*: the confirmed tracks unmatched for at most ``reid_seconds`` (by header stamps), both the
lost tracks still in the association and those that have left it (:class:`Memory`: more than
``max_age`` missed frames, or a predicted box wholly outside the image). A pair is allowed when

- the categories are equal,
- the mean colors are within ``reid_max_color_distance`` (RGB distance / 255 / sqrt(3), as the
  association's appearance term; a track without a color is never re-identified), and
- the motion is plausible: the instance's centroid lies within ``reid_max_distance + reid_distance_growth
  x gap`` box sizes (the gap in seconds since the track's last match) of the nearer of two anchors:
  the track's box moved by its last velocity over the gap, and its last observed box (a thing that
  walked out through a border, or stopped behind an occluder, mostly comes back where it left).

Its cost is the color distance over its gate plus the motion distance over its gate (each in [0, 1]);
:func:`~panoptic_ros.tracking.assignment.match` picks the pairs, all at once. Host numpy on the small
per-frame tables, like the association; nothing here touches the device.
"""

from __future__ import annotations

import numpy as np

from panoptic_ros.tracking.assignment import match
from panoptic_ros.tracking.association import COLOR_SCALE, center_distance
from panoptic_ros.tracking.motion import predict_boxes
from panoptic_ros.tracking.params import TrackerParams
from panoptic_ros.tracking.records import TrackState
from panoptic_ros.tracking.state import Instances, Tracks

# the states as plain ints: numpy compares an array with an IntEnum member several times slower
_LOST, _CONFIRMED = int(TrackState.LOST), int(TrackState.CONFIRMED)

_NS = 1e-9
#: The assignment limit of the re-identification cost (two terms of at most 1 each).
MAX_COST = 2.0 + 1e-6


class Memory:
    """Tracks kept only for re-identification, after they left the association (host arrays)."""

    def __init__(self) -> None:
        self.tracks = Tracks()

    def __len__(self) -> int:
        return len(self.tracks)

    def advance(self) -> None:
        """One more frame: ages and missed frames count on, as for live tracks."""
        self.tracks.ages = self.tracks.ages + 1
        self.tracks.misses = self.tracks.misses + 1

    def keep(self, tracks: Tracks, stamp: int, params: TrackerParams) -> None:
        """Add ``tracks`` (that have just left the association) and forget every track unmatched for
        more than ``reid_seconds`` or without a color (those cannot be re-identified)."""
        if not len(tracks) and not len(self.tracks):
            return  # nothing kept, nothing arrives
        merged = self.tracks.extend(tracks) if len(tracks) else self.tracks
        kept = ((stamp - merged.stamps) * _NS <= params.reid_seconds) & merged.has_color
        self.tracks = merged if kept.all() else merged.select(np.flatnonzero(kept))

    def take(self, rows: np.ndarray) -> Tracks:
        """Remove the given rows and return them."""
        taken = self.tracks.select(rows)
        rest = np.ones(len(self.tracks), dtype=bool)
        rest[rows] = False
        self.tracks = self.tracks.select(np.flatnonzero(rest))
        return taken


def reid_cost(
    candidates: Tracks,
    det: Instances,
    instances: np.ndarray,
    colors: np.ndarray,
    *,
    stamp: int,
    params: TrackerParams,
) -> np.ndarray:
    """``[C, K]`` cost of giving candidate track ``c`` to instance ``instances[k]``; ``inf`` where the
    pair is not allowed (see the module docstring).

    Args:
        candidates: the C candidate tracks.
        det: the frame's instances; ``instances`` ``[K]`` the rows to compare.
        colors: ``[T]`` x 3 mean colors of all the frame's instances.
        stamp: this frame's stamp (ns).
    """
    c, k = len(candidates), instances.size
    if c == 0 or k == 0:
        return np.full((c, k), np.inf)
    gap = np.maximum((stamp - candidates.stamps) * _NS, 0.0)
    boxes, centroids = det.boxes[instances], det.centroids[instances]
    predicted = predict_boxes(candidates.boxes, candidates.velocities, gap)
    moved = center_distance(predicted, centroids, boxes, min_size=params.min_box_size)
    stayed = center_distance(candidates.observed_boxes, centroids, boxes, min_size=params.min_box_size)
    radius = params.reid_max_distance + params.reid_distance_growth * gap[:, None]
    motion = np.minimum(moved, stayed) / radius
    color = np.linalg.norm(candidates.colors[:, None, :] - colors[instances][None, :, :], axis=2)
    color = color / COLOR_SCALE / max(params.reid_max_color_distance, 1e-9)
    allowed = (
        (candidates.categories[:, None] == det.categories[instances][None, :])
        & candidates.has_color[:, None]
        & (gap <= params.reid_seconds)[:, None]
        & (color <= 1.0)
        & (motion <= 1.0)
    )
    return np.where(allowed, color + motion, np.inf)


def reidentify(
    live: Tracks,
    memory: Memory,
    instances: np.ndarray,
    det: Instances,
    *,
    det_areas: np.ndarray,
    colors: np.ndarray,
    stamp: int,
    params: TrackerParams,
    smoothing: float,
) -> tuple[Tracks, np.ndarray, np.ndarray, np.ndarray]:
    """Give ``instances`` (unclaimed, high score) the ids of the lost tracks of ``live`` and of the
    tracks in ``memory`` they re-identify, each such track updated as matched with a fresh motion
    state (the velocity is measured again from here on; ``smoothing``: weight of the new color).

    Returns:
        ``(tracks, rows, cols, left)``: the live tracks with those taken from ``memory`` appended,
        the rows of the re-identified tracks in them and the instance each took, and the instances
        left over (to start new tracks).
    """
    none = np.zeros(0, np.int64)
    if instances.size == 0:  # most frames: every instance was claimed
        return live, none, none, instances
    lost = np.flatnonzero(live.states == _LOST)
    if lost.size + len(memory) == 0:
        return live, none, none, instances
    candidates = live.select(lost).extend(memory.tracks)
    found = match(
        reid_cost(candidates, det, instances, colors, stamp=stamp, params=params), max_cost=MAX_COST
    )
    if found.rows.size == 0:
        return live, none, none, instances
    remembered = found.rows >= lost.size
    back = memory.take(found.rows[remembered] - lost.size)
    rows = np.concatenate([lost[found.rows[~remembered]], len(live) + np.arange(len(back))])
    cols = np.concatenate([instances[found.cols[~remembered]], instances[found.cols[remembered]]])
    t = live.extend(back)
    t.boxes[rows] = det.boxes[cols]
    t.observed_boxes[rows] = det.boxes[cols]
    t.centroids[rows] = det.centroids[cols]
    t.reference_areas[rows] = det_areas[cols]
    t.velocities[rows] = 0.0
    t.has_velocity[rows] = False
    t.scores[rows] = det.scores[cols]
    t.stamps[rows] = stamp
    t.hits[rows] += 1
    t.misses[rows] = 0
    t.states[rows] = _CONFIRMED
    t.colors[rows] = (1 - smoothing) * t.colors[rows] + smoothing * colors[cols]
    return t, rows, cols, instances[found.unmatched_cols]
