"""Warm-up frames: blank camera frames through the whole frame path before the real ones.

What a frame path makes once is made by its first frames: lazily loaded code and compiled loops, the
overlay's palette, a backend's kernels per batch size, the pixel frame of a camera geometry, and the
state of every thread that runs it (memory arenas, a library's per-thread pools). The warm-up frames
take every part of the path the real ones may take:

- at the model's input size (no resizing) and at a 4:3 frame a quarter larger than the model's width
  (the shrinking resize, stretched or letterboxed as the engine's ``resize`` says, and label maps
  expanded to another size; not with CUDA
  graphs, which are captured per camera size);
- with a depth image and a camera model (3D positions and the point cloud), every output asked for;
- RGB and BGR in turn, batched alone and as the cameras will be.

:meth:`FrameEngine.warm_up <panoptic_ros.runtime.engine.FrameEngine.warm_up>` runs them on the calling
thread; the node's :class:`~panoptic_ros.runtime.worker.Worker` also runs them on the threads that will
serve (network on one, fusion and outputs on the other), so the first camera frames are not the ones
that pay for a thread's first work. Each size has cameras of its own (no camera changes geometry) and
their streams are dropped afterwards (:meth:`FrameEngine.forget_warm_up
<panoptic_ros.runtime.engine.FrameEngine.forget_warm_up>`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.runtime.pipeline import PanopticPipeline
from panoptic_ros.runtime.records import InputFrame

#: Camera names of the warm-up frames start with this (no topic does: a topic cannot hold a NUL).
PREFIX = "\0warm-up"
#: Depth of every warm-up pixel (meters): within any sensor's range.
DEPTH_M = 5.0
#: Stamps of consecutive warm-up batches this far apart (a 10 Hz camera's period).
STAMP_STEP_NS = 100_000_000


def warm_up_sizes(model_height: int, model_width: int) -> list[tuple[int, int]]:
    """``(height, width)`` of the warm-up frames: the model's input size, then a 4:3 frame a quarter
    wider than the model (a shrinking resize, and letterbox padding where the engine letterboxes and the
    model is not 4:3 too)."""
    width = round(1.25 * model_width)
    return [(model_height, model_width), (round(0.75 * width), width)]


def warm_up_batches(pipeline: PanopticPipeline, frames: int, cameras: int = 1) -> Iterator[list[InputFrame]]:
    """The warm-up batches of a pipeline's frame engine (see the module docstring): ``frames`` rounds,
    each with a batch of one frame and one of ``cameras`` frames (at most the model's batch) at every
    size of :func:`warm_up_sizes`. Every output is asked for; stamps increase per camera."""
    spec = pipeline.spec.input
    count = max(1, min(cameras, spec.max_batch))
    sizes = warm_up_sizes(spec.height, spec.width)
    if pipeline.graphs is not None:
        sizes = sizes[:1]  # a CUDA graph is captured per camera size: none for a size no camera has
    blanks = []
    for height, width in sizes:
        model = CameraModel(0.9 * width, 0.9 * width, width / 2, height / 2, width, height)
        image = np.zeros((height, width, 3), dtype=np.uint8)
        blanks.append((image, np.full((height, width), DEPTH_M, dtype=np.float32), model))
    step = 0  # one stamp per batch, a camera frame period apart: they increase for every camera
    for index in range(max(0, frames)):
        for which, (image, depth, model) in enumerate(blanks):
            for batch in sorted({1, count}):
                step += 1
                yield [
                    InputFrame(
                        f"{PREFIX} {which}.{k}",
                        image,
                        step * STAMP_STEP_NS,
                        depth=depth,
                        camera_model=model,
                        overlay=True,
                        points=True,
                        semantic_image=True,
                        instance_image=True,
                        positions=True,
                        order="bgr" if index % 2 else "rgb",
                    )
                    for k in range(batch)
                ]


def is_warm_up(camera: str) -> bool:
    """Whether a camera name is a warm-up frame's."""
    return camera.startswith(PREFIX)
