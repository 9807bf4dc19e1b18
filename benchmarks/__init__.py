"""Benchmark scripts; speed is reported as ratios against a reference measured in the same run."""

import panoptic_ros  # noqa: F401  (first: its OpenMP spin setting must precede PyTorch's import)
