"""The shipped model's quality and network cost: what `make model` is judged by.

``python -m benchmarks.run model`` (``-- --model M.onnx --quick``):

- **Network time** on ONNX Runtime (CPU, one frame at the model's input size, which is what every
  camera frame is resized to): the model against the first shipped architecture (stride-4 heads,
  width 32, random weights: a network's time does not depend on its weights), alternated in one run;
  the ratio is the goal's measure (at most 1.5x).
- **Quality on held-out seeds never trained on**: PQ / things PQ on 100 images of seed 1000 and STQ,
  AQ, SQ, VPQ on 8 sequences x 40 frames of seed 1000 with tracking, by the project's commands
  (``synth``, ``infer``, ``eval``), i.e. by the official definitions. ``--quick``: 30 images and 2
  sequences (a smoke run, not the figures to record).
- When the model has a current INT8 companion (``panoptic-ros quantize``), its network time against
  the float network's, and the quality rows measured with it (what ONNX Runtime runs on the CPU by
  default); ``--precision fp32`` measures the float network's quality instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from panoptic_ros.backends.int8_onnx import current_companion
from panoptic_ros.models.export import export_onnx
from panoptic_ros.models.train import TrainConfig, network, synthetic_model_spec
from panoptic_ros.resources import default_model


def _first_architecture(folder: Path) -> Path:
    """The v1 shipped network (stride-4 heads, width 32) with random weights, as ONNX."""
    cfg = replace(TrainConfig(), semantic_stride=4, width=32)
    return export_onnx(
        network(cfg).eval(),
        synthetic_model_spec(cfg, name="v1_architecture"),
        folder / "v1_architecture.onnx",
    )


def network_ratio(model: Path, reference: Path, repeats: int) -> float:
    """Median ONNX Runtime CPU time of one frame of ``model`` over ``reference``'s, alternated."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (model, reference)]
    inputs = []
    for session in sessions:
        meta = session.get_inputs()[0]
        _, _, h, w = meta.shape
        inputs.append({meta.name: np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)})
    times: list[list[float]] = [[], []]
    for k in range(repeats + 5):
        for i, (session, feed) in enumerate(zip(sessions, inputs, strict=True)):
            start = time.perf_counter()
            session.run(None, feed)
            if k >= 5:
                times[i].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(*times, strict=True)]
    return statistics.median(ratios)


def _cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "panoptic_ros.cli", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"panoptic-ros {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def quality(
    model: Path, work: Path, *, images: int, sequences: int, precision: str = "auto"
) -> dict[str, dict]:
    """Held-out PQ and STQ of ``model`` (seed 1000) by the project's commands: the JSON reports of
    ``eval`` (``pq``) and ``eval --video`` (``stq``). ``precision`` is ONNX Runtime's (``auto``: the
    model's INT8 companion when it has a current one)."""
    common = ["--model", str(model), "--backend", "onnxruntime", "--device", "cpu"]
    if precision != "auto":
        common += ["--backend-option", f"precision={precision}"]
    _cli("synth", "--out", str(work / "images"), "--count", str(images), "--seed", "1000")
    _cli("infer", "--input", str(work / "images"), "--out", str(work / "pred"), *common)
    _cli("eval", "--gt", str(work / "images"), "--pred", str(work / "pred"), "--json", str(work / "pq.json"))
    _cli(
        "synth",
        "--out",
        str(work / "seqs"),
        "--count",
        str(sequences),
        "--seed",
        "1000",
        "--sequence-length",
        "40",
    )
    _cli("infer", "--input", str(work / "seqs"), "--out", str(work / "seqpred"), "--track", *common)
    _cli(
        "eval",
        "--video",
        "--gt",
        str(work / "seqs"),
        "--pred",
        str(work / "seqpred"),
        "--json",
        str(work / "stq.json"),
    )
    pq = json.loads((work / "pq.json").read_text())
    stq = json.loads((work / "stq.json").read_text())
    return {"pq": pq, "stq": stq}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_model")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=60, help="timed network runs per model")
    parser.add_argument("--quick", action="store_true", help="30 images and 2 sequences (smoke run)")
    parser.add_argument("--no-quality", action="store_true", help="only the network time")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "int8"),
        default="auto",
        help="ONNX Runtime precision of the quality runs (auto: the INT8 companion when current)",
    )
    args = parser.parse_args(argv)
    model = args.model or default_model()
    companion = current_companion(model).path
    used = args.precision if args.precision != "auto" else ("int8" if companion else "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ratio = network_ratio(model, _first_architecture(work), args.repeats)
        print(f"model: {model}; quality measured with precision {used}\n")
        print("| measure | value |\n|---|---:|")
        print(f"| network time / first architecture's (ONNX Runtime CPU, one frame) | {ratio:.2f}x |")
        if companion is not None:
            int8 = network_ratio(companion, model, args.repeats)
            print(f"| INT8 companion's network time / the float network's (same run) | {int8:.2f}x |")
        if args.no_quality:
            return 0
        images, sequences = (30, 2) if args.quick else (100, 8)
        q = quality(model, work, images=images, sequences=sequences, precision=args.precision)
    pq, stq = q["pq"], q["stq"]
    print(_rows(pq, stq, images, sequences))
    return 0


def _rows(pq: dict, stq: dict, images: int, sequences: int) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"

    vpq = stq["vpq"]["vpq"] if stq.get("vpq") else {"All": None}
    lines = [
        f"| PQ ({images} held-out images, seed 1000) | {pct(pq['All']['pq'])} |",
        f"| things PQ / SQ / RQ | {pct(pq['Things']['pq'])} / {pct(pq['Things']['sq'])} / "
        f"{pct(pq['Things']['rq'])} |",
        f"| stuff PQ | {pct(pq['Stuff']['pq'])} |",
        f"| mIoU | {pct(pq['semantic']['miou'])} |",
        f"| STQ ({sequences} held-out sequences x 40 frames, reference definition) | {pct(stq['stq'])} |",
        f"| AQ / SQ | {pct(stq['aq'])} / {pct(stq['sq'])} |",
        f"| VPQ | {pct(vpq['All'])} |",
        f"| ID switches | {stq['id_switches']} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
