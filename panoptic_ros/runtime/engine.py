"""The frame engine: decoded camera frames in, one result record per camera frame out.

Every front-end runs frames through this one class: the node's worker, ``panoptic-ros bag process``,
``panoptic-ros infer`` (images, folders, videos, bags; with or without ``--track``) and the demos. Per
call (:meth:`FrameEngine.process`):

1. one batched pass of the pipeline over all frames (upload once, preprocess, inference, fusion with
   the segments measured in each camera frame, label maps at the model's resolution);
2. per frame, each camera's frames in order (the cameras side by side on camera threads where asked:
   :mod:`~panoptic_ros.runtime.camera_threads`): the stream's continuity
   (:class:`~panoptic_ros.tracking.StreamCheck`, one check: the tracker's own when tracking), tracking
   (the camera's :class:`~panoptic_ros.tracking.Tracker`), the instance table with every id numbered
   (:mod:`panoptic_ros.runtime.instances`), 3D positions when depth and camera_info came with the
   frame, the overlay when asked for, and the label images at the camera's size
   (:mod:`panoptic_ros.runtime.label_images`: large ones on a side thread meanwhile).

Parameters arrive validated (:class:`EngineParams`, built by :mod:`panoptic_ros.runtime.config` or a
command line) and are applied between batches by :meth:`FrameEngine.apply`, without being parsed again.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.overlay import OverlayPainter, tracked_display_map
from panoptic_ros.runtime.camera_threads import CameraThreads
from panoptic_ros.runtime.cloud import color_table, frame_cloud
from panoptic_ros.runtime.download import download, tracker_input
from panoptic_ros.runtime.instances import instance_table, with_positions
from panoptic_ros.runtime.kernels import compile_kernels
from panoptic_ros.runtime.label_images import LabelImages
from panoptic_ros.runtime.pipeline import FrameOutput, NetworkBatch, PanopticPipeline
from panoptic_ros.runtime.profiling import stage_label
from panoptic_ros.runtime.records import FrameResult, InputFrame
from panoptic_ros.runtime.warm_up import is_warm_up, warm_up_batches
from panoptic_ros.tracking import StreamCheck, Tracker, TrackerOutput, TrackerParams


@dataclass(frozen=True)
class EngineParams:
    """How frames are turned into results (all validated).

    Attributes:
        tracking: track things across frames (instance ids are track ids); off: numbers unique
            within each frame.
        tracker: the tracker's thresholds.
        publish_lost: list lost tracks (``STATE_LOST``, area 0, predicted box) in the instances.
        min_depth_pixels: segments with fewer valid depth pixels get no 3D position.
        points_stride: the point cloud keeps every ``points_stride``-th pixel in each axis.
        fusion: the decoder family's threshold record (from :meth:`FrameEngine.fusion_params`); None
            keeps the thresholds in force.
    """

    tracking: bool = True
    tracker: TrackerParams = field(default_factory=TrackerParams)
    publish_lost: bool = True
    min_depth_pixels: int = 10
    points_stride: int = 1
    fusion: Any = None


class _Stream:
    """One camera's state: its tracker (when tracking) and its continuity check (when not)."""

    __slots__ = ("check", "tracker")

    def __init__(self, tracker: Tracker | None) -> None:
        self.tracker = tracker
        self.check = StreamCheck()


class FrameEngine:
    """Runs the pipeline over the frames of several cameras and builds their :class:`FrameResult`.

    Args:
        pipeline: the loaded model (the engine closes it on :meth:`close`).
        params: how frames are processed; defaults when None.
        side_thread: expand large label images to the camera's size on a second thread, beside the
            instance table and the overlay (:mod:`~panoptic_ros.runtime.label_images`); False: on the
            calling thread (the same images).
        camera_threads: make the results of a batch's cameras on up to this many threads at once,
            each camera's frames in order (:mod:`~panoptic_ros.runtime.camera_threads`); 1: one
            after another; 0: as many as the machine's cores suit (one below 8 cores).
    """

    def __init__(
        self,
        pipeline: PanopticPipeline,
        params: EngineParams | None = None,
        *,
        side_thread: bool = True,
        camera_threads: int = 1,
    ) -> None:
        self.pipeline = pipeline
        self._images = LabelImages(pipeline.label_set, side_thread=side_thread)
        self.cameras = CameraThreads(camera_threads)
        self.params = EngineParams()
        self._streams: dict[str, _Stream] = {}
        self.label_set: LabelSet = pipeline.label_set
        self._largest_category = int(self.label_set.class_to_id.max())
        self._colors: torch.Tensor | None = None  # category colors of the point cloud, made on first use
        # the compiled loops, ready before the first frame (loaded from numba's cache)
        compile_kernels(cpu_frame_path=pipeline.device.type == "cpu" and not pipeline.fusion.fixed_shapes)
        pipeline.timing = True
        self.apply(params or EngineParams())

    @classmethod
    def open(
        cls,
        model: str | Path,
        *,
        params: EngineParams | None = None,
        side_thread: bool = True,
        camera_threads: int = 1,
        **options: Any,
    ) -> FrameEngine:
        """Load ``model``; ``options`` are :class:`PanopticPipeline`'s (``backend``, ``device``,
        ``resize``, ``fusion`` overrides of the spec's thresholds, ``backend_options``)."""
        pipeline = PanopticPipeline(model, **options)
        return cls(pipeline, params, side_thread=side_thread, camera_threads=camera_threads)

    # ---- what the front-ends read

    @property
    def label_divisor(self) -> int:
        return int(self.pipeline.params.label_divisor)

    @property
    def spec(self) -> Any:
        return self.pipeline.spec

    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    def describe(self) -> str:
        """The backend and device, e.g. ``onnxruntime (CPUExecutionProvider)``."""
        return self.pipeline.backend.describe()

    def score_threshold(self) -> float:
        """The confidence threshold of the fusion in force (``vision_msgs/LabelInfo.threshold``)."""
        return self.pipeline.score_threshold()

    def stage_times(self) -> dict[str, float]:
        """Milliseconds per frame spent in each pipeline stage so far."""
        return self.pipeline.times.per_frame_ms()

    # ---- parameters

    def fusion_params(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The model family's thresholds: its spec's defaults overridden by ``overrides``; other
        families' keys are ignored.

        Raises:
            ConfigError: the fusion refuses a value (the message names it).
        """
        return self.pipeline.fusion_params(overrides)

    def apply(self, params: EngineParams) -> None:
        """Use validated ``params`` from the next frame on; trackers keep their tracks.

        Raises:
            ConfigError: the fusion thresholds do not fit the pipeline's CUDA graph (nothing applied).
        """
        if params.fusion is not None:
            self.pipeline.set_params(params.fusion)
        self.params = params
        for stream in self._streams.values():
            if not params.tracking:
                stream.tracker = None
            elif stream.tracker is None:
                stream.tracker = Tracker(params.tracker)
            else:
                stream.tracker.params = params.tracker

    def reset(self) -> None:
        """Forget every camera's tracks and history."""
        self._streams.clear()

    def warm_up(self, frames: int, *, cameras: int = 1) -> None:
        """Blank frames through the whole frame path on this thread (network, fusion, tracking, label
        maps, overlay, 3D positions; :mod:`~panoptic_ros.runtime.warm_up`), batched as the cameras will
        be, so the first real frames are not the slow ones. A CUDA graph, captured per camera size, is
        still captured by the first real frame. Leaves no tracks and no timing behind."""
        try:
            for batch in warm_up_batches(self.pipeline, frames, cameras):
                self.process(batch)
        finally:
            self.forget_warm_up()

    def forget_warm_up(self) -> None:
        """Drop what warm-up frames left behind: their cameras' tracks and the stage times."""
        for camera in [c for c in self._streams if is_warm_up(c)]:
            del self._streams[camera]
        self.pipeline.reset_times()

    # ---- frames

    def process(self, frames: Sequence[InputFrame]) -> list[FrameResult]:
        """Process frames (any sizes, any cameras; a camera's frames in stamp order) in one batched
        inference; one result per frame, in order. The first frame whose result fails raises."""
        outputs, batch_times = self.infer(frames)
        return self.collect(frames, outputs, batch_times)

    def collect(
        self, frames: Sequence[InputFrame], outputs: Sequence[FrameOutput], batch_times: dict[str, float]
    ) -> list[FrameResult]:
        """:meth:`results` as a list; the first frame whose result fails raises (once the other
        cameras' work is done: none of it runs on into the next batch)."""
        collected = []
        outcomes = self.results(frames, outputs, batch_times)
        try:
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
                collected.append(outcome)
        finally:
            outcomes.close()
        return collected

    def results(
        self, frames: Sequence[InputFrame], outputs: Sequence[FrameOutput], batch_times: dict[str, float]
    ) -> Generator[FrameResult | Exception, None, None]:
        """:meth:`result` of each frame of a fused batch, the cameras side by side on the engine's
        camera threads (:class:`~panoptic_ros.runtime.camera_threads.CameraThreads`): each frame's
        result, or the exception that stopped it, in frame order. Close it when stopping early."""
        return self.cameras.run(
            [frame.camera for frame in frames], lambda i: self.result(frames[i], outputs[i], batch_times)
        )

    def infer(self, frames: Sequence[InputFrame]) -> tuple[list[FrameOutput], dict[str, float]]:
        """The batched part of :meth:`process`: the pipeline over all frames, and the seconds each
        stage took for the batch. (The node calls the two parts apart, to count a failure per frame.)"""
        if not frames:
            return [], {}
        return self.fuse(self.network(frames))

    def network(self, frames: Sequence[InputFrame]) -> list[NetworkBatch]:
        """The first half of :meth:`infer`: upload, preprocessing and the network. It touches nothing
        :meth:`fuse` and :meth:`result` use, so one thread may run the network of the next frames while
        another fuses and tracks the previous ones (the node's worker does)."""
        return self.pipeline.network([f.image for f in frames], order=[f.order for f in frames])

    def fuse(self, batches: Sequence[NetworkBatch]) -> tuple[list[FrameOutput], dict[str, float]]:
        """The second half of :meth:`infer`: fusion and label maps of :meth:`network`'s batches, and
        the seconds each stage took for them (network stages included)."""
        outputs: list[FrameOutput] = []
        seconds: dict[str, float] = {}
        for batch in batches:
            outputs.extend(self.pipeline.fuse(batch))
            for stage, value in batch.times.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + value
        return outputs, seconds

    def _stream(self, camera: str) -> _Stream:
        stream = self._streams.get(camera)
        if stream is None:
            tracker = Tracker(self.params.tracker) if self.params.tracking else None
            stream = self._streams[camera] = _Stream(tracker)
        return stream

    def result(self, frame: InputFrame, out: FrameOutput, batch_times: dict[str, float]) -> FrameResult:
        """The per-frame part of :meth:`process`, in the camera's stamp order."""
        stream = self._stream(frame.camera)
        with stage_label("panoptic::tracking"):
            start = time.perf_counter()
            # the table and the label maps move to the host once, together
            fixed = self.pipeline.fusion.fixed_shapes  # fixed shapes: the device's one transfer everywhere
            host = download(
                out,
                panoptic=frame.overlay and stream.tracker is None,
                dtype=self._map_dtype(),
                packed=fixed or None,
            )
            segments = host.segments
            tracked: TrackerOutput | None = None
            if stream.tracker is not None:
                inp = tracker_input(
                    out, frame.stamp_ns, segments, fixed_shapes=self.pipeline.fusion.fixed_shapes
                )
                tracked = stream.tracker.update(inp)
                events = tracked.events
                id_map = tracked.track_map
                host_ids = (
                    tracked.track_map.numpy()  # on the CPU the tracker's map is on the host already
                    if tracked.track_map.device.type == "cpu"
                    else tracked.host_track_map(host.instance, np.asarray(inp.ids))  # no transfer
                )
            else:
                events = stream.check.observe(out.camera_size, frame.stamp_ns)
                id_map = out.instance
                host_ids = host.instance
            tracking_s = time.perf_counter() - start

        with stage_label("panoptic::outputs"):
            start = time.perf_counter()
            params = self.params
            # the label images expanded to the camera's size, on the side thread (where large) while the
            # table and the overlay are made here
            images = self._images.start(
                out.frame,
                host.semantic if frame.semantic_image else None,
                host_ids if frame.instance_image else None,
                warm_up=is_warm_up(frame.camera),
            )
            table = instance_table(out, tracked, publish_lost=params.publish_lost, segments=segments)
            if frame.positions and frame.depth is not None and frame.camera_model is not None and table.size:
                table = with_positions(
                    table,
                    out,
                    id_map,
                    frame.depth,
                    frame.camera_model,
                    min_pixels=params.min_depth_pixels,
                )
            overlay_bgr = None
            if frame.overlay:  # things shaded by track id when tracking: a track keeps its shade
                shown = (
                    tracked_display_map(host.semantic, host_ids, self.label_set, self.label_divisor)
                    if tracked is not None
                    else host.panoptic
                )
                overlay_bgr = self._overlay(frame, out, shown)
            cloud = None
            if frame.points and frame.depth is not None and frame.camera_model is not None:
                if self._colors is None:
                    self._colors = color_table(self.label_set, self.device)
                model, stride = frame.camera_model, params.points_stride
                cloud = frame_cloud(
                    out.in_camera(out.semantic),
                    out.in_camera(id_map),
                    frame.depth,
                    model,
                    self._colors,
                    stride=stride,
                )
            semantic, instance_ids = images.result()
            outputs_s = time.perf_counter() - start
        return FrameResult(
            camera=frame.camera,
            stamp_ns=frame.stamp_ns,
            frame_id=frame.frame_id,
            received_ns=frame.received_ns,
            semantic=semantic,
            instance_ids=instance_ids,
            instances=table,
            overlay_bgr=overlay_bgr,
            events=events,
            times={**batch_times, "tracking": tracking_s, "outputs": outputs_s},
            cloud=cloud,
            dropped_centers=self._dropped_centers(out),
            size=out.camera_size,
        )

    def _map_dtype(self) -> torch.dtype:
        """The maps' type on their way to the host: int32 where every panoptic id of the label set
        fits with the divisor in force, else int64."""
        largest_id = (self._largest_category + 1) * self.label_divisor
        return torch.int32 if largest_id < 2**31 else torch.int64

    def _dropped_centers(self, out: FrameOutput) -> int:
        """Centers the fixed-shape fusion left out; read from the device only where it can leave some
        out (no ``top_k``)."""
        if out.dropped_centers is None or getattr(self.pipeline.params, "top_k", 0) is not None:
            return 0
        return int(out.dropped_centers)

    def _overlay(self, frame: InputFrame, out: FrameOutput, shown: np.ndarray) -> np.ndarray:
        """The BGR overlay of the host display map (colors chosen at the model's resolution, the
        picture made on the host): a BGR frame's channels stay, an RGB frame's are swapped."""
        painter = OverlayPainter(
            frame.image, shown, self.label_set, frame=out.frame, label_divisor=self.label_divisor,
            order=frame.order, swap=frame.order == "rgb",
        )  # fmt: skip
        painter.paint(0, painter.height)
        return painter.picture

    # ---- life cycle

    def close(self) -> None:
        self.cameras.close()
        self._images.close()
        self._streams.clear()
        self.pipeline.close()

    def __enter__(self) -> FrameEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
