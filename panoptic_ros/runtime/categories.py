"""Class indices -> category ids: a fused frame's maps and segment rows in the label set's ids.

The fusion numbers things and stuff by the model's classes (``class * label_divisor + n``); what is
published carries the label set's category ids. Both maps come from two lookup tables indexed by the
fused id + 1 (void -1 -> row 0), made once per divisor: one gather per map, on the CPU one compiled
pass for both (:func:`~panoptic_ros.core.segments_cpu.take_pair_cpu`); arithmetic where the tables
would be large. The segment rows take their category ids by the same class table, on the CPU with
numpy (a handful of rows: PyTorch's dispatch would cost more than the work).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.segments import as_dtype, take
from panoptic_ros.core.segments_cpu import take_pair_cpu
from panoptic_ros.fusion.families import FusedFrame

#: Largest lookup table (entries) from fused ids to category ids; larger label spaces use arithmetic.
MAX_CATEGORY_TABLE = 1 << 22


class SegmentTable(NamedTuple):
    """One row per segment of a frame (all on the device), measured in the camera frame.

    ``ids`` [S] int64 panoptic id (``category_id * label_divisor + n``; ``n = 0`` for stuff),
    ``category_ids`` [S], ``is_thing`` [S] bool, ``areas`` [S] (0 for a segment that no camera pixel
    shows, possible when the camera image is smaller than the model input), ``bboxes`` [S, 4] (x, y,
    width, height), ``centroids`` [S, 2] (x, y), ``scores`` [S] float32. Things first, as fused.
    """

    ids: torch.Tensor
    category_ids: torch.Tensor
    is_thing: torch.Tensor
    areas: torch.Tensor
    bboxes: torch.Tensor
    centroids: torch.Tensor
    scores: torch.Tensor


class CategoryIds:
    """The category ids of one label set's classes on one device. ``fixed_shapes``: the fusion keeps
    padding rows (id -1, kept -1 here) and the device's ops are used on the CPU too (the CPU standing
    in for CUDA)."""

    def __init__(self, label_set: LabelSet, device: torch.device, *, fixed_shapes: bool) -> None:
        self.device = device
        self.fixed_shapes = fixed_shapes
        self._class_to_id = torch.as_tensor(label_set.class_to_id, device=device)
        self._host_class_to_id = np.asarray(label_set.class_to_id, dtype=np.int64)
        self._void_semantic = label_set.void_semantic
        self._tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._host_tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # views of the CPU tables

    def maps(self, fused: torch.Tensor, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fused map (``class * divisor + n``, -1 void) as panoptic ids with the category
        (``category_id * divisor + n``, -1 void) and as category ids (the label set's void value for
        void), both int64 like the map."""
        classes = self._class_to_id.numel()
        if classes * divisor > MAX_CATEGORY_TABLE:
            void = fused < 0
            category = self._class_to_id[torch.div(fused.clamp(min=0), divisor, rounding_mode="floor")]
            panoptic = torch.where(void, -1, category * divisor + fused.clamp(min=0) % divisor)
            return panoptic, torch.where(void, self._void_semantic, category)
        tables = self._tables.get(divisor)
        if tables is None:
            ids = torch.arange(classes * divisor, device=self.device)
            category = self._class_to_id[torch.div(ids, divisor, rounding_mode="floor")]
            void_panoptic = torch.full((1,), -1, dtype=torch.int64, device=self.device)
            void_semantic = torch.full((1,), self._void_semantic, dtype=torch.int64, device=self.device)
            tables = self._tables[divisor] = (
                torch.cat((void_panoptic, category * divisor + ids % divisor)),
                torch.cat((void_semantic, category)),
            )
        if fused.device.type == "cpu" and not self.fixed_shapes:  # one compiled pass, both maps
            host = self._host_tables.get(divisor)
            if host is None:  # viewed once (each .numpy() is a few PyTorch ops)
                host = self._host_tables[divisor] = (tables[0].numpy(), tables[1].numpy())
            panoptic, semantic = take_pair_cpu(host[0], host[1], fused.numpy(), shift=1)
            return torch.from_numpy(panoptic), torch.from_numpy(semantic)
        index, fixed = fused + 1, self.fixed_shapes  # void (-1) -> row 0; take: a flat gather
        return take(tables[0], index, fixed_shapes=fixed), take(tables[1], index, fixed_shapes=fixed)

    def table(self, fused: FusedFrame, divisor: int) -> SegmentTable:
        """The fusion's segment rows with panoptic and category ids; geometry as measured (in the
        camera frame); padding rows of a fixed-shape fusion keep id -1."""
        seg = fused.segments
        if seg.classes.device.type == "cpu" and not self.fixed_shapes:
            categories = self._host_class_to_id[seg.classes.numpy()]
            seg_categories = torch.from_numpy(categories)
            ids = torch.from_numpy(categories * divisor + seg.ids.numpy() % divisor)
        else:
            seg_categories = self._class_to_id[seg.classes]
            ids = seg_categories * divisor + seg.ids % divisor
        return SegmentTable(
            ids=ids if fused.dropped is None else torch.where(seg.ids >= 0, ids, -1),
            category_ids=seg_categories,
            is_thing=seg.is_thing,
            areas=seg.areas,
            bboxes=seg.bboxes,
            centroids=as_dtype(seg.centroids, torch.float32),
            scores=as_dtype(seg.scores, torch.float32),
        )
