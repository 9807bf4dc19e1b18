"""``panoptic-ros quantize``: make a model's INT8 companion for ONNX Runtime on the CPU.

Calibration frames come from a folder of images or a rosbag2 (read as for TensorRT's INT8, see
:mod:`panoptic_ros.backends.calibration`), or, for models trained on panoptic_ros's synthetic world
such as the shipped one, from that world (``synthetic``: training-seed images, never the held-out
seeds). The companion is written next to the model, where the ONNX Runtime backend looks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from panoptic_ros.backends.calibration import CalibrationData, iter_frames
from panoptic_ros.backends.int8_onnx import DEFAULT_CALIBRATION_FRAMES, QuantizeResult, quantize_int8

#: The ``--calib`` value that selects frames of the synthetic world.
SYNTHETIC = "synthetic"


def synthetic_frames(count: int) -> Iterator[np.ndarray]:
    """``count`` images of the synthetic world at its native size, from the training seed."""
    from panoptic_ros.data.synthetic import generate
    from panoptic_ros.models.train import TRAIN_SEED

    for sample in generate(count, seed=TRAIN_SEED):
        yield sample.image


def quantize_command(
    model: Path,
    calib: str,
    out: Path | None = None,
    *,
    max_images: int = DEFAULT_CALIBRATION_FRAMES,
    stride: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> QuantizeResult:
    """``panoptic-ros quantize [MODEL] --calib IMAGES|BAG|synthetic [--out F] [--max-images N]``."""

    def say(message: str) -> None:
        echo(f"[quantize] {message}")

    if calib == SYNTHETIC:
        frames: Iterator[np.ndarray] = synthetic_frames(max_images)
        source = f"{max_images} images of the synthetic world (training seed)"
    else:
        data = CalibrationData(Path(calib), max_images=max_images, stride=stride)
        frames = iter_frames(data)
        source = f"{calib} (at most {max_images} frames, every {stride}.)"
    bar = tqdm(frames, total=max_images, desc="calibration", unit="frame", disable=not progress)
    return quantize_int8(Path(model), bar, calibration=source, out=out, echo=say)
