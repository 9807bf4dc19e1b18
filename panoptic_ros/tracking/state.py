"""The tracker's host-side state: the live tracks and a frame's instances as parallel numpy arrays.

This module owns the two records :class:`~panoptic_ros.tracking.tracker.Tracker` works on between
its device work and its assignment: :class:`Tracks` (one row per live track: id, category, life-cycle
state, counters, motion state, mean color) and :class:`Instances` (one row per instance of the current
frame, copied to the host once), plus :func:`lookup`, which finds ids of one array in another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from panoptic_ros.tracking.association import xywh_to_xyxy
from panoptic_ros.tracking.keys_cpu import positions
from panoptic_ros.tracking.records import TrackerInput


@dataclass
class Tracks:
    """The live tracks as parallel host arrays (one row per track)."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    categories: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    states: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    ages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    misses: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # of the last match
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # motion state, full extent
    observed_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    reference_areas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    has_velocity: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), bool))
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # mean RGB, when has_color
    has_color: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, rows: np.ndarray) -> Tracks:
        return Tracks(**{name: value[rows] for name, value in vars(self).items()})

    def extend(self, other: Tracks) -> Tracks:
        return Tracks(
            **{name: np.concatenate([value, getattr(other, name)]) for name, value in vars(self).items()}
        )

    @classmethod
    def placeholder(cls) -> Tracks:
        """One track of neutral values in the arrays' own types: what the compiled loops are compiled
        for ahead of the first frame."""
        return cls(
            ids=np.ones(1, np.int64), categories=np.ones(1, np.int64), states=np.zeros(1, np.uint8),
            scores=np.zeros(1), ages=np.ones(1, np.int64), hits=np.ones(1, np.int64),
            misses=np.zeros(1, np.int64), stamps=np.zeros(1, np.int64), boxes=np.zeros((1, 4)),
            observed_boxes=np.zeros((1, 4)), centroids=np.zeros((1, 2)), reference_areas=np.ones(1),
            velocities=np.zeros((1, 2)), has_velocity=np.zeros((1, 2), bool), colors=np.zeros((1, 3)),
            has_color=np.zeros(1, bool),
        )  # fmt: skip


class Instances:
    """A frame's instances on the host (T rows), in input order."""

    def __init__(self, inp: TrackerInput) -> None:
        count = int(inp.ids.shape[0])
        if isinstance(inp.ids, np.ndarray):  # rows already on the host: each column converted once
            self.count = count
            self.ids = np.array(inp.ids, dtype=np.int64)
            self.categories = np.array(inp.category_ids, dtype=np.int64)
            self.scores = np.array(inp.scores, dtype=np.float64)
            self.boxes = xywh_to_xyxy(inp.bboxes)
            self.centroids = np.array(inp.centroids, dtype=np.float64).reshape(-1, 2)
            return
        columns = list(
            zip(
                (inp.ids, inp.category_ids, inp.scores, inp.bboxes, inp.centroids),
                (1, 1, 1, 4, 2),
                strict=True,
            )
        )
        if not count:
            table = np.zeros((0, 9))
        else:  # one transfer
            table = torch.cat([c.reshape(-1, w).double() for c, w in columns], dim=1).cpu().numpy()
        self._take(table)

    @classmethod
    def of_table(cls, table: np.ndarray) -> Instances:
        """The instances of a ``[T, 9]`` float64 host table, columns ``id, category, score, x, y, w, h,
        centroid x, centroid y`` (the columns are views of it, as from a frame's input)."""
        instances = cls.__new__(cls)
        instances._take(table)
        return instances

    def _take(self, table: np.ndarray) -> None:
        self.count = int(table.shape[0])
        self.ids = table[:, 0].astype(np.int64)
        self.categories = table[:, 1].astype(np.int64)
        self.scores = table[:, 2]
        self.boxes = xywh_to_xyxy(table[:, 3:7])
        self.centroids = table[:, 7:9]


def lookup(values: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``values`` (int64), its position in ``keys`` (int64, unique, any order) and whether
    it is there: one compiled call (:func:`~panoptic_ros.tracking.keys_cpu.positions`)."""
    return positions(np.ascontiguousarray(values, dtype=np.int64), np.ascontiguousarray(keys, dtype=np.int64))
