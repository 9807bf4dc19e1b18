"""A whole-process workload for before/after timing of the frame engine (``farm-bench``).

``python benchmarks/engine_frames.py 1920x1080``: 30 frames of a synthetic sequence resized to the
given size through :class:`~panoptic_ros.runtime.FrameEngine` (shipped model, ONNX Runtime on the CPU,
tracking on, overlay requested). Run with ``PYTHONPATH`` pointing at another checkout (a ``git
worktree`` of an older commit) to time that tree's engine on the same work.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import FrameEngine, InputFrame


def main(argv: list[str]) -> int:
    width, height = (int(v) for v in (argv[0] if argv else "1920x1080").split("x"))
    frames = [
        np.ascontiguousarray(cv2.resize(s.image, (width, height)))
        for s in generate(1, seed=5, sequence_length=30)
    ]
    engine = FrameEngine.open(default_model(), backend="onnxruntime", device="cpu")
    for k, image in enumerate(frames):
        engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])
    print(", ".join(f"{stage} {ms:.1f} ms" for stage, ms in engine.stage_times().items()))
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
