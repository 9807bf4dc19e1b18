"""Benchmark of mask-classification fusion against transformers' ``post_process_panoptic_segmentation``.

Builds realistic Mask2Former-like outputs (seeded): 100 queries over 133 classes (COCO panoptic: 80
things, 53 stuff), about 40 confident queries painting a scene of stuff regions and thing blobs, a
few duplicate queries (which the overlap filter must drop), the rest "no object"; mask logits at
128 x 256 (a quarter of a 512 x 1024 input). Both run on the same logits in the same process:

* transformers (Mask2Former's image processor, ``label_ids_to_fuse`` = the stuff classes,
  ``target_sizes`` = the output size), and
* :func:`~panoptic_ros.fusion.mask_classification.fuse_mask_classification` in ``transformers``
  mode (the complete fusion: panoptic map, segment statistics and the transformers-style ids),
  checked to give the identical segmentation and segment list,

plus our ``mask2former`` mode for reference. Prints a markdown table; CPU ratios, and absolute times
on CUDA where available (transformers' post-processing runs there too).

    python -m benchmarks.bench_mask_fusion            # 1024 x 2048 output
    python -m benchmarks.bench_mask_fusion --quick    # 256 x 512
"""

from __future__ import annotations

import argparse
import logging
import types
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from benchmarks.common import benchmark_devices, cpu_model, device_name, median_ms
from panoptic_ros.fusion.mask_classification import (
    MaskClassificationParams,
    fuse_mask_classification,
    transformers_result,
)


class MaskOutputs(NamedTuple):
    """One image's mask-classification outputs: ``[Q, K + 1]`` class and ``[Q, h, w]`` mask logits."""

    class_logits: torch.Tensor
    mask_logits: torch.Tensor
    thing_classes: tuple[int, ...]


def synthetic_mask_outputs(
    *,
    num_queries: int = 100,
    num_classes: int = 133,
    num_things: int = 80,
    height: int = 128,
    width: int = 256,
    segments: int = 40,
    duplicates: int = 5,
    seed: int = 0,
) -> MaskOutputs:
    """Seeded Mask2Former-like logits of a scene with ``segments`` regions (see the module docstring).

    Each confident query's mask logit is about +6 inside its region and -6 outside, with soft edges
    and noise; ``duplicates`` more queries repeat a region shifted by a few pixels at a lower score.
    """
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 2, width)[None, :].expand(height, width)
    # stuff: a Voronoi partition of the image; things: ellipses painted over it
    num_stuff_regions = segments // 2
    seeds = torch.rand(num_stuff_regions, 2, generator=gen) * torch.tensor([1.0, 2.0])
    distance = (ys[None] - seeds[:, 0, None, None]) ** 2 + (xs[None] - seeds[:, 1, None, None]) ** 2
    region = distance.argmin(dim=0)
    regions = [region == k for k in range(num_stuff_regions)]
    for _ in range(segments - num_stuff_regions):
        cy, cx = float(torch.rand(1, generator=gen)), float(torch.rand(1, generator=gen) * 2)
        ry, rx = (
            0.03 + 0.12 * float(torch.rand(1, generator=gen)),
            0.03 + 0.2 * float(torch.rand(1, generator=gen)),
        )
        blob = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
        regions = [r & ~blob for r in regions]
        regions.append(blob)
    class_logits = torch.randn(num_queries, num_classes + 1, generator=gen)
    class_logits[:, num_classes] += 6.0  # "no object" wins unless a query is made confident
    masks = torch.randn(num_queries, max(height // 8, 1), max(width // 8, 1), generator=gen) * 4 - 6
    masks = F.interpolate(masks[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    order = torch.randperm(num_queries, generator=gen).tolist()
    for k, mask in enumerate(regions + regions[-duplicates:] if duplicates else regions):
        query = order[k]
        is_duplicate = k >= len(regions)
        thing = k >= num_stuff_regions
        low, high = (0, num_things) if thing else (num_things, num_classes)
        label = int(torch.randint(low, high, (1,), generator=gen))
        class_logits[query, num_classes] -= 6.0
        # scores about 0.85..0.99 after the softmax over 134 columns; duplicates about 0.5..0.75
        spread = float(torch.rand(1, generator=gen))
        class_logits[query, label] += 5.5 + 0.8 * spread if is_duplicate else 8.5 + 2.5 * spread
        shaped = mask.float()
        if is_duplicate:
            shaped = torch.roll(shaped, shifts=(3, 5), dims=(0, 1))
        soft = F.avg_pool2d(shaped[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
        noise = torch.randn(height, width, generator=gen) * 0.5
        masks[query] = (soft - 0.5) * 12 + noise
    return MaskOutputs(class_logits, masks, tuple(range(num_things)))


def _transformers_processor() -> Any:
    from transformers import Mask2FormerImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return Mask2FormerImageProcessor()


def same_result(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Identical segmentation (dtype, shape, every pixel) and identical segment list."""
    a, b = ours["segmentation"], theirs["segmentation"]
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.cpu(), b.cpu())
        and ours["segments_info"] == theirs["segments_info"]
    )


class Row(NamedTuple):
    device: str
    transformers_ms: float
    ours_ms: float
    ours_mask2former_ms: float
    identical: bool
    segments: int
    selected: int


def bench_device(
    outputs: MaskOutputs, size: tuple[int, int], device: torch.device, *, repeats: int, reference_repeats: int
) -> Row:
    """Median times of transformers, our transformers-mode fusion and our mask2former mode."""
    processor = _transformers_processor()
    class_logits = outputs.class_logits.to(device)
    mask_logits = outputs.mask_logits.to(device)
    num_classes = class_logits.shape[1] - 1
    stuff = set(range(num_classes)) - set(outputs.thing_classes)
    hf_outputs = types.SimpleNamespace(
        class_queries_logits=class_logits[None], masks_queries_logits=mask_logits[None]
    )
    params = MaskClassificationParams.transformers("mask2former")

    def theirs() -> dict[str, Any]:
        return processor.post_process_panoptic_segmentation(
            hf_outputs, label_ids_to_fuse=stuff, target_sizes=[size]
        )[0]

    def ours() -> Any:
        return fuse_mask_classification(
            class_logits, mask_logits, outputs.thing_classes, params, output_size=size
        )

    def ours_mask2former() -> Any:
        return fuse_mask_classification(
            class_logits, mask_logits, outputs.thing_classes, MaskClassificationParams(), output_size=size
        )

    their_ms, their_result = median_ms(device, theirs, reference_repeats)
    our_ms, our_output = median_ms(device, ours, repeats)
    m2f_ms, _ = median_ms(device, ours_mask2former, repeats)
    identical = same_result(transformers_result(our_output, size), their_result)
    return Row(
        device=device_name(device),
        transformers_ms=their_ms,
        ours_ms=our_ms,
        ours_mask2former_ms=m2f_ms,
        identical=identical,
        segments=len(their_result["segments_info"]),
        selected=our_output.num_selected,
    )


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| device | transformers (ms) | ours, transformers mode (ms) | speed-up | identical | "
        "ours, mask2former mode (ms) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.device} | {row.transformers_ms:.1f} | {row.ours_ms:.1f} | "
            f"{row.transformers_ms / row.ours_ms:.1f}x | {'yes' if row.identical else 'NO'} | "
            f"{row.ours_mask2former_ms:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--height", type=int, default=1024, help="output height")
    parser.add_argument("--width", type=int, default=2048, help="output width")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--segments", type=int, default=40, help="confident queries painting the scene")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of ours (median)")
    parser.add_argument("--reference-repeats", type=int, default=3, help="repetitions of transformers")
    parser.add_argument("--quick", action="store_true", help="256 x 512 output")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width = 256, 512
    logging.getLogger("transformers").setLevel(logging.ERROR)
    outputs = synthetic_mask_outputs(
        num_queries=args.queries,
        num_classes=args.classes,
        num_things=min(80, args.classes),
        segments=args.segments,
        seed=args.seed,
    )
    devices = benchmark_devices(args.device)
    if not devices:
        return 2
    size = (args.height, args.width)
    rows = [
        bench_device(outputs, size, device, repeats=args.repeats, reference_repeats=args.reference_repeats)
        for device in devices
    ]
    first = rows[0]
    print(f"### mask-classification fusion vs transformers, {args.height} x {args.width}")
    print()
    print(f"- torch {torch.__version__}; CPU: {cpu_model()}; transformers {_transformers_version()}")
    print(
        f"- {args.queries} queries, {args.classes} classes, mask logits "
        f"{tuple(outputs.mask_logits.shape[1:])}; {first.selected} queries above the score threshold, "
        f"{first.segments} segments"
    )
    print(f"- median of {args.repeats} runs (ours), {args.reference_repeats} (transformers)")
    print()
    print(markdown_table(rows))
    return 0 if all(r.identical for r in rows) else 1


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


if __name__ == "__main__":
    raise SystemExit(main())
