"""The per-frame pipeline without ROS: frames in, panoptic maps and segment tables out.

``frames -> preprocess (device) -> backend.infer -> fusion (device) -> category ids -> source size``.
Everything stays on the inference device; callers download only what they publish or write. Each
stage is timed (:class:`StageTimes`), synchronizing the device only when timing is asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from panoptic_ros.backends.registry import create_backend, model_spec
from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.preprocess import Preprocessor, ResizeMode, Transform, restore
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import CenterOffsetParams, fuse_center_offset
from panoptic_ros.models.spec import ModelSpec


class SegmentTable(NamedTuple):
    """One row per segment of a frame (all on the device).

    ``ids`` [S] int64 panoptic id (``category_id * label_divisor + n``; ``n = 0`` for stuff),
    ``category_ids`` [S], ``is_thing`` [S] bool, ``areas`` [S], ``bboxes`` [S, 4] (x, y, width,
    height), ``centroids`` [S, 2] (x, y), ``scores`` [S] float32.
    """

    ids: torch.Tensor
    category_ids: torch.Tensor
    is_thing: torch.Tensor
    areas: torch.Tensor
    bboxes: torch.Tensor
    centroids: torch.Tensor
    scores: torch.Tensor


class FrameOutput(NamedTuple):
    """A frame's panoptic result at the source frame's resolution, on the device.

    ``panoptic`` [H, W] int64 ``category_id * label_divisor + n`` (-1 void); ``semantic`` [H, W]
    int64 category id of each pixel's segment (the label set's void value where void);
    ``instance`` [H, W] int32 thing number ``n`` (0 for stuff and void); ``segments`` its table.
    """

    panoptic: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    segments: SegmentTable
    transform: Transform


@dataclass
class StageTimes:
    """Accumulated wall time per stage (seconds) and the number of frames."""

    seconds: dict[str, float] = field(default_factory=dict)
    frames: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def per_frame_ms(self) -> dict[str, float]:
        return {k: 1000 * v / max(self.frames, 1) for k, v in self.seconds.items()}


def segment_table(
    panoptic: torch.Tensor,
    label_divisor: int,
    is_thing_lut: torch.Tensor,
    *,
    score_ids: torch.Tensor | None = None,
    score_values: torch.Tensor | None = None,
) -> SegmentTable:
    """Area, box, centroid of every segment of an ``H x W`` panoptic map, by scatter on its device.

    Scores come from ``score_ids``/``score_values`` (sorted panoptic ids and their scores) when given,
    else 1.0.
    """
    device = panoptic.device
    h, w = panoptic.shape
    flat = panoptic.reshape(-1)
    pixels = torch.nonzero(flat >= 0).squeeze(1)
    ids, inverse = torch.unique(flat[pixels], return_inverse=True)
    n = ids.numel()
    ys = torch.div(pixels, w, rounding_mode="floor")
    xs = pixels % w
    areas = torch.bincount(inverse, minlength=n)
    cx = torch.bincount(inverse, weights=xs.float(), minlength=n) / areas.clamp(min=1)
    cy = torch.bincount(inverse, weights=ys.float(), minlength=n) / areas.clamp(min=1)
    big = torch.full((n,), max(h, w), device=device, dtype=torch.int64)
    x0 = big.scatter_reduce(0, inverse, xs, "amin")
    y0 = big.scatter_reduce(0, inverse, ys, "amin")
    x1 = torch.full_like(big, -1).scatter_reduce(0, inverse, xs, "amax")
    y1 = torch.full_like(big, -1).scatter_reduce(0, inverse, ys, "amax")
    categories = torch.div(ids, label_divisor, rounding_mode="floor")
    is_thing = is_thing_lut[categories.clamp(max=is_thing_lut.numel() - 1)] & (ids % label_divisor > 0)
    out_scores = torch.ones(n, device=device)
    if score_ids is not None and score_values is not None and score_ids.numel():
        pos = torch.searchsorted(score_ids, ids).clamp(max=score_ids.numel() - 1)
        found = score_ids[pos] == ids
        out_scores = torch.where(found, score_values[pos], out_scores)
    return SegmentTable(
        ids=ids,
        category_ids=categories,
        is_thing=is_thing,
        areas=areas,
        bboxes=torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dim=1),
        centroids=torch.stack([cx, cy], dim=1).float(),
        scores=out_scores.float(),
    )


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
        if self.spec.family != "center-offset":
            raise ConfigError(
                f"{self.model_path.name}: the {self.spec.family!r} family has no fusion in this version; "
                "center-offset models are supported"
            )
        self.backend = create_backend(
            backend, self.model_path, device=device, spec=self.spec, options=backend_options
        )
        self.device = self.backend.device
        self.label_set: LabelSet = self.spec.label_set
        self.params = CenterOffsetParams.from_spec({**self.spec.fusion, **(fusion or {})})
        self.preprocess = Preprocessor(self.spec.input, self.device, mode=resize)
        self._class_to_id = torch.as_tensor(self.label_set.class_to_id, device=self.device)
        self._thing_classes = tuple(i for i, c in enumerate(self.label_set.categories) if c.is_thing)
        self._is_thing_lut = torch.as_tensor(self.label_set.is_thing_lut, device=self.device)
        self._void_semantic = self.label_set.void_semantic
        self.timing = timing
        self.times = StageTimes()

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        if not self.timing:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times.add(name, time.perf_counter() - start)

    def __call__(
        self, frames: Sequence[np.ndarray], *, order: Literal["rgb", "bgr"] = "rgb"
    ) -> list[FrameOutput]:
        """Process frames (``H x W x 3`` uint8 in ``order``, any sizes) as one batch."""
        outputs: list[FrameOutput] = []
        max_batch = self.spec.input.max_batch
        for start in range(0, len(frames), max_batch):
            outputs.extend(self._batch(frames[start : start + max_batch], order))
        return outputs

    def _batch(self, frames: Sequence[np.ndarray], order: Literal["rgb", "bgr"]) -> list[FrameOutput]:
        with self._stage("preprocess"):
            batch, transforms = self.preprocess(frames, order=order)
        with self._stage("inference"):
            out = self.backend.infer({self.spec.input.name: batch})
        names = self.spec.outputs
        results = []
        for i, transform in enumerate(transforms):
            with self._stage("fusion"):
                fused = fuse_center_offset(
                    out[names["semantic"]][i],
                    out[names["center"]][i],
                    out[names["offset"]][i],
                    self._thing_classes,
                    self.params,
                    num_classes=len(self.label_set),
                )
            with self._stage("postprocess"):
                results.append(self._to_categories(fused, transform))
        self.times.frames += len(frames)
        return results

    def _to_categories(self, fused: Any, transform: Transform) -> FrameOutput:
        div = self.params.label_divisor
        void = fused.panoptic < 0
        classes = torch.div(fused.panoptic.clamp(min=0), div, rounding_mode="floor")
        panoptic = torch.where(void, -1, self._class_to_id[classes] * div + fused.panoptic.clamp(min=0) % div)
        panoptic = restore(panoptic, transform)
        seg = fused.segments
        seg_classes = torch.div(seg.ids.clamp(min=0), div, rounding_mode="floor")
        score_ids = self._class_to_id[seg_classes] * div + seg.ids % div
        order = torch.argsort(score_ids)
        table = segment_table(
            panoptic, div, self._is_thing_lut, score_ids=score_ids[order], score_values=seg.scores[order]
        )
        void = panoptic < 0
        semantic = torch.where(void, self._void_semantic, torch.div(panoptic, div, rounding_mode="floor"))
        instance = torch.where(void, 0, panoptic % div).to(torch.int32)
        return FrameOutput(
            panoptic=panoptic, semantic=semantic, instance=instance, segments=table, transform=transform
        )

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> PanopticPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
