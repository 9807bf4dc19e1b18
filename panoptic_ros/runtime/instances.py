"""The instance table of a frame: one row per published segment, ids numbered in one place.

Things come first: with tracking, the tracker's tracks (and its lost tracks when asked for) with their
track ids; without, the frame's thing segments numbered ``1..T`` as in the pipeline's instance map.
Stuff follows, one row per category present, with ids above every thing id of the frame, so ids are
unique within a message and equal the pixel values of ``instance_ids`` for things. Segments that no
camera pixel shows (area 0) are left out. Boxes are clipped to the image once, here. 3D positions
come from an aligned depth image (:func:`~panoptic_ros.core.geometry.segment_positions`).
"""

from __future__ import annotations

import numpy as np
import torch

from panoptic_ros.core.geometry import CameraModel, aligned_depth, segment_positions
from panoptic_ros.runtime.instances_cpu import table_columns
from panoptic_ros.runtime.pipeline import FrameOutput, SegmentTable
from panoptic_ros.runtime.records import InstanceTable
from panoptic_ros.tracking import TrackerOutput, TrackTable


def segment_columns(table: SegmentTable) -> torch.Tensor:
    """The table as one ``[S, 11]`` float64 block on its device (ids, category ids, is_thing, areas,
    bboxes, centroids, scores): ``cat`` promotes the integer columns, every id, area and coordinate
    stays exact."""
    return torch.cat(
        [
            torch.stack((table.ids, table.category_ids, table.is_thing.long(), table.areas), dim=1),
            table.bboxes,
            table.centroids.double(),
            table.scores.double()[:, None],
        ],
        dim=1,
    )


class HostSegments:
    """A :class:`SegmentTable` on the host, without empty segments: moved in one transfer, made from
    its :func:`segment_columns` already on the host, or (a table in host memory) its columns viewed."""

    def __init__(self, table: SegmentTable | np.ndarray) -> None:
        if isinstance(table, np.ndarray) or table.ids.device.type != "cpu":
            columns = table if isinstance(table, np.ndarray) else segment_columns(table).cpu().numpy()
            parts = [columns[:, 1], columns[:, 2] > 0, columns[:, 3], columns[:, 4:8], columns[:, 8:10],
                     columns[:, 10]]  # fmt: skip
        else:  # host memory already: viewed, no PyTorch op
            parts = [t.numpy() for t in (table.category_ids, table.is_thing, table.areas, table.bboxes,
                                         table.centroids, table.scores)]  # fmt: skip
        keep = parts[2] > 0
        if keep.all():  # the common case: every segment shows; each column copied once, not selected
            self.row = np.arange(keep.size)  # row in the table: thing number - 1
        else:
            self.row = np.flatnonzero(keep)
            parts = [part[keep] for part in parts]
        category_ids, is_thing, areas, bboxes, centroids, scores = parts
        # converted where the type differs (a packed float64 table), else the arrays themselves (read only)
        self.category_ids = category_ids.astype(np.int64, copy=False)
        self.is_thing = is_thing.astype(bool, copy=False)
        self.areas = areas.astype(np.int64, copy=False)
        self.bboxes = bboxes.astype(np.int64, copy=False)
        self.centroids = centroids.astype(np.float32, copy=False)
        self.scores = scores.astype(np.float32, copy=False)


def instance_table(
    out: FrameOutput,
    tracked: TrackerOutput | None,
    *,
    publish_lost: bool,
    segments: HostSegments | None = None,
) -> InstanceTable:
    """The frame's rows (see the module docstring), boxes clipped to the image. ``segments``: the
    frame's segment table on the host, when the caller has moved it already."""
    segments = segments if segments is not None else HostSegments(out.segments)
    return table_rows(tracked, segments, out.camera_size, publish_lost=publish_lost)


#: The :class:`TrackTable` columns the instance table is made from, in ``table_columns``' order.
_TABLE_COLUMNS = (
    "track_ids", "category_ids", "scores", "states", "areas", "bboxes", "centroids", "velocities", "ages",
)  # fmt: skip


def table_rows(
    tracked: TrackerOutput | None, segments: HostSegments, size: tuple[int, int], *, publish_lost: bool
) -> InstanceTable:
    """:func:`instance_table` of a frame of ``size`` ``(height, width)`` from its tracker output and
    host segments, in one compiled pass (:func:`~panoptic_ros.runtime.instances_cpu.table_columns`)."""
    tracks = _NO_TRACKS if tracked is None else tracked.tracks
    used = [getattr(tracks, name) for name in _TABLE_COLUMNS]  # the track columns the table shows
    if tracked is not None and publish_lost and len(tracked.lost):  # the lost tracks after them
        used = [
            np.concatenate((column, getattr(tracked.lost, name)))
            for column, name in zip(used, _TABLE_COLUMNS, strict=True)
        ]
    height, width = size
    columns = table_columns(
        *used, segments.row, segments.category_ids, segments.is_thing, segments.areas, segments.bboxes,
        segments.centroids, segments.scores, tracked is None, int(width), int(height),
    )  # fmt: skip
    n = columns[0].shape[0]
    return InstanceTable(
        *columns, positions=np.zeros((n, 3), dtype=np.float32), position_valid=np.zeros(n, dtype=bool)
    )


_NO_TRACKS = TrackTable.empty()


def with_positions(
    table: InstanceTable,
    out: FrameOutput,
    id_map: torch.Tensor,
    depth: np.ndarray,
    camera: CameraModel,
    *,
    min_pixels: int,
) -> InstanceTable:
    """``table`` with the 3D position of every row that shows in the frame: the median valid depth in
    its pixels (``id_map`` for things, the category for stuff), back-projected through its centroid.

    Measured at the model's resolution, like the rest of the frame: the depth is sampled at each model
    pixel (the middle camera pixel of those that copy it, :meth:`PixelFrame.sample`) and each model
    pixel counts for the camera pixels that copy it, so the median and ``min_pixels`` are over camera
    pixels, with the depth of a model pixel's block taken at its middle. The work does not grow with
    the camera's resolution (the median over every camera pixel cost 9x the network's time per frame
    at 1080p on dev-cpu, ``docs/BENCHMARKS.md``); where the camera is no larger than the model,
    every camera pixel is its own sample and the medians are those of the camera's pixels exactly."""
    device = id_map.device
    h, w = out.camera_size
    depth = aligned_depth(depth, (h, w))
    sampled = depth if out.frame.weights is None else out.frame.sample(depth)
    # each row's key: unique (track ids, then one stuff row per category); a row no camera pixel shows
    # (area 0: a lost track, not drawn) has no pixel with its key, so no position
    keys = np.where(table.is_thing, table.ids.astype(np.int64), -1 - table.category_ids.astype(np.int64))
    # a pixel's label: a thing's id where it has one, else -1 - its category (a stuff row's key on stuff
    # pixels; on void, the set's void value, and on unpublished things, a thing's category: a key no row
    # has), read from the two maps as it goes (no map of labels made)
    positions, valid = segment_positions(
        id_map,
        torch.from_numpy(keys).to(device),
        torch.from_numpy(table.centroids).to(device),
        torch.from_numpy(np.ascontiguousarray(sampled, dtype=np.float32)).to(device),
        camera.scaled(w, h),
        min_pixels=min_pixels,
        weights=out.frame.weights,
        semantic=out.semantic,
    )
    return table._replace(positions=positions.cpu().numpy(), position_valid=valid.cpu().numpy())
