"""The compiled segment measure (run by run along the rows) against the tensor geometry and a plain
per-pixel probability sum: maps of long runs and of one-pixel runs, segments absent from the map, and
frames larger and smaller than the model (model columns and rows no camera pixel copies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.core.preprocess import pixel_frame, plan
from panoptic_ros.core.segments import segment_geometry
from panoptic_ros.core.segments_cpu import argmax_and_top, measure_cpu, take_pair_cpu
from panoptic_ros.fusion.center_offset_cpu import class_probabilities_cpu

CPU = torch.device("cpu")


def labels_of(rng: np.random.Generator, size: tuple[int, int], count: int, runs: bool) -> np.ndarray:
    """Segments ``0..count`` (``count`` none): blocks a few columns wide (long runs) or single pixels."""
    h, w = size
    if not runs:
        return rng.integers(0, count + 1, size=size)
    widths = rng.integers(1, 9, size=w)
    starts = np.cumsum(widths)
    block = np.searchsorted(starts, np.arange(w), side="right")
    per_row = rng.integers(0, count + 1, size=(h // 2 + 1, block.max() + 1))
    return per_row[np.arange(h) // 2][:, block]


@pytest.mark.parametrize("runs", [True, False], ids=["runs", "pixels"])
@pytest.mark.parametrize(
    ("camera", "mode"),
    [
        (None, None),
        ((70, 130), "resize"),
        ((70, 130), "letterbox"),
        ((9, 13), "resize"),
        ((9, 31), "letterbox"),
    ],
)
@pytest.mark.parametrize("seed", range(4))
def test_compiled_measure_equals_the_tensor_geometry_and_a_per_pixel_sum(
    seed: int, camera: tuple[int, int] | None, mode: str | None, runs: bool
) -> None:
    rng = np.random.default_rng(seed * 11 + (camera or (0, 0))[0] + runs)
    model = (int(rng.integers(1, 24)), int(rng.integers(1, 40)))
    count = int(rng.integers(1, 8))
    segment = labels_of(rng, model, count, runs).astype(np.int64)
    absent = count + 1  # a segment no pixel has: zero area, empty box
    segment[rng.random(model) < 0.2] = absent + 1  # pixels of no segment
    classes = rng.integers(0, 5, size=absent + 1)
    logits = torch.from_numpy(rng.normal(0.0, 4.0, size=(5, *model)).astype(np.float32))
    probabilities = class_probabilities_cpu(logits)
    prob = torch.softmax(logits.double(), dim=0).reshape(5, -1).numpy()  # the exact probabilities
    frame = None if camera is None else pixel_frame(plan(camera, model, mode), model, CPU)  # type: ignore[arg-type]

    areas, bboxes, centroids, sums = measure_cpu(segment, absent + 1, frame, probabilities, classes)

    expected = segment_geometry(torch.from_numpy(segment), absent + 1, frame)
    assert np.array_equal(areas, expected.areas.numpy())
    assert np.array_equal(bboxes, expected.bboxes.numpy())
    assert np.array_equal(centroids, expected.centroids.numpy())
    assert areas[absent] == 0 and not bboxes[absent].any()
    plain = np.zeros(absent + 1)
    for pixel, s in enumerate(segment.reshape(-1)):
        if s <= absent:
            plain[s] += prob[classes[s], pixel]
    # float32 probabilities: each within float32 rounding of the exact one
    np.testing.assert_allclose(sums, plain, rtol=1e-6, atol=1e-12)
    assert (classes[segment[segment <= absent]] != probabilities.argmax[segment <= absent]).any(), (
        "no pixel's segment has a class other than the pixel's likeliest: that branch went untested"
    )
    if frame is not None and min(camera) < min(model):  # type: ignore[type-var]
        assert (frame.cols.weight == 0).any() or (frame.rows.weight == 0).any(), "uncopied model pixels"


def test_without_probabilities_the_sums_are_zero() -> None:
    segment = np.array([[0, 0, 1], [2, 1, 1]], dtype=np.int64)
    areas, bboxes, _, sums = measure_cpu(segment, 2, None, None, np.zeros(2, dtype=np.int64))
    assert areas.tolist() == [2, 3] and bboxes.tolist() == [[0, 0, 2, 1], [1, 0, 2, 2]]
    assert not sums.any()


@pytest.mark.parametrize("runs", [True, False], ids=["runs", "pixels"])
def test_take_pair_equals_two_takes(runs: bool) -> None:
    """Both tables at ``labels + shift``, as numpy's ``take`` reads them, for maps of long runs and of
    one-pixel runs; void (-1) reads row 0 with a shift of 1."""
    rng = np.random.default_rng(3)
    labels = labels_of(rng, (37, 53), 40, runs) - 1  # -1 .. 39
    first = rng.integers(-5, 10**6, size=41)
    second = rng.integers(0, 255, size=45).astype(np.uint8)
    a, b = take_pair_cpu(first, second, labels, shift=1)
    assert a.dtype == first.dtype and b.dtype == second.dtype and a.shape == b.shape == labels.shape
    assert np.array_equal(a, first.take(labels + 1)) and np.array_equal(b, second.take(labels + 1))
    assert (labels == -1).any() and np.array_equal(a[labels == -1], np.full((labels == -1).sum(), first[0]))


@pytest.mark.parametrize("bad", [-2, 41])
def test_take_pair_refuses_labels_outside_the_tables(bad: int) -> None:
    labels = np.zeros((4, 5), dtype=np.int64)
    labels[2, 3] = bad
    table = np.arange(42, dtype=np.int64)
    with pytest.raises(IndexError, match="outside the lookup tables"):
        take_pair_cpu(table, table, labels, shift=1)
    empty = np.zeros((0, 3), dtype=np.int64)
    a, b = take_pair_cpu(table, table, empty, shift=1)
    assert a.shape == b.shape == (0, 3)


@pytest.mark.parametrize("block", [1, 7, 64, 2048])
def test_top_probabilities_are_the_softmax_to_float32_rounding_and_nan_where_it_is(block: int) -> None:
    """The probability of each pixel's likeliest class against a float64 softmax, over logits spread
    wide (terms far below the maximum), and NaN exactly where ``torch.softmax`` gives NaN: a NaN, an
    infinite maximum, every logit -inf; a -inf below a finite maximum adds nothing. The argmax and the
    maxima are ``torch.argmax``'s and ``torch.max``'s; no value depends on the block size (a block
    with no NaN next to one with a NaN: each redone on its own)."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 30.0, size=(7, 500)).astype(np.float32)
    logits[:, 0] = [3.0, -200.0, -1000.0, 3.0, -100.0, -np.inf, -150.0]  # a tie at the top, far terms
    logits[2, 1] = np.nan
    logits[4, 2] = np.inf
    logits[:, 3] = -np.inf
    logits[0, 4] = -np.inf
    logits[5, 300] = np.nan
    index, best, top = argmax_and_top(logits, block, True)
    expected = torch.from_numpy(logits).max(dim=0)
    assert np.array_equal(index, torch.from_numpy(logits).argmax(dim=0).numpy())
    assert np.array_equal(best, expected.values.numpy(), equal_nan=True)
    exact = torch.softmax(torch.from_numpy(logits).double(), dim=0).max(dim=0).values.numpy()
    assert top.dtype == np.float32
    assert np.array_equal(np.isnan(top), np.isnan(exact)) and np.isnan(top[1:4]).all()
    finite = ~np.isnan(exact)
    np.testing.assert_allclose(top[finite], exact[finite], rtol=1e-6, atol=0)
    assert abs(float(top[0]) - 0.5) < 1e-6
    whole = argmax_and_top(logits, logits.shape[1], True)
    for mine, one_block in zip((index, best, top), whole, strict=True):
        assert np.array_equal(mine, one_block, equal_nan=True)
    alone = argmax_and_top(logits, block, False)  # the argmax without the probabilities
    assert np.array_equal(alone[0], index) and np.array_equal(alone[1], best, equal_nan=True)
    assert alone[2].size == 0
