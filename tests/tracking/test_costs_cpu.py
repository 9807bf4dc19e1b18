"""The compiled association costs against the numpy formulation they replace, bit for bit."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from panoptic_ros.tracking import TrackerParams
from panoptic_ros.tracking.association import box_iou, center_distance, clip_boxes
from panoptic_ros.tracking.costs_cpu import pair_costs
from panoptic_ros.tracking.state import Instances, Tracks


class _Case(NamedTuple):
    tracks: Tracks
    det: Instances
    predicted: np.ndarray
    mask_rows: np.ndarray
    previous_iou: np.ndarray
    colors: np.ndarray | None
    size: tuple[int, int]
    params: TrackerParams


def _numpy_costs(case: _Case) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's cost as numpy computed it before the compiled loop (whole-array steps)."""
    tracks, det, predicted, mask_rows, previous_iou, colors, size, params = case
    visible = clip_boxes(predicted, size)
    in_image = (visible[:, 2] > visible[:, 0]) & (visible[:, 3] > visible[:, 1])
    n, t = len(tracks), det.count
    masks = np.zeros((n, t))
    seen = mask_rows >= 0
    masks[seen] = previous_iou[mask_rows[seen]]
    boxes = box_iou(visible, det.boxes)
    distance = center_distance(visible, det.centroids, det.boxes, min_size=params.min_box_size)
    allowed = (tracks.categories[:, None] == det.categories[None, :]) & (
        (masks >= params.min_mask_iou)
        | (in_image[:, None] & (boxes >= params.min_box_iou))
        | (in_image[:, None] & (distance <= params.max_center_distance))
    )
    cost = (
        1.0
        - np.maximum(masks, boxes)
        + params.distance_weight * np.minimum(distance, params.max_center_distance)
    )
    if colors is not None:
        color_distance = np.linalg.norm(tracks.colors[:, None, :] - colors[None, :, :], axis=2)
        color_distance = np.where(tracks.has_color[:, None], color_distance / (255 * np.sqrt(3)), 0.0)
        allowed &= color_distance <= params.max_color_distance
        cost = cost + params.appearance_weight * np.minimum(color_distance, 1.0)
    return np.where(allowed, cost, np.inf), in_image


def _boxes(rng: np.random.Generator, count: int, size: tuple[int, int]) -> np.ndarray:
    """``[count, 4]`` boxes, some reaching out of the image, some wholly outside, some empty."""
    height, width = size
    corner = rng.uniform((-60, -60), (width + 20, height + 20), size=(count, 2))
    extent = rng.uniform(0, 120, size=(count, 2))
    extent[rng.random((count, 2)) < 0.1] = 0.0
    return np.concatenate([corner, corner + extent], axis=1)


def _instances(rng: np.random.Generator, count: int, size: tuple[int, int]) -> Instances:
    """``count`` instances of categories 1-3 with boxes inside the image and centroids near their
    centers."""
    table = np.zeros((count, 9))
    table[:, 0] = np.arange(1, count + 1)
    table[:, 1] = rng.integers(1, 4, count)
    table[:, 2] = rng.random(count)
    boxes = np.clip(_boxes(rng, count, size), 0, [size[1], size[0], size[1], size[0]])
    table[:, 3:5], table[:, 5:7] = boxes[:, :2], boxes[:, 2:] - boxes[:, :2]
    table[:, 7:9] = (boxes[:, :2] + boxes[:, 2:]) / 2 + rng.normal(0, 3, (count, 2))
    return Instances.of_table(table)


def _case(seed: int, appearance: bool) -> _Case:
    rng = np.random.default_rng(seed)
    size = (480, 640)
    n, t, p = (int(v) for v in rng.integers(0, 14, 3))
    if seed == 0:
        n, t = 5, 0  # no instances: no costs, but every track's in_image
    det = _instances(rng, t, size)
    tracks = Tracks(
        ids=np.arange(1, n + 1),
        categories=rng.integers(1, 4, n),
        colors=rng.uniform(0, 255, (n, 3)),
        has_color=rng.random(n) < 0.7,
    )
    predicted = _boxes(rng, n, size)
    previous_iou = rng.random((p, t)) * (rng.random((p, t)) < 0.5)
    mask_rows = np.where(rng.random(n) < 0.6, rng.integers(0, max(p, 1), n), -1) if p else np.full(n, -1)
    params = TrackerParams(
        min_mask_iou=float(rng.uniform(0.05, 0.5)),
        min_box_iou=float(rng.uniform(0.05, 0.5)),
        max_center_distance=float(rng.uniform(0.3, 2.0)),
        distance_weight=float(rng.uniform(0, 1)),
        appearance_weight=float(rng.uniform(0.1, 1)) if appearance else 0.0,
        max_color_distance=float(rng.uniform(0.1, 0.6)),
        min_box_size=float(rng.uniform(1, 8)),
    )
    colors = rng.uniform(0, 255, (t, 3)) if appearance else None
    return _Case(tracks, det, predicted, mask_rows, previous_iou, colors, size, params)


SEEDS = range(16)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("appearance", [False, True])
def test_compiled_costs_equal_the_numpy_formulation(seed: int, appearance: bool) -> None:
    case = _case(seed, appearance)
    expected_cost, expected_in_image = _numpy_costs(case)
    cost, in_image = pair_costs(
        case.tracks, case.det, predicted=case.predicted, mask_rows=case.mask_rows,
        previous_iou=case.previous_iou, colors=case.colors, size=case.size, params=case.params,
    )  # fmt: skip
    assert cost.shape == (len(case.tracks), case.det.count)
    np.testing.assert_array_equal(in_image, expected_in_image)
    np.testing.assert_array_equal(cost, expected_cost)


def test_the_cases_reach_every_gate() -> None:
    """Across the cases compared above there are pairs allowed by mask IoU only, by the box or center
    only, refused for their category, refused for their color, and tracks wholly outside the image."""
    reasons: set[str] = set()
    for seed in SEEDS:
        case = _case(seed, appearance=True)
        tracks, det, params = case.tracks, case.det, case.params
        if not (len(tracks) and det.count):
            continue
        cost, in_image = _numpy_costs(case._replace(colors=None))
        with_colors, _ = _numpy_costs(case)
        same = tracks.categories[:, None] == det.categories[None, :]
        masks = np.zeros(cost.shape)
        seen = case.mask_rows >= 0
        masks[seen] = case.previous_iou[case.mask_rows[seen]]
        by_mask = masks >= params.min_mask_iou
        allowed = np.isfinite(cost)
        checks = {
            "category": (~same).any(),
            "mask only": (allowed & by_mask & ~in_image[:, None]).any(),
            "geometry only": (allowed & ~by_mask).any(),
            "color": (allowed & ~np.isfinite(with_colors)).any(),
            "outside": (~in_image).any(),
        }
        reasons |= {name for name, hit in checks.items() if hit}
    assert reasons == {"category", "mask only", "geometry only", "color", "outside"}
