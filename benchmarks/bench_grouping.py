"""Center-offset grouping against the number of centers, the thing pixels fixed.

``python -m benchmarks.run grouping`` (``-- --height H --width W --repeats N --threads T``): one
1024 x 2048 frame (by default) whose thing mask covers half the pixels with random offsets (seeded),
grouped to 20 and to 200 random centers by each strategy of
:func:`panoptic_ros.fusion.center_offset.group_pixels` on the CPU (and CUDA when present, where
``kdtree`` does not run). The last column is the time at 200 centers as a ratio to 20: how the cost
grows with the number of centers. Every strategy's assignment is checked against ``per_center``'s.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from benchmarks.common import benchmark_devices, median_ms
from panoptic_ros.fusion.center_offset import group_pixels

COUNTS = (20, 200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_grouping")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch CPU threads (0: as set up)")
    args, _ = parser.parse_known_args(argv)
    devices = benchmark_devices(args.device)
    if not devices:
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # e.g. 1: the node's fusing thread with overlap_network
    g = torch.Generator().manual_seed(0)
    h, w = args.height, args.width
    thing = torch.rand(h, w, generator=g) < 0.5
    offsets = torch.randn(2, h, w, generator=g) * 20
    centers = {
        k: torch.stack([torch.randint(0, h, (k,), generator=g), torch.randint(0, w, (k,), generator=g)], 1)
        for k in COUNTS
    }
    threads = torch.get_num_threads()
    print(
        f"{h} x {w}, {int(thing.sum())} thing pixels, {threads} CPU threads; median of {args.repeats} runs\n"
    )
    print("| device | strategy | 20 centers (ms) | 200 centers (ms) | 200 / 20 |")
    print("|---|---|---|---|---|")
    status = 0
    for device in devices:
        mask, off = thing.to(device), offsets.to(device)
        strategies = (
            ("per_center", "chunked", "auto")
            if device.type == "cuda"
            else ("per_center", "chunked", "kdtree", "auto")
        )
        expected = {
            k: group_pixels(mask, off, c.to(device), strategy="per_center") for k, c in centers.items()
        }
        for strategy in strategies:
            ms = {}
            for k, c in centers.items():
                run = partial(group_pixels, mask, off, c.to(device), strategy=strategy)
                ms[k], got = median_ms(device, run, args.repeats)
                if not torch.equal(got, expected[k]):
                    print(f"{strategy} at {k} centers differs from per_center")
                    status = 1
            ratio = ms[200] / ms[20]
            print(f"| {device.type} | {strategy} | {ms[20]:.0f} | {ms[200]:.0f} | {ratio:.2f} |")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
