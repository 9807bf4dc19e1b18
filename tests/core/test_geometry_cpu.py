"""The compiled depth medians (:mod:`panoptic_ros.core.geometry_cpu`) against the tensor form of
:func:`~panoptic_ros.core.geometry.segment_positions`: the same positions and validity, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.core.geometry import CameraModel, _back_project, segment_positions
from panoptic_ros.core.geometry_cpu import depth_meters, segment_depths

CAMERA = CameraModel(fx=50.0, fy=40.0, cx=20.0, cy=15.0, width=40, height=30)


def _case(seed: int, weighted: bool) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    height, width = 30, 40
    # labels like the engine's: track ids (large, positive) and -1 - category for stuff, some unlisted
    values = np.array([7, 123456, 3, -1, -9, -134, 88, 5], dtype=np.int64)
    labels = values[rng.integers(0, values.size, size=(height, width))]
    # coarse depths so that many pixels tie
    depth = np.round(rng.uniform(0.5, 6.0, size=(height, width)), 1).astype(np.float32)
    depth[rng.random((height, width)) < 0.1] = np.nan
    depth[rng.random((height, width)) < 0.03] = -2.0
    depth[rng.random((height, width)) < 0.02] = np.inf
    depth[rng.random((height, width)) < 0.02] = 0.0
    keys = torch.tensor([123456, -1, 7, -134, 42, 5, -9])  # 42 is in no pixel
    centroids = torch.from_numpy(rng.uniform(0, 40, size=(keys.numel(), 2)).astype(np.float32))
    weights = None
    if weighted:  # some pixels weigh 0 (letterbox padding), others stand for several camera pixels
        weights = torch.from_numpy(rng.integers(0, 4, size=(height, width)))
    return torch.from_numpy(labels), keys, centroids, torch.from_numpy(depth), weights


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_compiled_medians_equal_the_tensor_form(seed: int, weighted: bool) -> None:
    labels, keys, centroids, depth, weights = _case(seed, weighted)
    for min_pixels in (1, 40, 10**6):
        args = (labels, keys, centroids, depth, CAMERA)
        compiled = segment_positions(*args, min_pixels=min_pixels, weights=weights, kernels=True)
        tensor = segment_positions(*args, min_pixels=min_pixels, weights=weights, kernels=False)
        assert torch.equal(compiled[1], tensor[1]), min_pixels
        assert torch.equal(compiled[0], tensor[0]), min_pixels
        assert compiled[0].dtype == torch.float32
    some = segment_positions(*args, min_pixels=1, weights=weights)[1]
    assert bool(some.any()) and not bool(some[4]), "the key in no pixel has no depth"


def test_the_lower_weighted_median_of_a_small_segment() -> None:
    """Depths 2, 3, 1 weighing 1, 1, 3 stand for 1, 1, 1, 2, 3: the third smallest is 1; an even total
    takes the lower of the two middle ones; fewer than ``min_pixels`` gives no depth (0, not valid)."""
    labels = np.zeros((1, 3), dtype=np.int64)
    depth = np.array([[2.0, 3.0, 1.0]], dtype=np.float32)
    keys = np.array([0])
    for weights, expected in (([1, 1, 3], 1.0), ([1, 1, 1], 2.0), ([1, 3, 1], 3.0), ([2, 1, 1], 2.0)):
        median, valid = segment_depths(labels, keys, depth, np.array([weights]), min_pixels=1)
        assert (float(median[0]), bool(valid[0])) == (expected, True), weights
        median, valid = segment_depths(labels, keys, depth, np.array([weights]), min_pixels=5)
        enough = sum(weights) >= 5
        assert (float(median[0]), bool(valid[0])) == ((expected if enough else 0.0), enough), weights
    median, valid = segment_depths(labels, keys, depth, None, min_pixels=1)
    assert (float(median[0]), bool(valid[0])) == (2.0, True)


def test_kernels_refuse_a_map_off_the_cpu() -> None:
    labels, keys, centroids, depth, _ = _case(0, False)
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (a map on the device)")
    with pytest.raises(ValueError, match="on the CPU"):
        segment_positions(labels.cuda(), keys, centroids, depth, CAMERA, kernels=True)


def test_empty_maps_and_empty_tables() -> None:
    """No pixels: every segment without depth; no segments: empty results, as the tensor form."""
    medians, valid = segment_depths(np.zeros((0, 0)), np.array([1, 2]), np.zeros((0, 0)), None, min_pixels=1)
    assert medians.tolist() == [0.0, 0.0] and valid.tolist() == [False, False]
    labels, depth = torch.ones(3, 3, dtype=torch.long), torch.ones(3, 3)
    for kernels in (True, False):
        positions, valid = segment_positions(
            labels, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), depth, CAMERA, kernels=kernels
        )
        assert positions.shape == (0, 3) and valid.shape == (0,)


def _meters_reference(depth: np.ndarray, scale: float) -> np.ndarray:
    """The definition, per pixel in float64 then float32 (the product of float32 values is exact in
    float64, so rounding it once to float32 is the float32 product): NaN unless positive and finite."""
    out = np.full(depth.shape, np.nan, dtype=np.float32)
    for index, value in np.ndenumerate(depth):
        meters = np.float32(np.float64(np.float32(value)) * np.float64(np.float32(scale)))
        if np.isfinite(meters) and meters > 0:
            out[index] = meters
    return out


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1"])
def test_depth_in_meters_by_the_compiled_pass(encoding: str) -> None:
    from panoptic_ros.core.geometry import DEPTH_SCALE, depth_in_meters

    rng = np.random.default_rng(3)
    if encoding == "32FC1":
        depth = rng.uniform(-1.0, 9.0, size=(12, 17)).astype(np.float32)
        depth[2, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
        depth[3, :2] = [np.float32(3e38), np.float32(1e-45)]  # largest finite, smallest subnormal
    else:
        depth = rng.integers(0, 65536, size=(12, 17)).astype(np.uint16)
        depth[2, :3] = [0, 1, 65535]
    padded = np.zeros((12, 20), dtype=depth.dtype)
    padded[:, :17] = depth
    expected = _meters_reference(depth, DEPTH_SCALE[encoding])
    read_only = depth.view()
    read_only.flags.writeable = False
    swapped = depth.astype(depth.dtype.newbyteorder(">"))  # not native: numpy's passes
    for image in (depth, padded[:, :17], read_only, swapped):
        compiled = depth_meters(image, DEPTH_SCALE[encoding])
        assert (compiled is None) == (image is swapped), "the compiled pass takes native images"
        meters = depth_in_meters(image, encoding)
        assert meters.dtype == np.float32 and meters.shape == depth.shape
        assert np.array_equal(meters.view(np.int32), expected.view(np.int32)), image.strides


@pytest.mark.parametrize("id_type", [np.int32, np.int64])
@pytest.mark.parametrize("semantic_type", [np.int32, np.int64, np.uint8])
def test_labels_read_from_thing_ids_and_categories(id_type: type, semantic_type: type) -> None:
    """With ``semantic``, a pixel's label is its thing id where it has one, else -1 - its category: the
    medians are those of that map of labels made first, for every map type (a map of another type is
    converted first), for maps that are views with a stride, and for the tensor form."""
    rng = np.random.default_rng(5)
    ids = np.where(rng.random((30, 40)) < 0.4, rng.integers(1, 6, size=(30, 40)) * 1000, 0).astype(id_type)
    semantic = rng.integers(0, 5, size=(30, 40)).astype(semantic_type)
    depth = rng.uniform(0.5, 9.0, size=(30, 40)).astype(np.float32)
    weights = rng.integers(0, 4, size=(30, 40))
    labels = torch.where(
        torch.from_numpy(ids) > 0, torch.from_numpy(ids).long(), -1 - torch.from_numpy(semantic).long()
    )
    keys = torch.tensor([3000, -1, -3, 1000, -5, 5000, 7])
    centroids = torch.from_numpy(rng.uniform(0, 40, size=(keys.numel(), 2)).astype(np.float32))
    for cut in (np.s_[:, :], np.s_[:, ::2]):
        depth_cut, weights_cut = torch.from_numpy(depth[cut].copy()), torch.from_numpy(weights[cut].copy())
        expected = segment_positions(
            labels[cut].contiguous(), keys, centroids, depth_cut, CAMERA, min_pixels=3, weights=weights_cut,
            kernels=False,
        )  # fmt: skip
        for kernels in (True, False):
            views = (ids[cut], semantic[cut]) if kernels else (ids[cut].copy(), semantic[cut].copy())
            paired = segment_positions(
                torch.from_numpy(views[0]), keys, centroids, depth_cut, CAMERA, min_pixels=3,
                weights=weights_cut, kernels=kernels, semantic=torch.from_numpy(views[1]),
            )  # fmt: skip
            assert torch.equal(paired[1], expected[1]) and torch.equal(paired[0], expected[0]), (cut, kernels)
        assert bool(expected[1][:6].all()) and not bool(expected[1][6]), "every key present but 7"


def _spread(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    """``n`` depths of one of four spreads: a few values tying, a wide range, nearly one value (the
    smallest and largest differ in their last bit), floats from subnormal to huge."""
    if kind == 0:
        return np.round(rng.uniform(0.5, 6.0, n), 1).astype(np.float32)
    if kind == 1:
        return rng.uniform(0.5, 60.0, n).astype(np.float32)
    if kind == 2:
        return np.where(rng.random(n) < 0.02, np.nextafter(np.float32(2.5), np.float32(3)), np.float32(2.5))
    return rng.choice(np.array([1e-45, 1e-30, 3.0, 3.0000002, 1e30, 3e38], dtype=np.float32), size=n)


@pytest.mark.parametrize("seed", range(40))
def test_medians_of_runs_equal_the_tensor_form_for_any_spread_of_depths(seed: int) -> None:
    """Long runs of labels (sorted maps) and short ones, depths that tie, spread widely, differ in one
    bit, or span every exponent, with invalid ones among them: the medians and validity are the
    tensor form's, bit for bit."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2500))
    # 261, 5 and -251 share their low 8 bits (the slot of the kernel's table of labels seen); -251 and 2
    # are no key
    labels = rng.choice(np.array([-4, -1, 0, 2, 9, 1234567, 261, 5, -251]), size=n)
    if seed % 3 == 0:
        labels = np.sort(labels)
    depth = _spread(rng, seed % 4, n)
    depth[rng.random(n) < 0.1] = np.nan
    depth[rng.random(n) < 0.03] = -1.0
    depth[rng.random(n) < 0.02] = np.inf
    depth[rng.random(n) < 0.02] = 0.0
    keys = torch.tensor([9, -1, 0, 1234567, 77, -4, 261, 5])
    centroids = torch.tensor([[CAMERA.cx, CAMERA.cy]]).repeat(keys.numel(), 1)  # x = y = 0: no overflow
    weights = torch.from_numpy(rng.integers(0, 5, size=(1, n))) if seed % 2 else None
    args = (torch.from_numpy(labels[None, :]), keys, centroids, torch.from_numpy(depth[None, :]), CAMERA)
    for min_pixels in (1, 7, 10**6):
        compiled = segment_positions(*args, min_pixels=min_pixels, weights=weights, kernels=True)
        tensor = segment_positions(*args, min_pixels=min_pixels, weights=weights, kernels=False)
        assert torch.equal(compiled[1], tensor[1]), min_pixels
        assert torch.equal(compiled[0].view(torch.int32), tensor[0].view(torch.int32)), min_pixels


@pytest.mark.parametrize("seed", range(60))
def test_medians_of_small_maps_with_any_bits_and_weights(seed: int) -> None:
    """Small maps of several rows: depths of any bits (ties, one value, every exponent, invalid ones),
    weights from 0 to large (a segment of total weight 1 included), things and stuff read from a thing
    id map and a uint8 category map with the void value 255: the compiled medians are the tensor
    form's, bit for bit."""
    rng = np.random.default_rng(1000 + seed)
    height, width = (int(v) for v in rng.integers(1, 12, size=2))
    bits = rng.integers(-(2**31), 2**31, size=(height, width), dtype=np.int64).astype(np.int32)
    if seed % 3 == 0:  # a few values repeated: ties, segments of one value
        bits = rng.choice(bits.reshape(-1)[:3], size=(height, width))
    depth = bits.view(np.float32)
    ids = np.where(rng.random((height, width)) < 0.4, rng.integers(1, 4, size=(height, width)), 0)
    semantic = rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), size=(height, width))
    weights = rng.integers(0, 3, size=(height, width)) * (10**6 if seed % 4 == 1 else 1)
    if seed % 5 == 0:  # one pixel of weight 1 for the first thing
        weights[:] = 0
        weights[0, 0], ids[0, 0] = 1, 1
    keys = torch.tensor([1, 2, 3, -1, -2, -3, -256])
    centroids = torch.tensor([[CAMERA.cx, CAMERA.cy]]).repeat(keys.numel(), 1)
    maps = (torch.from_numpy(ids), keys, centroids, torch.from_numpy(depth), CAMERA)
    given = {"weights": torch.from_numpy(weights), "semantic": torch.from_numpy(semantic)}
    for min_pixels in (0, 1, 3):
        results = [segment_positions(*maps, min_pixels=min_pixels, kernels=k, **given) for k in (True, False)]
        assert torch.equal(results[0][1], results[1][1]), min_pixels
        assert torch.equal(results[0][0].view(torch.int32), results[1][0].view(torch.int32)), min_pixels


def test_zero_depths_are_left_out_beside_a_subnormal_median() -> None:
    """Zeros share a subnormal depth's high bits (all 0): they must not join its candidates."""
    depth = np.array([[1e-45, 1e-45, 1e-45, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    labels = torch.zeros(depth.shape, dtype=torch.long)
    args = (labels, torch.tensor([0]), torch.zeros(1, 2), torch.from_numpy(depth), CAMERA)
    compiled = segment_positions(*args, min_pixels=1, kernels=True)
    assert compiled[0][0, 2].item() == float(np.float32(1e-45)) and bool(compiled[1][0])
    tensor = segment_positions(*args, min_pixels=1, kernels=False)
    assert torch.equal(compiled[0].view(torch.int32), tensor[0].view(torch.int32))


def test_maps_of_other_shapes_than_the_labels_are_refused() -> None:
    """The compiled loops do not check their indices: depth, weights and categories must be of the
    label map's shape."""
    labels, keys, depth = np.zeros((4, 5), dtype=np.int64), np.array([0]), np.ones((4, 5), dtype=np.float32)
    small = np.zeros((3, 5), dtype=np.int64)
    with pytest.raises(ValueError, match="depth map"):
        segment_depths(labels, keys, depth[:3], None, min_pixels=1)
    with pytest.raises(ValueError, match="weights map"):
        segment_depths(labels, keys, depth, small, min_pixels=1)
    with pytest.raises(ValueError, match="semantic map"):
        segment_depths(labels, keys, depth, None, min_pixels=1, semantic=small)


def test_back_projection_on_the_cpu_takes_the_tensor_forms_float32_steps() -> None:
    """The compiled back-projection (the CPU's, without PyTorch's per-call overhead) gives the tensor
    expression's points on the CPU bit for bit, zeros where not valid; sizes that differ are refused."""
    rng = np.random.default_rng(11)
    centroids = torch.from_numpy(rng.uniform(0, 40, size=(25, 2)).astype(np.float32))
    z = torch.from_numpy(rng.uniform(0.3, 80.0, size=25).astype(np.float32))
    valid = torch.from_numpy(rng.random(25) < 0.8)
    z = torch.where(valid, z, 0.0)
    points, same_valid = _back_project(centroids, z, valid, CAMERA)
    c = centroids
    expected = torch.stack(
        ((c[:, 0] - CAMERA.cx) * z / CAMERA.fx, (c[:, 1] - CAMERA.cy) * z / CAMERA.fy, z), dim=1
    )
    expected = torch.where(valid[:, None], expected, 0.0)
    assert points.dtype == torch.float32 and torch.equal(points, expected) and torch.equal(same_valid, valid)
    with pytest.raises(ValueError, match="centroids"):
        _back_project(centroids[:1], z, valid, CAMERA)  # the compiled loop does not check its reads
    with pytest.raises(ValueError, match="flags"):
        _back_project(centroids, z, valid[:3], CAMERA)
