"""A frame's results on the host in one transfer: the segment table and the label maps together.

Everything the engine publishes leaves the device here, once per frame, before tracking: the segment
table (:func:`~panoptic_ros.runtime.instances.segment_columns`, float64) and the maps at the model's
resolution (semantic, the instance numbers, and the panoptic map when an untracked overlay needs it),
packed into one integer buffer (the table's float64 bits reinterpreted, not converted) and copied
with one synchronisation. The tracker's statistics are the only other transfer of a frame. On the CPU
nothing moves or is converted: the parts are viewed as numpy arrays, in their own type (every use of
the maps on the host takes either integer type). :func:`tracker_input` hands the tracker a frame's
things from that host copy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from panoptic_ros.runtime.instances import HostSegments, segment_columns
from panoptic_ros.runtime.pipeline import FrameOutput
from panoptic_ros.tracking import TrackerInput


class HostFrame(NamedTuple):
    """The host copy of a :class:`~panoptic_ros.runtime.pipeline.FrameOutput`'s published parts.

    Attributes:
        segments: the segment table without empty rows.
        semantic: ``[h, w]`` category id per pixel at the model's resolution (void value for void).
        instance: ``[h, w]`` thing number ``k + 1`` of segment row ``k``, 0 elsewhere.
        panoptic: ``[h, w]`` panoptic ids when asked for, else None.
    """

    segments: HostSegments
    semantic: np.ndarray
    instance: np.ndarray
    panoptic: np.ndarray | None


def download(
    out: FrameOutput, *, panoptic: bool, dtype: torch.dtype = torch.int32, packed: bool | None = None
) -> HostFrame:
    """Move the table and the maps of ``out`` to the host in one transfer.

    Args:
        out: the frame on its device.
        panoptic: also move the panoptic map.
        dtype: ``torch.int32`` or ``torch.int64``, the maps' type on the way through the packed buffer
            (int32 where every panoptic id fits).
        packed: through the one packed buffer; None: on every device but the CPU (where the parts are
            host memory already and are viewed, not copied or converted: the maps keep their own
            type). The same values either way.
    """
    if not (packed if packed is not None else out.semantic.device.type != "cpu"):
        panoptic_map = out.panoptic.numpy() if panoptic else None
        return HostFrame(HostSegments(out.segments), out.semantic.numpy(), out.instance.numpy(), panoptic_map)
    columns = segment_columns(out.segments)  # [S, 11] float64
    maps = [out.semantic, out.instance, *([out.panoptic] if panoptic else [])]
    block = torch.stack(maps).to(dtype)  # one conversion (stack promotes to the widest type)
    packed = torch.cat((columns.view(dtype).reshape(-1), block.reshape(-1))).cpu().numpy()
    table_size = columns.numel() * (8 // block.element_size())
    table = packed[:table_size].view(np.float64).reshape(columns.shape)
    host_maps = packed[table_size:].reshape(block.shape)
    return HostFrame(
        segments=HostSegments(table),
        semantic=host_maps[0],
        instance=host_maps[1],
        panoptic=host_maps[2] if panoptic else None,
    )


def tracker_input(
    out: FrameOutput, stamp_ns: int, segments: HostSegments | None = None, *, fixed_shapes: bool = False
) -> TrackerInput:
    """The things of a pipeline frame as the tracker takes them: the instance map at the model's
    resolution (thing ``k + 1`` on segment row ``k``) with each pixel weighted by the camera pixels
    that copy it (so areas and mask IoU are the camera frame's), the thing rows of the segment table
    that show in the frame (from its host copy ``segments``, made here when not given), and the frame
    as fitted to the model input for the mean colors. ``fixed_shapes``: the tracker measures the maps
    with shapes independent of the data too (the pipeline's fixed-shape mode)."""
    segments = segments if segments is not None else HostSegments(out.segments)
    things: slice | np.ndarray = segments.is_thing  # rows that show in the frame (area > 0)
    count = int(np.count_nonzero(things))
    if things[:count].all():  # things first, as fused: the rows are views
        things = slice(0, count)
    return TrackerInput(
        instance_map=out.instance,
        ids=segments.row[things] + 1,
        category_ids=segments.category_ids[things],
        scores=segments.scores[things],
        bboxes=segments.bboxes[things],
        centroids=segments.centroids[things],
        stamp_ns=int(stamp_ns),
        image=out.model_image.permute(1, 2, 0),
        pixel_weights=out.frame.weights,
        frame_size=out.camera_size,
        fixed_shapes=fixed_shapes,
    )
