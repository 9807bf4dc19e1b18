"""Segment geometry measured once: in the map's own pixels, and in the camera frame the map is resampled
into (weighted histograms at the model's resolution), against a plain numpy measurement of the
resampled map, for stretched and letterboxed frames larger and smaller than the model input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.core.preprocess import pixel_frame, plan, restore
from panoptic_ros.core.segments import AxisMap, histogram, identity_axes, segment_geometry, segment_histograms

Measured = tuple[int, tuple[int, int, int, int], tuple[float, float]]


def measure(labels: np.ndarray, count: int) -> list[Measured]:
    out = []
    for s in range(count):
        ys, xs = np.nonzero(labels == s)
        if xs.size == 0:
            out.append((0, (0, 0, 0, 0), (0.0, 0.0)))
            continue
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        out.append((int(xs.size), box, (float(xs.mean()), float(ys.mean()))))
    return out


def assert_geometry(geometry, expected) -> None:  # type: ignore[no-untyped-def]
    for k, (area, box, centroid) in enumerate(expected):
        assert geometry.areas[k].item() == area, k
        assert tuple(geometry.bboxes[k].tolist()) == box, k
        assert geometry.centroids[k].tolist() == pytest.approx(centroid, rel=1e-5, abs=1e-5), k


def random_labels(rng: np.random.Generator, size: tuple[int, int], count: int) -> np.ndarray:
    labels = rng.integers(0, count + 1, size=size)  # value count = no segment
    h, w = size
    labels[: h // 3, : w // 2] = rng.integers(0, count)  # one large block
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_geometry_of_the_map_itself(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = tuple(int(v) for v in rng.integers(3, 40, size=2))
    count = int(rng.integers(1, 7))
    labels = random_labels(rng, size, count)
    assert_geometry(segment_geometry(torch.from_numpy(labels), count), measure(labels, count))


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("seed", range(8))
def test_geometry_in_the_camera_frame_equals_measuring_the_resampled_map(seed: int, mode: str) -> None:
    rng = np.random.default_rng(seed)
    model = (int(rng.integers(8, 30)), int(rng.integers(8, 30)))
    source = (int(rng.integers(3, 70)), int(rng.integers(3, 70)))  # smaller or larger than the model
    count = int(rng.integers(1, 7))
    labels = torch.from_numpy(random_labels(rng, model, count))
    transform = plan(source, model, mode)  # type: ignore[arg-type]
    frame = pixel_frame(transform, model, torch.device("cpu"))
    resampled = restore(labels, transform)
    assert tuple(resampled.shape) == source == frame.camera_size
    assert torch.equal(resampled, frame.resample(labels))
    assert_geometry(segment_geometry(labels, count, frame), measure(resampled.numpy(), count))


def test_nearest_axis_matches_pytorch_nearest_exact() -> None:
    for length, target in [(5, 12), (12, 5), (7, 7), (192, 240), (384, 1920), (3, 1)]:
        axis = AxisMap.nearest(length, 0, length, target, torch.device("cpu"))
        values = torch.arange(length, dtype=torch.float32)[None, None, None, :]
        expected = torch.nn.functional.interpolate(values, size=(1, target), mode="nearest-exact")
        assert axis.index.tolist() == expected.reshape(-1).long().tolist()
        assert axis.weight.sum().item() == target
        # the host spans: exactly the camera positions copying each model position
        for position, (start, end) in enumerate(axis.host_spans.tolist()):
            assert list(range(start, end)) == np.flatnonzero(axis.host_index == position).tolist()
            assert end - start == axis.weight[position].item()


@pytest.mark.parametrize("mode", ["resize", "letterbox", "none"])
@pytest.mark.parametrize("seed", range(6))
def test_histograms_from_runs_equal_the_pixel_histograms(seed: int, mode: str) -> None:
    """The CPU measures from each row's runs of one segment; the joint histogram over every pixel (what
    CUDA runs) gives the same counts, void and empty segments included."""
    rng = np.random.default_rng(100 + seed)
    model = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
    count = int(rng.integers(1, 7))
    labels = torch.from_numpy(random_labels(rng, model, count))
    if seed % 2:
        labels = torch.from_numpy(rng.integers(0, count + 1, size=model))  # runs of one pixel
    frame = None
    if mode != "none":
        source = (int(rng.integers(3, 70)), int(rng.integers(3, 70)))
        frame = pixel_frame(plan(source, model, mode), model, torch.device("cpu"))  # type: ignore[arg-type]
    axes = frame.axes if frame is not None else identity_axes(*model, torch.device("cpu"))
    bins = 2 * axes.length
    pixels = histogram(labels[None] * bins + axes.base, (count + 1) * bins, axes.pixel_weights)
    expected = pixels.view(count + 1, 2, axes.length)[:count]
    assert torch.equal(segment_histograms(labels, count, frame), expected)
