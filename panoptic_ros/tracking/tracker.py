"""The instance tracker: stable ids for a camera's thing instances, frame after frame.

One :class:`Tracker` per camera. Each frame (:meth:`Tracker.update`):

1. **Device work, a fixed number of kernels.** The instance map becomes compact indices
   (:func:`~panoptic_ros.tracking.association.index_map`); one joint histogram of the previous frame's
   index map and this one gives every mask intersection, hence the mask IoU of all (previous
   instance, current instance) pairs at once. Optionally the mean color in every mask. On the CPU
   one compiled pass does all of it
   (:func:`~panoptic_ros.tracking.association.index_and_statistics`). Two host
   transfers of small arrays (the instance table, the histogram) are the only syncs.
2. **Affinity (host, all pairs at once).** For every (track, instance) pair of the same category:
   mask IoU (tracks seen in the previous frame), IoU of the track's box predicted to this frame's
   stamp by its velocity (constant velocity, :mod:`~panoptic_ros.tracking.motion`), and the distance
   from the predicted box center to the instance's centroid in box units. A pair is allowed when the
   categories match and mask IoU ``>= min_mask_iou`` or box IoU ``>= min_box_iou`` or distance
   ``<= max_center_distance``; its cost is ``1 - max(mask IoU, box IoU) + distance_weight *
   distance``, plus ``appearance_weight`` times the distance of mean colors when the input carries
   the image. Lost tracks have no mask and are found by their predicted box (cut to the image; a
   lost track predicted wholly outside the image is removed). Pairs of different categories are
   never allowed: a track never changes category.
3. **Assignment in two stages (ByteTrack).** Instances with ``score >= high_score`` against all
   tracks, then instances with ``low_score <= score < high_score`` against the tracks left, each by
   an exact minimum-cost assignment (:func:`~panoptic_ros.tracking.assignment.match`, our own
   Hungarian solver) that matches a pair only when it beats leaving both unmatched.
4. **Life cycle.** Matched tracks take the instance's box, centroid and score and update their
   velocity; unmatched high-score instances start tentative tracks (new ids from a counter, never
   reused); tentative tracks become confirmed after ``min_hits`` hits and are dropped at their first
   miss; other unmatched tracks become lost and are removed after more than ``max_age`` missed frames.
5. **Re-identification** (``reid_seconds > 0``, :mod:`~panoptic_ros.tracking.reid`). Unmatched
   high-score instances are compared with the confirmed tracks unmatched for up to ``reid_seconds``,
   including those removed from the association (kept in a memory), by appearance and motion; a pair
   that passes both gates gives the instance the old id instead of a new one.

**Stamps.** Velocities come from header stamp differences (pixels per second), never frame counts. A
stamp earlier than the previous frame's (a rosbag played in a loop, a restarted clock), or a frame of
another size, **resets** the tracker: every track and the previous masks are dropped, as if the
tracker were new, except that the id counter continues so ids stay unique; the output says
``reset=True``. A repeated stamp (dt = 0) associates normally but measures no velocity.

This module owns the per-frame algorithm; the host-side records it works on (the live tracks, a
frame's instances) are :mod:`~panoptic_ros.tracking.state`.
"""

from __future__ import annotations

import numpy as np
import torch

from panoptic_ros.core.segments import take
from panoptic_ros.tracking.assignment import match_by_score
from panoptic_ros.tracking.association import index_and_statistics
from panoptic_ros.tracking.costs_cpu import pair_costs
from panoptic_ros.tracking.keys_cpu import track_map as map_track_ids
from panoptic_ros.tracking.lifecycle_cpu import publish, settle
from panoptic_ros.tracking.motion import predict_boxes
from panoptic_ros.tracking.motion_cpu import apply_matches
from panoptic_ros.tracking.output_cpu import track_table
from panoptic_ros.tracking.params import TrackerParams
from panoptic_ros.tracking.records import TrackerInput, TrackerOutput, TrackState
from panoptic_ros.tracking.reid import Memory, reidentify
from panoptic_ros.tracking.state import Instances, Tracks, lookup
from panoptic_ros.tracking.stream import StreamCheck

_NS = 1e-9
#: Per-frame decay of a track's reference area, so that objects moving away are not taken as occluded.
REFERENCE_AREA_DECAY = 0.98
#: Weight of a new observation in a track's mean color (exponential average).
COLOR_SMOOTHING = 0.5


#: No tracks (read only: what leaves the association when nothing does).
_NO_TRACKS = Tracks()


class Tracker:
    """Tracks the thing instances of one camera (see the module docstring).

    Args:
        params: thresholds; defaults when None.

    Use :meth:`update` once per frame, in stamp order; :meth:`reset` to start over (ids continue).
    """

    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params if params is not None else TrackerParams()
        self._next_id = 1
        self._tracks = Tracks()
        self._memory = Memory()  # tracks out of the association, kept for re-identification
        self._previous_index: torch.Tensor | None = None  # [H, W] int64 compact indices of the last frame
        self._previous_track_ids = np.zeros(0, np.int64)  # track id of each index 1..P (0 = none)
        self._stream = StreamCheck()

    @property
    def next_id(self) -> int:
        """The id the next new track will get."""
        return self._next_id

    def reset(self) -> None:
        """Drop every track and the previous frame; the id counter continues (ids are never reused)."""
        self._drop_tracks()
        self._stream.forget()

    def _drop_tracks(self) -> None:
        self._tracks = Tracks()
        self._memory = Memory()
        self._previous_index = None
        self._previous_track_ids = np.zeros(0, np.int64)

    # ----------------------------------------------------------------------------------------------
    # one frame

    def update(self, inp: TrackerInput) -> TrackerOutput:
        """Associate one frame's instances with the tracks; see the module docstring.

        Raises:
            TrackerInputError: inconsistent input shapes or devices, or a non-integer stamp.
        """
        inp.check()
        params = self.params
        stamp = int(inp.stamp_ns)
        size = inp.size
        events = self._stream.observe(size, stamp)
        if events:
            self._drop_tracks()

        det, device = Instances(inp), inp.instance_map.device
        # colors only where used: the appearance term, or re-identification
        use_colors = (params.appearance_weight > 0 or params.reid) and inp.image is not None
        previous = self._previous_index
        if previous is not None and previous.shape != inp.instance_map.shape:
            previous = None  # no overlap to measure
        current_index, mask_ious, det_areas, colors = index_and_statistics(
            inp.instance_map,
            det.ids,
            previous,
            self._previous_track_ids.size,
            image=inp.image if use_colors else None,
            weights=inp.pixel_weights,
            fixed_shapes=inp.fixed_shapes,
        )

        tracks = self._tracks
        n = len(tracks)
        # ages advance for every live track, matched or not
        tracks.ages = tracks.ages + 1
        self._memory.advance()
        dt = (stamp - tracks.stamps) * _NS
        predicted = predict_boxes(tracks.boxes, tracks.velocities, dt)
        appearance = colors if params.appearance_weight > 0 else None
        cost, in_image = self._cost(
            tracks, det, predicted=predicted, size=size, previous_iou=mask_ious, colors=appearance
        )

        rows, cols, new_instances = match_by_score(
            cost,
            det.scores,
            high_score=params.high_score,
            low_score=params.low_score,
            max_cost=params.max_cost,
        )

        apply_matches(  # matched tracks take their instances' observations (one compiled pass)
            tracks, rows, cols, det, det_areas=det_areas, predicted=predicted, colors=colors, stamp=stamp,
            size=size, params=params, reference_area_decay=REFERENCE_AREA_DECAY,
            color_smoothing=COLOR_SMOOTHING,
        )  # fmt: skip
        # missed tracks: tentative ones dropped, the others lost, and dropped past max_age frames or
        # out of the image; each instance takes its track's id (one compiled call)
        kept, leaving, track_of_instance = settle(
            tracks.states, tracks.misses, tracks.ids, rows, cols, det.count, in_image, params.max_age
        )
        self._tracks = tracks if kept.size == n else tracks.select(kept)
        if params.reid:
            self._memory.keep(tracks.select(leaving) if leaving.size else _NO_TRACKS, stamp, params)
            if colors is not None and new_instances.size:  # instances left to re-identify
                self._tracks, revived, taken, new_instances = reidentify(
                    self._tracks,
                    self._memory,
                    new_instances,
                    det,
                    det_areas=det_areas,
                    colors=colors,
                    stamp=stamp,
                    params=params,
                    smoothing=COLOR_SMOOTHING,
                )
                track_of_instance[taken] = self._tracks.ids[revived]
        elif len(self._memory):
            self._memory = Memory()  # turned off
        if new_instances.size:
            created = self._new_tracks(new_instances, det, det_areas, colors, stamp)
            self._tracks = self._tracks.extend(created)
            track_of_instance[new_instances] = created.ids

        # what the frame shows: the track ids drawn (tentative ones hidden where asked), the lookup from
        # the instance indices (0: none), each track's instance and the rows listed (one compiled call)
        live = self._tracks
        published, lut, instance_rows, drawn, lost = publish(
            live.ids, live.states, track_of_instance, not params.publish_tentative
        )
        if device.type == "cpu" and not inp.fixed_shapes:  # one compiled gather (its indices in range)
            track_map = torch.from_numpy(map_track_ids(lut, current_index.numpy()))
        else:
            track_map = take(torch.from_numpy(lut).to(device), current_index, fixed_shapes=inp.fixed_shapes)

        self._previous_index = current_index
        self._previous_track_ids = track_of_instance
        observed = {"det_areas": det_areas, "stamp": stamp}
        return TrackerOutput(
            track_map=track_map,
            tracks=track_table(live, drawn, instance_rows, det, **observed),
            lost=track_table(live, lost, instance_rows, det, **observed),
            instance_track_ids=track_of_instance,
            stamp_ns=stamp,
            events=events,
            shown_track_ids=published,
        )

    # ----------------------------------------------------------------------------------------------
    # steps

    def _cost(
        self,
        tracks: Tracks,
        det: Instances,
        *,
        predicted: np.ndarray,
        size: tuple[int, int],
        previous_iou: np.ndarray,
        colors: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[N, T]`` association cost, ``inf`` for pairs that are not allowed, and ``[N]`` whether
        anything of each track's predicted box (``predicted``, at this frame's stamp) is left in the
        image, by one compiled pass (:func:`~panoptic_ros.tracking.costs_cpu.pair_costs`)."""
        # the row of the previous frame's mask IoU holding each track (track ids are unique and > 0;
        # previous instances without a track hold 0)
        mask_rows = np.full(len(tracks), -1, dtype=np.int64)
        if previous_iou.size:
            position, seen = lookup(tracks.ids, self._previous_track_ids)
            mask_rows[seen] = position[seen]
        return pair_costs(
            tracks, det, predicted=predicted, mask_rows=mask_rows, previous_iou=previous_iou, colors=colors,
            size=size, params=self.params,
        )  # fmt: skip

    def _new_tracks(
        self,
        instances: np.ndarray,
        det: Instances,
        det_areas: np.ndarray,
        colors: np.ndarray | None,
        stamp: int,
    ) -> Tracks:
        count = instances.size
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        state = TrackState.CONFIRMED if self.params.min_hits <= 1 else TrackState.TENTATIVE
        return Tracks(
            ids=ids,
            categories=det.categories[instances].copy(),
            states=np.full(count, state, dtype=np.uint8),
            scores=det.scores[instances].copy(),
            ages=np.ones(count, dtype=np.int64),
            hits=np.ones(count, dtype=np.int64),
            misses=np.zeros(count, dtype=np.int64),
            stamps=np.full(count, stamp, dtype=np.int64),
            boxes=det.boxes[instances].copy(),
            observed_boxes=det.boxes[instances].copy(),
            centroids=det.centroids[instances].copy(),
            reference_areas=det_areas[instances].astype(np.float64),
            velocities=np.zeros((count, 2)),
            has_velocity=np.zeros((count, 2), dtype=bool),
            colors=colors[instances].copy() if colors is not None else np.zeros((count, 3)),
            has_color=np.full(count, colors is not None),
        )
