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
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from panoptic_ros.backends.base import Backend
from panoptic_ros.backends.registry import create_backend, model_spec
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.preprocess import Preprocessor, ResizeMode, Transform, pixel_frame
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.families import FamilyFusion, FusedFrame, family_fusion
from panoptic_ros.models.spec import ModelSpec

#: Largest lookup table (entries) from fused ids to category ids; larger label spaces use arithmetic.
_MAX_CATEGORY_TABLE = 1 << 22


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
    in the model's channel order.
    """

    panoptic: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    segments: SegmentTable
    transform: Transform
    image: torch.Tensor
    frame: PixelFrame
    model_image: torch.Tensor

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


class NetworkBatch(NamedTuple):
    """Frames through the network, not fused yet (:meth:`PanopticPipeline.network`): the uploaded
    frames, the batch fitted to the model input before normalization (``N x 3 x h x w``), where each
    frame went, the network outputs by role, and the seconds per stage so far."""

    images: list[torch.Tensor]
    fitted: torch.Tensor
    transforms: list[Transform]
    roles: dict[str, torch.Tensor]
    times: StageTimes


@dataclass
class _Companion:
    """A second network on the same frames: its backend, preprocessing and the roles it provides."""

    spec: ModelSpec
    backend: Backend
    preprocess: Preprocessor
    roles: dict[str, str]  # role -> its output name


def reframe(
    tensor: torch.Tensor,
    source: Transform,
    source_size: tuple[int, int],
    target: Transform,
    target_size: tuple[int, int],
) -> torch.Tensor:
    """Bring a frame's output (``[C, h, w]`` float or ``[h, w]`` integer), computed on an input of
    ``source_size`` where the frame sat at ``source``, into the frame of an input of ``target_size``
    where it sits at ``target``, at that input's resolution (bilinear for floats, nearest for
    integers; outside the frame: zeros).
    """
    integer = not tensor.is_floating_point()
    image = tensor.float()[None] if tensor.dim() == 3 else tensor.float()[None, None]
    scale_y = image.shape[-2] / source_size[0]
    scale_x = image.shape[-1] / source_size[1]
    top, left = round(source.top * scale_y), round(source.left * scale_x)
    height = max(round(source.height * scale_y), 1)
    width = max(round(source.width * scale_x), 1)
    content = image[..., top : top + height, left : left + width]
    mode = "nearest" if integer else "bilinear"
    extra = {} if integer else {"align_corners": False}
    content = F.interpolate(content, size=(target.height, target.width), mode=mode, **extra)
    out = content.new_zeros((*content.shape[:-2], *target_size))
    out[..., target.top : target.top + target.height, target.left : target.left + target.width] = content
    out = out[0] if tensor.dim() == 3 else out[0, 0]
    return out.to(tensor.dtype) if integer else out


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
        self.fusion: FamilyFusion = self.family(self.label_set, self.model_size)
        self.preprocess = Preprocessor(self.spec.input, self.device, mode=resize)
        self._companions: list[_Companion] = []
        try:
            for role, relative in self.spec.companions.items():
                self._companions.append(
                    self._companion(role, relative, backend=backend, resize=resize, options=backend_options)
                )
            roles = [*self.spec.outputs, *(r for c in self._companions for r in c.roles)]
            self.family.check_roles(roles, self.model_path.name)
        except BaseException:
            self.close()
            raise
        self._class_to_id = torch.as_tensor(self.label_set.class_to_id, device=self.device)
        self._void_semantic = self.label_set.void_semantic
        self._tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.timing = timing
        self.times = StageTimes()
        self._times_lock = threading.Lock()

    def fusion_params(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The family's validated thresholds: the spec's defaults overridden by ``overrides`` (see
        :meth:`FamilyFusion.params`). Raises :class:`ConfigError` naming a refused value."""
        return self.family.params(self.spec.fusion, overrides)

    def score_threshold(self) -> float:
        """The confidence threshold in force (``vision_msgs/LabelInfo.threshold``)."""
        return self.family.score_threshold(self.params)

    def _companion(
        self, role: str, relative: str, *, backend: str, resize: ResizeMode, options: Mapping[str, Any] | None
    ) -> _Companion:
        path = self.model_path.parent / relative
        spec = model_spec(path)
        if role not in spec.outputs:
            raise ConfigError(
                f"{self.model_path.name}: companion {relative} for role {role!r} has no output for that role "
                f"in its spec (it maps {sorted(spec.outputs)})"
            )
        companion_backend = create_backend(backend, path, device=str(self.device), spec=spec, options=options)
        return _Companion(
            spec=spec,
            backend=companion_backend,
            preprocess=Preprocessor(spec.input, self.device, mode=resize),
            roles={role: spec.outputs[role]},
        )

    @contextmanager
    def _stage(self, name: str, local: StageTimes) -> Iterator[None]:
        """Time a stage (when timing) into ``local`` (one call's) and the pipeline's totals, and label
        its ops ``panoptic::<stage>`` for the PyTorch profiler."""
        with torch.profiler.record_function(f"panoptic::{name}"):
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

    def __call__(
        self, frames: Sequence[np.ndarray], *, order: Literal["rgb", "bgr"] = "rgb"
    ) -> list[FrameOutput]:
        """Process frames (``H x W x 3`` uint8 in ``order``, any sizes) as one batch."""
        outputs: list[FrameOutput] = []
        for batch in self.network(frames, order=order):
            outputs.extend(self.fuse(batch))
        return outputs

    def network(
        self, frames: Sequence[np.ndarray], *, order: Literal["rgb", "bgr"] = "rgb"
    ) -> list[NetworkBatch]:
        """The first half of :meth:`__call__`: upload, preprocessing and the network (with its
        companions), in batches of at most the model's ``max_batch`` frames. No fusion: another thread
        may fuse earlier batches meanwhile (:meth:`fuse`)."""
        size = self.spec.input.max_batch
        return [self._network(frames[start : start + size], order) for start in range(0, len(frames), size)]

    def _network(self, frames: Sequence[np.ndarray], order: Literal["rgb", "bgr"]) -> NetworkBatch:
        times = StageTimes()
        with self._stage("preprocess", times):
            images = [self.preprocess.upload(frame) for frame in frames]  # the one upload per frame
            fitted, transforms = self.preprocess.fit(images, order=order)
            batch = self.preprocess.normalize(fitted)
        with self._stage("inference", times):
            out = self.backend.infer({self.spec.input.name: batch})
            roles = {role: out[name] for role, name in self.spec.outputs.items()}
            for companion in self._companions:
                roles.update(self._run_companion(companion, images, order, transforms))
        return NetworkBatch(images, fitted, transforms, roles, times)

    def fuse(self, batch: NetworkBatch) -> list[FrameOutput]:
        """The second half of :meth:`__call__`: each frame's fusion and label maps; adds the batch's
        fusion and postprocess seconds to ``batch.times``."""
        results = []
        for i, (image, transform) in enumerate(zip(batch.images, batch.transforms, strict=True)):
            frame = pixel_frame(transform, self.model_size, self.device)
            with self._stage("fusion", batch.times):
                fused = self.fusion.fuse(batch.roles, i, self.params, frame)
            with self._stage("postprocess", batch.times):
                results.append(self._to_categories(fused, transform, frame, image, batch.fitted[i]))
        with self._times_lock:
            self.times.frames += len(batch.images)
        return results

    def _run_companion(
        self,
        companion: _Companion,
        images: Sequence[torch.Tensor],
        order: Literal["rgb", "bgr"],
        transforms: Sequence[Transform],
    ) -> dict[str, torch.Tensor]:
        """The companion's role outputs for the batch, in the main model's input frame."""
        batch, own = companion.preprocess.batch(images, order=order)
        out = companion.backend.infer({companion.spec.input.name: batch})
        source_size = (companion.spec.input.height, companion.spec.input.width)
        target_size = (self.spec.input.height, self.spec.input.width)
        result = {}
        for role, name in companion.roles.items():
            tensor = out[name]
            if own == list(transforms) and source_size == target_size:
                result[role] = tensor
                continue
            result[role] = torch.stack(
                [
                    reframe(tensor[i], own[i], source_size, transforms[i], target_size)
                    for i in range(len(images))
                ]
            )
        return result

    def _to_categories(
        self,
        fused: FusedFrame,
        transform: Transform,
        frame: PixelFrame,
        image: torch.Tensor,
        model_image: torch.Tensor,
    ) -> FrameOutput:
        """Class indices -> category ids, at the model's resolution; the segment table takes fusion's
        rows and camera-frame geometry as they are."""
        div = self.params.label_divisor
        panoptic, semantic = self._category_maps(fused.panoptic, div)
        instance = fused.instance
        seg = fused.segments
        seg_categories = self._class_to_id[seg.classes]
        table = SegmentTable(
            ids=seg_categories * div + seg.ids % div,
            category_ids=seg_categories,
            is_thing=seg.is_thing,
            areas=seg.areas,
            bboxes=seg.bboxes,
            centroids=seg.centroids.float(),
            scores=seg.scores.float(),
        )
        return FrameOutput(
            panoptic=panoptic,
            semantic=semantic,
            instance=instance,
            segments=table,
            transform=transform,
            image=image,
            frame=frame,
            model_image=model_image,
        )

    def _category_maps(self, fused: torch.Tensor, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fused map (``class * divisor + n``, -1 void) as panoptic ids with the category
        (``category_id * divisor + n``, -1 void) and as category ids (the label set's void value for
        void). By two lookup tables indexed by the id + 1, made once per divisor (one gather per map);
        by arithmetic where the tables would be large."""
        classes = self._class_to_id.numel()
        if classes * divisor > _MAX_CATEGORY_TABLE:
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
        index = fused + 1  # void (-1) -> row 0
        return tables[0][index], tables[1][index]

    def close(self) -> None:
        for companion in getattr(self, "_companions", []):
            companion.backend.close()
        if hasattr(self, "backend"):
            self.backend.close()

    def __enter__(self) -> PanopticPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
