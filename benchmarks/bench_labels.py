"""Bytes per frame of the label outputs: raw ``Image`` against lossless PNG ``CompressedImage``, and
of the panoptic point cloud.

``python -m benchmarks.run labels`` (``-- --frames N``): the shipped model on ONNX Runtime (CPU), a
held-out synthetic sequence (seed 5) resized to 640x480 and 1920x1080, tracking on, depth a tilted
plane. Medians over the frames of the ``data`` sizes of ``panoptic/semantic``, ``instance_ids``, their
``/compressed`` PNG variants, and ``panoptic/points`` at ``points_stride`` 1 and 4; PNG encoding
time as a ratio to the network's time in the same run. Counts (bytes), ratios (time).
"""

from __future__ import annotations

import argparse
import statistics

import cv2
import numpy as np

from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.data.synthetic import generate
from panoptic_ros.resources import default_model
from panoptic_ros.runtime import EngineParams, FrameEngine, InputFrame
from panoptic_ros.runtime.outputs import OutputContext, instance_ids, instance_ids_png, semantic, semantic_png

SIZES = {"640x480": (480, 640), "1920x1080": (1080, 1920)}


def _kb(med: dict[str, float], key: str) -> str:
    return f"{med[key] / 1000:.0f} KB"


def _smaller(med: dict[str, float], key: str, raw: str) -> str:
    return f"{med[key] / 1000:.1f} KB ({med[raw] / med[key]:.0f}x smaller)"


def main(argv: list[str] | None = None) -> int:
    import time

    parser = argparse.ArgumentParser(prog="bench_labels")
    parser.add_argument("--frames", type=int, default=10)
    args, _ = parser.parse_known_args(argv)
    engine = FrameEngine.open(default_model(), backend="onnxruntime", device="cpu")
    context = OutputContext(engine.label_set, engine.label_divisor)
    print("| frame | semantic raw | semantic PNG | instance_ids raw | instance_ids PNG | PNG encode (x net) "
          "| points (stride 1) | points (stride 4) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, (h, w) in SIZES.items():
        seq = [
            np.ascontiguousarray(cv2.resize(s.image, (w, h)))
            for s in generate(1, seed=5, sequence_length=args.frames)
        ]
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
        depth = 3.0 + 0.002 * cols + 0.004 * rows
        camera = CameraModel.from_k([0.8 * w, 0, w / 2, 0, 0.8 * w, h / 2, 0, 0, 1], w, h)
        sizes: dict[str, list[float]] = {}
        engine.reset()
        for k, image in enumerate(seq):
            for stride in (1, 4):
                engine.apply(EngineParams(points_stride=stride))
                frame = InputFrame("cam", image, k * 10**8, depth=depth, camera_model=camera, points=True)
                (result,) = engine.process([frame])
                sizes.setdefault(f"points{stride}", []).append(result.cloud.nbytes)
            start = time.perf_counter()
            png = (semantic_png(result, context), instance_ids_png(result, context))
            sizes.setdefault("encode", []).append((time.perf_counter() - start) / result.times["inference"])
            raw = (semantic(result, context), instance_ids(result, context))
            for key, message in zip(("sem_raw", "ids_raw", "sem_png", "ids_png"), (*raw, *png), strict=True):
                sizes.setdefault(key, []).append(message.fields["data"].size)
        engine.apply(EngineParams())
        med = {key: statistics.median(values) for key, values in sizes.items()}

        cells = [
            _kb(med, "sem_raw"),
            _smaller(med, "sem_png", "sem_raw"),
            _kb(med, "ids_raw"),
            _smaller(med, "ids_png", "ids_raw"),
            f"{med['encode']:.2f}",
            _kb(med, "points1"),
            _kb(med, "points4"),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
