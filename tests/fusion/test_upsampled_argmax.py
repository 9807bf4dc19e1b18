"""The sparse argmax of upsampled masks: exact arithmetic helpers and equality with the dense way."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from panoptic_ros.fusion import upsampled_argmax
from panoptic_ros.fusion.upsampled_argmax import assign_sparse, fma32, geometry, resize


def dense(
    source: torch.Tensor, scores: torch.Tensor, size: tuple[int, int], *, activation: str, scored: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    prob = resize(source, size)
    prob = prob.sigmoid() if activation == "sigmoid" else prob
    values = prob * scores[:, None, None]
    winner = values.max(dim=0).indices
    above = (values if scored else prob) >= 0.5
    return winner, above.gather(0, winner[None])[0], above.flatten(1).sum(dim=1)


def masks(seed: int, num: int, height: int, width: int, *, sharp: float = 10.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, num, max(height // 4, 1), max(width // 4, 1), generator=gen) * sharp
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]


def test_fma32_is_the_correctly_rounded_fused_multiply_add() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, generator=gen)
    b = torch.randn(4000, generator=gen)
    c = torch.randn(4000, generator=gen) * torch.rand(4000, generator=gen)
    # cases where float64 alone would round twice: c sits half a float32 ulp from a * b
    a[:5] = 1.0 + 2.0**-23
    b[:5] = 1.0 + 2.0**-23
    c[:5] = torch.tensor([-1.0, 2.0**-48, -(2.0**-48), 2.0**-30, 1e-30])
    got = fma32(a, b, c)
    for x, y, z, r in zip(a.tolist(), b.tolist(), c.tolist(), got.tolist(), strict=True):
        exact = Fraction(x) * Fraction(y) + Fraction(z)
        below = torch.tensor(float(exact), dtype=torch.float32)  # float() rounds to float64 first
        candidates = {
            float(below),
            float(torch.nextafter(below, torch.tensor(float("inf")))),
            float(torch.nextafter(below, torch.tensor(float("-inf")))),
        }
        best = min(
            candidates, key=lambda v: (abs(Fraction(v) - exact), int(torch.tensor(v).view(torch.int32)) & 1)
        )
        assert r == best


def test_geometry_finds_the_weights_of_the_kernel() -> None:
    geo = geometry(6, 10, 17, 31, torch.device("cpu"), tile=2)
    for axis, n_in, n_out in ((geo.rows, 6, 17), (geo.cols, 10, 31)):
        # the weights reproduce the resize of any vector along that axis
        vector = torch.rand(n_in)
        if axis is geo.rows:
            expected = resize(vector.view(1, n_in, 1), (n_out, 1)).view(-1)
        else:
            expected = resize(vector.view(1, 1, n_in), (1, n_out)).view(-1)
        approx = vector[axis.first] * axis.w_first + vector[axis.second] * axis.w_second
        assert torch.allclose(approx, expected, atol=1e-6)
        assert int(axis.tile_count.sum()) == n_out
        assert torch.equal(axis.tile, torch.div(axis.first, 2, rounding_mode="floor"))
    assert 0.0 <= geo.plain_ulps < 8.0


@pytest.mark.parametrize(
    ("shape", "size", "tile"),
    [
        ((20, 30), (160, 240), None),
        ((24, 40), (97, 301), 3),
        ((17, 9), (400, 50), 1),
        ((30, 30), (20, 25), 2),
    ],
)
@pytest.mark.parametrize("activation", ["identity", "sigmoid"])
def test_sparse_equals_dense(
    shape: tuple[int, int], size: tuple[int, int], tile: int | None, activation: str
) -> None:
    for seed in range(3):
        source = masks(seed, 9, *shape)
        if activation == "identity":
            source = source.sigmoid()
        if seed == 2:  # exact ties: saturated probabilities
            source = source.round()
        scores = torch.rand(9, generator=torch.Generator().manual_seed(seed)) * 0.5 + 0.5
        scored = activation == "identity"
        winner, above, area = dense(source, scores, size, activation=activation, scored=scored)
        got = assign_sparse(
            source,
            scores,
            size,
            activation=activation,
            mask_threshold=0.5,
            threshold_scored=scored,
            tile=tile,
        )
        assert torch.equal(got.winner, winner)
        assert torch.equal(got.winner_above, above)
        assert torch.equal(got.above_area, area)


def test_pixels_no_formula_reproduces_are_recomputed_with_interpolate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where no candidate formula matches PyTorch's kernel, close decisions fall back to resizing
    the queries involved; with every pixel marked so, the result must still be exact."""
    source = masks(5, 6, 16, 16, sharp=3.0).sigmoid().round(decimals=2)  # many near and exact ties
    scores = torch.full((6,), 0.8)
    size = (64, 80)
    real = geometry(16, 16, 64, 80, torch.device("cpu"), tile=4)
    calls: list[int] = []
    original = upsampled_argmax.resize

    def counting(values: torch.Tensor, out: tuple[int, int]) -> torch.Tensor:
        calls.append(values.shape[0])
        return original(values, out)

    monkeypatch.setattr(upsampled_argmax, "geometry", lambda *a, **k: real._replace(formula=-1))
    monkeypatch.setattr(upsampled_argmax, "resize", counting)
    got = assign_sparse(
        source, scores, size, activation="identity", mask_threshold=0.5, threshold_scored=True, tile=4
    )
    winner, above, area = dense(source, scores, size, activation="identity", scored=True)
    assert calls, "ties must have been recomputed by interpolation"
    assert torch.equal(got.winner, winner)
    assert torch.equal(got.above_area, area)
    assert torch.equal(got.winner_above, above)
