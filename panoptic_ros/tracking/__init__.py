"""Instance tracking: stable ids for a camera's thing instances across frames, ROS-free.

:class:`Tracker` (one per camera) takes a :class:`TrackerInput` per frame (the instance map and its
table, or :meth:`TrackerInput.from_frame` of a pipeline frame) and returns a :class:`TrackerOutput`:
an ``[H, W]`` track-id map on the input's device plus the tables of tracked and lost tracks.
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
from panoptic_ros.tracking.tracker import Tracker

__all__ = [
    "AssignmentError",
    "Matches",
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
