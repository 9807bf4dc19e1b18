"""Frames of several cameras in, publishable results out: one batched inference, per-camera tracking.

The processor owns the pipeline and one tracker per camera. It is what the node's worker thread
calls with the newest frame of every camera, and what ``panoptic-ros bag process`` calls offline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from panoptic_ros.core.geometry import segment_positions
from panoptic_ros.core.overlay import overlay, tracked_display_map
from panoptic_ros.core.pipeline import FrameOutput, PanopticPipeline
from panoptic_ros.runtime.records import FrameResult, InputFrame, InstanceTable, clip_boxes
from panoptic_ros.tracking import Tracker, TrackerInput, TrackerOutput, TrackerParams, TrackState, TrackTable

#: Label of void pixels in the label map used for depth lookups (never a segment's label).
_NO_SEGMENT = -(1 << 40)


@dataclass(frozen=True)
class ProcessorParams:
    """How frames are turned into results.

    Attributes:
        tracking: track things across frames (instance ids are track ids); off: per-frame numbers.
        tracker: the tracker's thresholds.
        publish_lost: list lost tracks (``STATE_LOST``, area 0, predicted box) in the instances.
        min_depth_pixels: segments with fewer valid depth pixels get no 3D position.
    """

    tracking: bool = True
    tracker: TrackerParams = field(default_factory=TrackerParams)
    publish_lost: bool = True
    min_depth_pixels: int = 10


class _StreamState:
    __slots__ = ("shape", "stamp_ns", "tracker")

    def __init__(self, tracker: Tracker | None) -> None:
        self.tracker = tracker
        self.shape: tuple[int, int] | None = None
        self.stamp_ns: int | None = None


class FrameProcessor:
    """Runs ``pipeline`` over the frames of several cameras and builds their :class:`FrameResult`."""

    def __init__(self, pipeline: PanopticPipeline, params: ProcessorParams | None = None) -> None:
        self.pipeline = pipeline
        self.params = params or ProcessorParams()
        self.label_set = pipeline.label_set
        self.label_divisor = pipeline.params.label_divisor
        self._streams: dict[str, _StreamState] = {}
        self._semantic_dtype = np.uint8 if self.label_set.void_semantic <= 255 else np.uint16
        pipeline.timing = True

    def update_params(self, params: ProcessorParams) -> None:
        """New thresholds; trackers keep their tracks and take the new tracker thresholds."""
        self.params = params
        for state in self._streams.values():
            if not params.tracking:
                state.tracker = None
            elif state.tracker is None:
                state.tracker = Tracker(params.tracker)
            else:
                state.tracker.params = params.tracker

    def check_fusion(self, overrides: Mapping[str, Any]) -> Any:
        """The fusion parameters the model spec's defaults overridden by ``overrides`` give (keys of
        another family's fusion, declared for a model configured earlier, are ignored).

        Raises:
            ConfigError: the fusion refuses a value (the message names it).
        """
        pipeline = self.pipeline
        params_type = type(pipeline.params)
        known = {f.name for f in dataclasses.fields(params_type)}
        mine = {k: v for k, v in overrides.items() if k in known}
        return params_type.from_spec({**pipeline.spec.fusion, **mine})

    def set_fusion(self, overrides: Mapping[str, Any]) -> None:
        """Use :meth:`check_fusion`'s parameters from the next frame on."""
        self.pipeline.params = self.check_fusion(overrides)

    def reset(self) -> None:
        """Forget every camera's tracks and history."""
        self._streams.clear()

    def process(self, frames: Sequence[InputFrame]) -> list[FrameResult]:
        """Process frames (at most one per camera, any sizes) in one batched inference."""
        outputs, batch_times = self.infer(frames)
        return [self.result(frame, out, batch_times) for frame, out in zip(frames, outputs, strict=True)]

    def infer(self, frames: Sequence[InputFrame]) -> tuple[list[FrameOutput], dict[str, float]]:
        """The batched part: preprocessing, inference and fusion of all frames, and the seconds each
        stage took for the batch."""
        if not frames:
            return [], {}
        before = dict(self.pipeline.times.seconds)
        outputs = self.pipeline([f.rgb for f in frames])
        after = self.pipeline.times.seconds
        return outputs, {k: v - before.get(k, 0.0) for k, v in after.items()}

    def _events(self, frame: InputFrame, state: _StreamState) -> tuple[str, ...]:
        events = []
        shape = frame.rgb.shape[:2]
        if state.shape is not None and shape != state.shape:
            events.append("resolution_change")
        if state.stamp_ns is not None and frame.stamp_ns < state.stamp_ns:
            events.append("time_jump_back")
        state.shape, state.stamp_ns = shape, frame.stamp_ns
        return tuple(events)

    def result(self, frame: InputFrame, out: FrameOutput, batch_times: dict[str, float]) -> FrameResult:
        """The per-camera part: tracking, instance table, 3D positions, overlay, host label maps."""
        state = self._streams.get(frame.camera)
        if state is None:
            tracker = Tracker(self.params.tracker) if self.params.tracking else None
            state = self._streams[frame.camera] = _StreamState(tracker)
        events = self._events(frame, state)
        device = out.panoptic.device
        image = None
        if frame.overlay or state.tracker:
            # a view of a message buffer is read-only; torch wants memory it may write to
            rgb = frame.rgb if frame.rgb.flags.writeable else frame.rgb.copy()
            image = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
        start = time.perf_counter()
        tracked: TrackerOutput | None = None
        if state.tracker is not None:
            tracked = state.tracker.update(TrackerInput.from_frame(out, frame.stamp_ns, image=image))
            id_map = tracked.track_map.to(device)
        else:
            id_map = out.instance
        tracking_s = time.perf_counter() - start

        start = time.perf_counter()
        instances = self._instances(out, tracked, id_map, frame)
        overlay_bgr = None
        if frame.overlay and image is not None:
            shown = (
                tracked_display_map(out.panoptic, out.instance, tracked.track_map, self.label_divisor)
                if tracked
                else out.panoptic
            )
            picture = overlay(image, shown, self.label_set, label_divisor=self.label_divisor)
            overlay_bgr = np.ascontiguousarray(picture.cpu().numpy()[..., ::-1])
        semantic = out.semantic.to(torch.int32).cpu().numpy().astype(self._semantic_dtype)
        instance_ids = id_map.to(torch.int32).cpu().numpy()
        outputs_s = time.perf_counter() - start
        return FrameResult(
            camera=frame.camera,
            stamp_ns=frame.stamp_ns,
            header=frame.header,
            received_ns=frame.received_ns,
            semantic=semantic,
            instance_ids=instance_ids,
            instances=instances,
            overlay_bgr=overlay_bgr,
            events=events,
            times={**batch_times, "tracking": tracking_s, "outputs": outputs_s},
        )

    # ----------------------------------------------------------------------------------------------

    def _instances(
        self, out: FrameOutput, tracked: TrackerOutput | None, id_map: torch.Tensor, frame: InputFrame
    ) -> InstanceTable:
        seg = out.segments
        stuff_rows = ~seg.is_thing
        if tracked is not None:
            things = _track_rows(tracked.tracks)
            if self.params.publish_lost and len(tracked.lost):
                things = InstanceTable.concatenate([things, _track_rows(tracked.lost)])
            if not self.params.tracker.publish_tentative:
                keep = things.states != TrackState.TENTATIVE
                things = InstanceTable(*(c[keep] for c in things))
        else:
            things = _segment_rows(out, seg.is_thing, ids=(seg.ids[seg.is_thing] % self.label_divisor))
        first_stuff = int(things.ids.max()) + 1 if things.size else 1
        n_stuff = int(stuff_rows.sum())
        stuff = _segment_rows(
            out, stuff_rows, ids=torch.arange(first_stuff, first_stuff + n_stuff, device=seg.ids.device)
        )
        table = InstanceTable.concatenate([things, stuff])
        h, w = id_map.shape
        table = table._replace(bboxes=clip_boxes(table.bboxes, w, h))
        if frame.depth is not None and frame.camera_model is not None and table.size:
            table = self._with_positions(table, out, id_map, frame)
        return table

    def _with_positions(
        self, table: InstanceTable, out: FrameOutput, id_map: torch.Tensor, frame: InputFrame
    ) -> InstanceTable:
        device = id_map.device
        h, w = id_map.shape
        depth = frame.depth
        if depth.shape != (h, w):
            depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
        camera = frame.camera_model.scaled(w, h)
        category = torch.div(out.panoptic.clamp(min=0), self.label_divisor, rounding_mode="floor")
        stuff = (out.panoptic >= 0) & (out.instance == 0)
        labels = torch.where(
            id_map > 0,
            id_map.long(),
            torch.where(stuff, -1 - category, torch.full_like(category, _NO_SEGMENT)),
        )
        keys = np.where(table.is_thing, table.ids.astype(np.int64), -1 - table.category_ids.astype(np.int64))
        present = table.areas > 0
        positions, valid = segment_positions(
            labels,
            torch.from_numpy(keys[present]).to(device),
            torch.from_numpy(table.centroids[present]).to(device),
            torch.from_numpy(depth).to(device),
            camera,
            min_pixels=self.params.min_depth_pixels,
        )
        all_positions = np.zeros((table.size, 3), dtype=np.float32)
        all_valid = np.zeros(table.size, dtype=bool)
        all_positions[present] = positions.cpu().numpy()
        all_valid[present] = valid.cpu().numpy()
        return table._replace(positions=all_positions, position_valid=all_valid)


def _track_rows(tracks: TrackTable) -> InstanceTable:
    n = len(tracks)
    return InstanceTable(
        ids=tracks.track_ids.astype(np.uint32),
        category_ids=tracks.category_ids.astype(np.int64),
        is_thing=np.ones(n, dtype=bool),
        scores=tracks.scores.astype(np.float32),
        states=tracks.states.astype(np.uint8),
        areas=tracks.areas.astype(np.int64),
        bboxes=np.rint(tracks.bboxes).astype(np.int64),
        centroids=tracks.centroids.astype(np.float32),
        velocities=tracks.velocities.astype(np.float32),
        ages=tracks.ages.astype(np.int64),
        positions=np.zeros((n, 3), dtype=np.float32),
        position_valid=np.zeros(n, dtype=bool),
    )


def _segment_rows(out: FrameOutput, rows: torch.Tensor, *, ids: torch.Tensor) -> InstanceTable:
    seg = out.segments
    n = int(rows.sum())
    return InstanceTable(
        ids=ids.cpu().numpy().astype(np.uint32),
        category_ids=seg.category_ids[rows].cpu().numpy().astype(np.int64),
        is_thing=seg.is_thing[rows].cpu().numpy(),
        scores=seg.scores[rows].cpu().numpy().astype(np.float32),
        states=np.full(n, TrackState.CONFIRMED, dtype=np.uint8),
        areas=seg.areas[rows].cpu().numpy().astype(np.int64),
        bboxes=seg.bboxes[rows].cpu().numpy().astype(np.int64),
        centroids=seg.centroids[rows].cpu().numpy().astype(np.float32),
        velocities=np.zeros((n, 2), dtype=np.float32),
        ages=np.ones(n, dtype=np.int64),
        positions=np.zeros((n, 3), dtype=np.float32),
        position_valid=np.zeros(n, dtype=bool),
    )
