"""The per-frame pipeline: frames in, panoptic maps and segment tables out, all on the device.

``frames -> preprocess (device) -> backend.infer -> fusion (device) -> category ids -> source size``.
Each frame is uploaded once; the uploaded image stays on the device with the result (for tracking
appearance and the overlay). Fusion measures the segments directly in the camera frame
(:mod:`panoptic_ros.core.segments`), so nothing is measured again after restoring the frame size.
Callers download only what they publish or write. Each stage is timed (:class:`StageTimes`),
synchronizing the device only when timing is asked for.

The fusion is the spec's decoder family's strategy (:mod:`panoptic_ros.fusion.families`). A model
whose spec names ``companions`` runs them on the same frames and hands their outputs to the fusion
under their roles, brought into the main model's input frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from panoptic_ros.backends.registry import create_backend, model_spec
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.preprocess import Orders, Preprocessor, ResizeMode, Transform, pixel_frame
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset_fixed import center_slots
from panoptic_ros.fusion.families import FamilyFusion, FusedFrame, family_fusion
from panoptic_ros.models.spec import ModelSpec
from panoptic_ros.runtime.categories import CategoryIds, SegmentTable
from panoptic_ros.runtime.companions import Companion
from panoptic_ros.runtime.frame_graph import FrameGraphs, graph_refusal
from panoptic_ros.runtime.profiling import stage_label


class FrameOutput(NamedTuple):
    """A frame's panoptic result on the device: maps at the model's resolution, measured and shown in
    the camera frame.

    The maps are ``[h, w]`` at the model's input resolution (letterbox padding included, void there);
    ``frame`` maps them into the camera frame (nearest, :meth:`in_camera`), which is how they are
    published. ``panoptic`` int64 ``category_id * label_divisor + n`` (-1 void); ``semantic`` int64
    category id of each pixel's segment (the label set's void value where void); ``instance`` int32
    ``k + 1`` on the thing of segment row ``k`` (things come first: numbers unique within the frame),
    0 for stuff and void. ``segments`` its table, measured in the camera frame. ``image`` ``[H, W, 3]``
    uint8 the camera frame as uploaded (channel order as given to the pipeline); ``model_image``
    ``[3, h, w]`` float32 the frame as fitted to the model input, values 0..255, before normalization,
    in the model's channel order. ``dropped_centers`` ``[]`` int64 centers the fixed-shape fusion left
    out for lack of slots (None: the fusion has no slots).
    """

    panoptic: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    segments: SegmentTable
    transform: Transform
    image: torch.Tensor
    frame: PixelFrame
    model_image: torch.Tensor
    dropped_centers: torch.Tensor | None = None

    @property
    def camera_size(self) -> tuple[int, int]:
        """``(height, width)`` of the camera frame."""
        return (self.transform.source_height, self.transform.source_width)

    def in_camera(self, labels: torch.Tensor) -> torch.Tensor:
        """A ``[..., h, w]`` map of this frame at the model's resolution in the camera frame
        (``[..., H, W]``, nearest, on its device)."""
        return self.frame.resample(labels)


@dataclass
class StageTimes:
    """Accumulated wall time per stage (seconds) and the number of frames."""

    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def per_frame_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(self.frames, 1) for k, v in self.seconds.items()}


class DeviceFrame(NamedTuple):
    """The device part of a :class:`FrameOutput` (what a whole-frame CUDA graph computes)."""

    panoptic: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    segments: SegmentTable
    dropped_centers: torch.Tensor | None


class NetworkBatch(NamedTuple):
    """Frames through the network, not fused yet (:meth:`PanopticPipeline.network`): the uploaded
    frames, the batch fitted to the model input before normalization (``N x 3 x h x w``), where each
    frame went, the network outputs by role, and the seconds per stage so far. ``fused``: each frame's
    device results already, where the network and the fusion ran as one CUDA graph (``roles`` empty)."""

    images: list[torch.Tensor]
    fitted: torch.Tensor
    transforms: list[Transform]
    roles: dict[str, torch.Tensor]
    times: StageTimes
    fused: list[DeviceFrame] | None = None


class PanopticPipeline:
    """Loads a model (spec + backend) and turns batches of frames into :class:`FrameOutput`.

    Args:
        model: an ONNX model with a spec (or a sidecar).
        backend: ``auto``, ``onnxruntime``, ``torch`` (``tensorrt`` where installed).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        resize: how frames are fitted to the model input (``resize`` stretches, ``letterbox`` pads).
        fusion: overrides of the spec's fusion thresholds.
        timing: synchronize and time each stage (see :attr:`times`).
        backend_options: keyword options of the backend (see ``create_backend``).
        fixed_shapes: fuse with fixed shapes (no device sync, shapes independent of the data; see
            :mod:`panoptic_ros.fusion.center_offset_fixed`) where the model's family can; None: on CUDA
            (where launches and syncs cost), not on the CPU (where the data-dependent fusion does less).
        cuda_graph: run the network, the fusion and the label maps of a batch as one CUDA graph per
            batch geometry (:mod:`panoptic_ros.runtime.frame_graph`; implies fixed shapes). Raises
            :class:`ConfigError` saying why where that is not possible.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        backend: str = "auto",
        device: str = "auto",
        resize: ResizeMode = "resize",
        fusion: Mapping[str, Any] | None = None,
        timing: bool = False,
        backend_options: Mapping[str, Any] | None = None,
        fixed_shapes: bool | None = None,
        cuda_graph: bool = False,
    ) -> None:
        self.model_path = Path(model)
        self.spec: ModelSpec = model_spec(self.model_path)
        self.family: type[FamilyFusion] = family_fusion(self.spec.family, self.model_path.name)
        self.params = self.family.params(self.spec.fusion, fusion)
        self.backend = create_backend(
            backend, self.model_path, device=device, spec=self.spec, options=backend_options
        )
        self.device = self.backend.device
        self.model_size = (self.spec.input.height, self.spec.input.width)
        self.label_set: LabelSet = self.spec.label_set
        if fixed_shapes is None:
            fixed_shapes = self.device.type == "cuda" or cuda_graph
        self.fusion: FamilyFusion = self.family(
            self.label_set, self.model_size, fixed_shapes=fixed_shapes, device=self.device
        )
        self.preprocess = Preprocessor(self.spec.input, self.device, mode=resize)
        self._companions: list[Companion] = []
        try:
            for role, relative in self.spec.companions.items():
                companion = Companion.open(
                    self.model_path, role, relative, backend=backend, device=self.device, resize=resize,
                    options=backend_options,
                )  # fmt: skip
                self._companions.append(companion)
            roles = [*self.spec.outputs, *(r for c in self._companions for r in c.roles)]
            self.family.check_roles(roles, self.model_path.name)
        except BaseException:
            self.close()
            raise
        self._categories = CategoryIds(self.label_set, self.device, fixed_shapes=fixed_shapes)
        self.timing = timing
        self.times = StageTimes()
        self._times_lock = threading.Lock()
        self.graphs: FrameGraphs[list[DeviceFrame]] | None = None
        if cuda_graph:
            refusal = self._graph_refusal(self.params)
            if refusal is not None:
                self.close()
                raise ConfigError(f"cuda_graph: {refusal}")
            self.graphs = FrameGraphs()

    def _graph_refusal(self, params: Any) -> str | None:
        """Why the pipeline with ``params`` cannot run as a CUDA graph (None: it can)."""
        top_k = getattr(params, "top_k", None)
        return graph_refusal(
            device=self.device,
            capturable=self.backend.capturable,
            fixed_shapes=self.fusion.fixed_shapes,
            companions=len(self._companions),
            center_slots=(
                center_slots(top_k, getattr(self.fusion, "max_centers", 0))
                if self.fusion.fixed_shapes
                else None
            ),
            label_divisor=params.label_divisor,
        )

    def set_params(self, params: Any) -> None:
        """Use the family's validated thresholds ``params`` from the next batch on.

        Raises:
            ConfigError: they do not fit the pipeline's CUDA graph (e.g. more center slots than the
                label divisor allows); the thresholds in force stay.
        """
        if self.graphs is not None:
            refusal = self._graph_refusal(params)
            if refusal is not None:
                raise ConfigError(f"refused with cuda_graph: {refusal}")
            if params != self.params:  # the old thresholds' graphs would only hold memory
                self.graphs.clear()
        self.params = params

    def fusion_params(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The family's validated thresholds: the spec's defaults overridden by ``overrides`` (see
        :meth:`FamilyFusion.params`). Raises :class:`ConfigError` naming a refused value."""
        return self.family.params(self.spec.fusion, overrides)

    def score_threshold(self) -> float:
        """The confidence threshold in force (``vision_msgs/LabelInfo.threshold``)."""
        return self.family.score_threshold(self.params)

    @contextmanager
    def _stage(self, name: str, local: StageTimes) -> Iterator[None]:
        """Time a stage (when timing) into ``local`` and the pipeline's totals; label its ops."""
        with stage_label(f"panoptic::{name}"):
            if not self.timing:
                yield
                return
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            start = time.perf_counter()
            yield
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start
            local.add(name, seconds)
            with self._times_lock:  # the network and the fusion of two batches may overlap
                self.times.add(name, seconds)

    def reset_times(self) -> None:
        """Start :attr:`times` afresh (another thread may be timing a stage meanwhile)."""
        with self._times_lock:
            self.times = StageTimes()

    def __call__(self, frames: Sequence[np.ndarray], *, order: Orders = "rgb") -> list[FrameOutput]:
        """Process frames (``H x W x 3`` uint8 of any size in ``order``, or one order each) as a batch."""
        outputs: list[FrameOutput] = []
        for batch in self.network(frames, order=order):
            outputs.extend(self.fuse(batch))
        return outputs

    def network(self, frames: Sequence[np.ndarray], *, order: Orders = "rgb") -> list[NetworkBatch]:
        """The first half of :meth:`__call__`: upload, preprocessing and the network (and companions), in
        batches of at most the model's ``max_batch`` frames; another thread may :meth:`fuse` meanwhile."""
        n = self.spec.input.max_batch
        orders = Preprocessor.orders(order, len(frames))
        return [self._network(frames[k : k + n], orders[k : k + n]) for k in range(0, len(frames), n)]

    def _network(self, frames: Sequence[np.ndarray], order: Orders) -> NetworkBatch:
        times = StageTimes()
        with self._stage("preprocess", times):
            images = [self.preprocess.upload(frame) for frame in frames]  # the one upload per frame
            fitted, transforms = self.preprocess.fit(images, order=order)
        if self.graphs is not None and self.graphs.failed is None:
            params = self.params
            geometry = [pixel_frame(t, self.model_size, self.device) for t in transforms]
            with self._stage("inference", times):  # the network, the fusion and the maps: one replay

                def body(x: torch.Tensor) -> list[DeviceFrame]:
                    return self._device_frames(x, geometry, params)

                fused = self.graphs.run((tuple(transforms), params), body, fitted)
            return NetworkBatch(images, fitted, transforms, {}, times, fused)
        with self._stage("preprocess", times):
            batch = self.preprocess.normalize(fitted)
        with self._stage("inference", times):
            out = self.backend.infer({self.spec.input.name: batch})
            roles = {role: out[name] for role, name in self.spec.outputs.items()}
            for companion in self._companions:
                roles.update(companion.run(images, order, transforms, self.model_size))
        return NetworkBatch(images, fitted, transforms, roles, times)

    def fuse(self, batch: NetworkBatch) -> list[FrameOutput]:
        """The second half of :meth:`__call__`: each frame's fusion and label maps; adds the batch's
        fusion and postprocess seconds to ``batch.times``."""
        results = []
        for i, (image, transform) in enumerate(zip(batch.images, batch.transforms, strict=True)):
            frame = pixel_frame(transform, self.model_size, self.device)
            if batch.fused is not None:
                device_frame = batch.fused[i]
            else:
                with self._stage("fusion", batch.times):
                    fused = self.fusion.fuse(batch.roles, i, self.params, frame)
                with self._stage("postprocess", batch.times):
                    device_frame = self._to_categories(fused, self.params.label_divisor)
            panoptic, semantic, instance, table, dropped = device_frame
            fitted = batch.fitted[i]
            results.append(
                FrameOutput(panoptic, semantic, instance, table, transform, image, frame, fitted, dropped)
            )
        with self._times_lock:
            self.times.frames += len(batch.images)
        return results

    def _device_frames(
        self, fitted: torch.Tensor, frames: Sequence[PixelFrame], params: Any
    ) -> list[DeviceFrame]:
        """Normalization, the network, the fusion and the category maps of a fitted batch: the body of
        a whole-frame CUDA graph (no companions, no device sync)."""
        out = self.backend.infer({self.spec.input.name: self.preprocess.normalize(fitted)})
        roles = {role: out[name] for role, name in self.spec.outputs.items()}
        return [
            self._to_categories(self.fusion.fuse(roles, i, params, frame), params.label_divisor)
            for i, frame in enumerate(frames)
        ]

    def _to_categories(self, fused: FusedFrame, div: int) -> DeviceFrame:
        """Class indices -> category ids, at the model's resolution (:mod:`~.categories`)."""
        panoptic, semantic = self._categories.maps(fused.panoptic, div)
        table = self._categories.table(fused, div)
        return DeviceFrame(panoptic, semantic, fused.instance, table, fused.dropped)

    def close(self) -> None:
        if getattr(self, "graphs", None) is not None:
            self.graphs.clear()  # they replay against the backend's weights
        for companion in getattr(self, "_companions", []):
            companion.backend.close()
        if hasattr(self, "backend"):
            self.backend.close()

    def __enter__(self) -> PanopticPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
