"""Instance tracking: stable ids for a camera's thing instances across frames, ROS-free.

:class:`Tracker` (one per camera) takes a :class:`TrackerInput` per frame (the instance map and its
table, e.g. the thing rows of a pipeline frame, or :meth:`TrackerInput.from_maps`) and returns a
:class:`TrackerOutput`: an ``[H, W]`` track-id map on the input's device plus the tables of tracked and
lost tracks. A thing that left the view or was hidden for up to ``TrackerParams.reid_seconds`` gets
its old id back when its color and motion agree (:mod:`~panoptic_ros.tracking.reid`).
"""

from __future__ import annotations

from panoptic_ros.tracking.assignment import AssignmentError, Matches, match, solve_assignment
from panoptic_ros.tracking.params import TrackerParams
from panoptic_ros.tracking.records import (
    TrackerInput,
    TrackerInputError,
    TrackerOutput,
    TrackState,
    TrackTable,
)
from panoptic_ros.tracking.stream import EVENTS, StreamCheck
from panoptic_ros.tracking.tracker import Tracker

__all__ = [
    "EVENTS",
    "AssignmentError",
    "Matches",
    "StreamCheck",
    "TrackState",
    "TrackTable",
    "Tracker",
    "TrackerInput",
    "TrackerInputError",
    "TrackerOutput",
    "TrackerParams",
    "match",
    "solve_assignment",
]
