"""The tracker's thresholds, in one frozen, validated record."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from panoptic_ros.core.params import check_int, check_number, from_mapping
from panoptic_ros.errors import ConfigError


@dataclass(frozen=True)
class TrackerParams:
    """Thresholds of :class:`~panoptic_ros.tracking.tracker.Tracker`.

    Scores and stages (ByteTrack):
        high_score: instances with ``score >= high_score`` are associated first, against every track,
            and start new tracks when left unmatched.
        low_score: instances with ``low_score <= score < high_score`` are associated second, against
            the tracks left over; they never start tracks. Instances below ``low_score`` are ignored.

    Track life:
        min_hits: hits that turn a tentative track confirmed (1 confirms at once).
        max_age: frames a lost track stays in the association (found again by its predicted box, and
            listed among the lost tracks); it leaves it when it has gone unmatched for more than
            ``max_age`` consecutive frames, or as soon as its predicted box is wholly outside the image,
            so occlusions of up to ``max_age`` frames keep the id. Re-identification may still give the
            id back after that (``reid_seconds``).
        publish_tentative: draw tentative tracks in the track map (their ids are final either way).

    Association (a pair is allowed only for equal categories and when one gate passes):
        min_mask_iou: gate on the IoU of the track's mask in the previous frame and the instance.
        min_box_iou: gate on the IoU of the track's box, moved by its velocity to this frame's stamp,
            and the instance's box.
        max_center_distance: gate on the distance from the predicted box center to the instance's
            centroid, per axis in units of the larger of the two boxes' width and height.
        min_box_size: boxes smaller than this (pixels, per axis) count as this large in that distance.
        distance_weight: cost per unit of that normalized distance; the pair cost is
            ``1 - max(mask IoU, box IoU) + distance_weight * distance (+ appearance term)``.
        appearance_weight: cost per unit of the distance between a track's mean color (exponential
            average over its matches) and an instance's mean color inside its mask (RGB distance / 255
            / sqrt(3), in [0, 1]). Used only for frames whose input carries the image; 0 turns it off.
            On the synthetic benchmark it tells apart same-class objects whose depth order flips
            while they overlap, where masks and boxes are ambiguous.
        max_color_distance: with appearance in use, pairs whose color distance exceeds it are not
            allowed (1 = no gate; a gate costs ids because colors change under partial occlusion).

    Motion (constant velocity in pixels per second from header stamps):
        velocity_smoothing: weight of a new velocity measurement in the exponential average (1 keeps
            only the newest); the first measurement is taken as is.
        size_tolerance: when a box's width (height) changes by more than this fraction between two
            observations, the x (y) displacement is measured on a box edge instead of the centroid:
            the edge that does not touch the image border and agrees best with the previous velocity.
        partial_area_ratio: an observation whose area is below the track's reference area divided by
            this ratio counts as partial (occluded or cut by the border): the motion state keeps the
            predicted full-size box, moved only as far as needed to contain the visible part.
        border_margin: box edges within this many pixels of the image border count as cut.

    Re-identification (a thing that left the view or was hidden gets its old id back; needs the image):
        reid_seconds: a confirmed track unmatched for up to this long (header stamps, from its last
            match) can be found again by appearance and motion alone, even after it has left the
            association (``max_age``, or its predicted box left the image): an instance of the same
            category that no track claimed and that would start a new track is compared with these
            tracks; it takes the old id when its mean color is within ``reid_max_color_distance`` of
            the track's and its centroid within the motion gate below. 0 turns re-identification off.
            An id thus survives a gap of ``max(max_age frames, reid_seconds)`` at most; the tracks kept
            only for re-identification are not listed among the lost tracks.
        reid_max_color_distance: the appearance gate: distance of mean colors (as for
            ``appearance_weight``, in [0, 1]).
        reid_max_distance: the motion gate at no time gap, in units of the box size (as
            ``max_center_distance``), from the nearer of the track's position predicted by its last
            velocity and its last observed position (a thing leaving through a border mostly comes
            back through it).
        reid_distance_growth: how much the motion gate widens per second since the track's last
            match (the prediction's uncertainty), in box sizes per second.
    """

    # thing scores of center-offset models are center-peak x class probability; many true
    # instances score 0.3..0.5, which ByteTrack's usual 0.5 would keep from starting tracks
    high_score: float = 0.3
    low_score: float = 0.1
    min_hits: int = 3
    max_age: int = 30
    publish_tentative: bool = True
    min_mask_iou: float = 0.05
    min_box_iou: float = 0.05
    max_center_distance: float = 1.0
    min_box_size: float = 16.0
    distance_weight: float = 0.25
    appearance_weight: float = 0.5
    max_color_distance: float = 1.0
    velocity_smoothing: float = 0.5
    size_tolerance: float = 0.15
    partial_area_ratio: float = 1.5
    border_margin: int = 1
    reid_seconds: float = 2.0
    reid_max_color_distance: float = 0.1
    reid_max_distance: float = 1.0
    reid_distance_growth: float = 1.0

    def __post_init__(self) -> None:
        check_number("low_score", self.low_score, 0.0, 1.0)
        check_number("high_score", self.high_score, 0.0, 1.0)
        if self.low_score > self.high_score:
            raise ConfigError(f"low_score={self.low_score} must not exceed high_score={self.high_score}")
        check_int("min_hits", self.min_hits, minimum=1)
        check_int("max_age", self.max_age, minimum=0)
        if not isinstance(self.publish_tentative, bool):
            raise ConfigError(f"publish_tentative must be true or false, got {self.publish_tentative!r}")
        check_number("min_mask_iou", self.min_mask_iou, 0.0, 1.0, low_open=True)
        check_number("min_box_iou", self.min_box_iou, 0.0, 1.0, low_open=True)
        check_number("max_center_distance", self.max_center_distance, 0.0, math.inf, finite=False)
        check_number("min_box_size", self.min_box_size, 0.0, math.inf, low_open=True, finite=False)
        check_number("distance_weight", self.distance_weight, 0.0, math.inf, finite=False)
        check_number("appearance_weight", self.appearance_weight, 0.0, math.inf, finite=False)
        check_number("max_color_distance", self.max_color_distance, 0.0, 1.0)
        check_number("velocity_smoothing", self.velocity_smoothing, 0.0, 1.0, low_open=True)
        check_number("size_tolerance", self.size_tolerance, 0.0, math.inf, finite=False)
        check_number("partial_area_ratio", self.partial_area_ratio, 1.0, math.inf, finite=False)
        check_int("border_margin", self.border_margin, minimum=0)
        check_number("reid_seconds", self.reid_seconds, 0.0, math.inf)
        check_number("reid_max_color_distance", self.reid_max_color_distance, 0.0, 1.0)
        check_number("reid_max_distance", self.reid_max_distance, 0.0, math.inf, low_open=True)
        check_number("reid_distance_growth", self.reid_distance_growth, 0.0, math.inf)

    @property
    def max_cost(self) -> float:
        """A cost above that of every allowed pair: the limit of the assignment."""
        return 1.0 + self.distance_weight * self.max_center_distance + self.appearance_weight + 1e-6

    @property
    def reid(self) -> bool:
        """Whether re-identification is on."""
        return self.reid_seconds > 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> TrackerParams:
        """Defaults overridden by ``values`` (e.g. node parameters); unknown keys are an error that
        lists the valid ones."""
        return from_mapping(cls, values, "tracker")
