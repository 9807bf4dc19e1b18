"""Argmax and threshold counts of bilinearly upsampled masks without upsampling them all.

Mask-classification fusion needs, at every output pixel, the query with the largest
``score x activation(resize(mask))`` and, per query, how many pixels have their thresholded value
at or above a threshold. Upsampling all N masks to ``H x W`` (the dense way) costs ``N x H x W``.
This module gets the *same* answer (bit for bit as the dense computation with
:func:`torch.nn.functional.interpolate`) from far fewer evaluations:

1. **Tiles.** With ``align_corners=False`` every output pixel is a convex combination of the 2 x 2
   source pixels around it. A *tile* is a ``k x k`` block of source positions; its output pixels
   only combine source values of the tile and its next row and column, so each query's minimum and
   maximum over those ``(k + 1) x (k + 1)`` values bound all its upsampled values in the tile. The
   activation (sigmoid or none) is monotone and the score positive, so the bounds carry over. A
   tile whose lower bound for one query beats every other query's upper bound has one winner for
   all its pixels; a query surely above or below the threshold in a tile counts all or none of
   the tile's pixels. Only the remaining (tile, query) pairs are evaluated per pixel.
2. **Pixel values.** A pair is evaluated on its whole block of output pixels at once
   (``[pairs, R, C]``) from the source values and the interpolation weights PyTorch uses, which
   are read off by interpolating unit vectors.
3. **Exactness.** PyTorch's kernel combines the four values in an order (with or without fused
   multiply-adds) that depends on the build, the CPU and the output width. Once per geometry a
   random probe determines which of a few candidate formulas reproduces the kernel at which rows
   and columns. The block evaluation uses plain float32 arithmetic (within a measured few ulp of
   the kernel); decisions closer than that margin are recomputed with the exact formula (fused
   multiply-adds emulated exactly in float64), or, at pixels no formula reproduces, with
   :func:`torch.nn.functional.interpolate` itself for the queries involved.

The sigmoid is the one step PyTorch itself does not compute identically everywhere (its vectorized
and scalar code paths differ in the last bit), so with ``activation="sigmoid"`` the result equals
the dense one except where two values are within that last bit of each other.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

Activation = Literal["identity", "sigmoid"]

_ULP = 2.0**-23  # float32 spacing at 1.0

#: Side of a tile in source pixels when not chosen from the upsampling factor.
DEFAULT_TILE = 4
#: A tile is chosen to cover about this many output pixels per side (measured best on a CPU).
TILE_OUTPUT_SIDE = 12.0


def resize(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w]`` -> ``[N, H, W]`` bilinear, half-pixel centers; the input when sizes agree."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks[None], size=size, mode="bilinear", align_corners=False)[0]


def activate(values: torch.Tensor, activation: Activation) -> torch.Tensor:
    return values.sigmoid() if activation == "sigmoid" else values


# --------------------------------------------------------------------------------------------------
# geometry: interpolation weights, tiles, and which formula reproduces the kernel


class _Axis(NamedTuple):
    """Resize weights along one axis (``n_in`` -> ``n_out``), as the kernel uses them, and tiles.

    Per output position (``[n_out]``): ``first``/``second`` int64 source indices (equal at the far
    border), ``w_first``/``w_second`` float32 weights, ``tile`` int64 its tile (``first // k``).
    Per tile (``[T]``): ``tile_count`` its output positions, ``tile_start`` the first of them; and
    ``[T, B]`` tables of its positions (padded to B, the largest count): ``block_index`` output
    position (clamped), ``block_valid`` bool.
    """

    first: torch.Tensor
    second: torch.Tensor
    w_first: torch.Tensor
    w_second: torch.Tensor
    tile: torch.Tensor
    tile_count: torch.Tensor
    tile_start: torch.Tensor
    block_index: torch.Tensor
    block_valid: torch.Tensor


def _axis(n_in: int, n_out: int, tile: int, device: torch.device) -> _Axis:
    # Interpolating the n_in unit vectors along one axis (the other axis of size 1, where the
    # resize is an exact copy) gives every output position's weight of every source position.
    probe = torch.eye(n_in, device=device).view(1, n_in, n_in, 1)
    weights = F.interpolate(probe, size=(n_out, 1), mode="bilinear", align_corners=False)[0, :, :, 0]
    first = (weights != 0).to(torch.uint8).argmax(dim=0)
    second = (first + 1).clamp(max=n_in - 1)
    w_first = weights.gather(0, first[None])[0]
    w_second = torch.where(second > first, weights.gather(0, second[None])[0], torch.zeros_like(w_first))
    num_tiles = -(-n_in // tile)
    tile_of = torch.div(first, tile, rounding_mode="floor")
    count = torch.bincount(tile_of, minlength=num_tiles)
    start = torch.cumsum(count, 0) - count
    block = max(int(count.max()), 1)
    offset = torch.arange(block, device=device)
    return _Axis(
        first=first,
        second=second,
        w_first=w_first,
        w_second=w_second,
        tile=tile_of,
        tile_count=count,
        tile_start=start,
        block_index=(start[:, None] + offset[None, :]).clamp(max=n_out - 1),
        block_valid=offset[None, :] < count[:, None],
    )


def fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The correctly rounded float32 ``a * b + c`` of float32 tensors: what a fused multiply-add
    instruction gives. Computed in float64 (the product is exact there); the one case where
    rounding the float64 sum again to float32 would differ, an exact float32 tie, is settled by
    the sum's rounding error (TwoSum)."""
    product = a.double() * b.double()
    addend = c.double()
    total = product + addend
    virtual = total - product
    error = (product - (total - virtual)) + (addend - virtual)
    rounded = total.float()
    back = rounded.double()
    inf = torch.full_like(rounded, float("inf"))
    toward = torch.nextafter(rounded, torch.where(total > back, inf, -inf))
    tie = ((back + toward.double()) * 0.5 == total) & (error != 0)
    beyond = torch.sign(error) == torch.sign(total - back)
    return torch.where(tie & beyond, toward, rounded)


class _Corners(NamedTuple):
    """Source values at the four corners of a cell, and the weights of the output positions."""

    top_left: torch.Tensor
    top_right: torch.Tensor
    bottom_left: torch.Tensor
    bottom_right: torch.Tensor


def _formula(kind: int, corners: _Corners, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Candidate orders of the kernel's arithmetic; ``weights = (row_first, row_second, col_first,
    col_second)``, all broadcastable against the corner values.

    0: plain ``(tl*c0 + tr*c1)*r0 + (bl*c0 + br*c1)*r1``; 1-4: the same with fused multiply-adds
    in the orders a compiler may contract it to.
    """
    r0, r1, c0, c1 = weights
    tl, tr, bl, br = corners
    if kind == 0:
        return (tl * c0 + tr * c1) * r0 + (bl * c0 + br * c1) * r1
    if kind in (1, 3):
        upper, lower = fma32(tl, c0, tr * c1), fma32(bl, c0, br * c1)
    else:
        upper, lower = fma32(tr, c1, tl * c0), fma32(br, c1, bl * c0)
    if kind in (1, 4):
        return fma32(upper, r0, lower * r1)
    return fma32(lower, r1, upper * r0)


FORMULAS = (0, 1, 2, 3, 4)


class Geometry(NamedTuple):
    """Everything about one ``(h, w) -> (H, W)`` resize that does not depend on the values.

    Attributes:
        rows, cols: the two axes.
        tile: the side of a tile in source pixels.
        formula: the candidate formula (see :func:`_formula`) that reproduces the kernel at the
            most pixels, or -1 when none does anywhere.
        exact_rows: ``[H]`` bool, exact_cols: ``[W]`` bool: the formula reproduces the kernel at
            every pixel of an exact row and exact column.
        plain_ulps: the largest difference of formula 0 (plain float32) from the kernel, in ulp.
        tile_index: ``[H, W]`` int64 flat index (``tile_row * T_w + tile_col``) of each pixel's tile.
    """

    rows: _Axis
    cols: _Axis
    tile: int
    formula: int
    exact_rows: torch.Tensor
    exact_cols: torch.Tensor
    plain_ulps: float
    tile_index: torch.Tensor


@functools.lru_cache(maxsize=16)
def geometry(
    height: int,
    width: int,
    out_height: int,
    out_width: int,
    device: torch.device,
    *,
    tile: int = DEFAULT_TILE,
) -> Geometry:
    """The :class:`Geometry` of a resize, measured once (cached) on a random probe."""
    rows = _axis(height, out_height, tile, device)
    cols = _axis(width, out_width, tile, device)
    generator = torch.Generator().manual_seed(0)
    probe = (torch.rand(2, height, width, generator=generator) + 0.5).to(device)
    exact = resize(probe, (out_height, out_width))
    corners = _Corners(
        probe[:, rows.first][:, :, cols.first],
        probe[:, rows.first][:, :, cols.second],
        probe[:, rows.second][:, :, cols.first],
        probe[:, rows.second][:, :, cols.second],
    )
    weights = (rows.w_first[:, None], rows.w_second[:, None], cols.w_first[None, :], cols.w_second[None, :])
    plain_ulps = 0.0
    best = (
        -1,
        torch.zeros(out_height, dtype=torch.bool, device=device),
        torch.zeros(out_width, dtype=torch.bool, device=device),
    )
    best_count = 0
    for kind in FORMULAS:
        value = _formula(kind, corners, weights)
        wrong = (value != exact).any(dim=0)
        if kind == 0:
            plain_ulps = float(((value - exact).abs() / exact.abs()).max()) / _ULP
        good_rows, good_cols = ~wrong.any(dim=1), ~wrong.any(dim=0)
        count = int(good_rows.sum()) * int(good_cols.sum())
        if count > best_count:
            best, best_count = (kind, good_rows, good_cols), count
        if count == out_height * out_width:
            break
    kind, exact_rows, exact_cols = best
    tile_index = rows.tile[:, None] * cols.tile_count.numel() + cols.tile[None, :]
    return Geometry(rows, cols, tile, kind, exact_rows, exact_cols, plain_ulps, tile_index)


# --------------------------------------------------------------------------------------------------
# the sparse assignment


@dataclass(frozen=True)
class SparseAssignment:
    """The per-pixel winners in compact form: one winner per tile where a tile has a single
    candidate, per-pixel winners in the other tiles, and per-pixel threshold decisions where a
    query is unsure of the threshold in a tile (see :func:`assign_sparse`).

    Blocks are ``[R, C]`` output pixels of a tile (padded; ``*_valid`` marks real pixels, ``*_out``
    holds flat output indices ``row * W + col``).
    """

    size: tuple[int, int]
    num: int
    above_area: torch.Tensor  # [N] int64
    tile_index: torch.Tensor  # [H, W] int64 flat tile of each pixel
    tile_winner: torch.Tensor  # [T_h, T_w] int64, the only candidate of single tiles
    tile_pixels: torch.Tensor  # [T_h, T_w] int64
    single: torch.Tensor  # [T_h, T_w] bool, used tiles with one candidate
    surely_above: torch.Tensor  # [N, T_h, T_w] bool
    multi_tiles: torch.Tensor  # [M, 2] int64
    multi_winner: torch.Tensor  # [M, R, C] int64
    multi_valid: torch.Tensor  # [M, R, C] bool
    pixel_winner: torch.Tensor  # [P] int64 winner of each real pixel of the multi tiles
    pixel_out: torch.Tensor  # [P] int64 its flat output index
    pixel_tile: torch.Tensor  # [P] int64 its flat tile index
    unsure_pairs: torch.Tensor  # [U, 3] int64 (query, tile row, tile col)
    unsure_above: torch.Tensor  # [U, R, C] bool (valid positions only)
    unsure_valid: torch.Tensor  # [U, R, C] bool
    unsure_out: torch.Tensor  # [U, R, C] int64

    def counts(self) -> torch.Tensor:
        """``[N]`` int64 pixels won by each query."""
        counts = torch.zeros(self.num, dtype=torch.int64, device=self.tile_winner.device)
        counts.index_add_(0, self.tile_winner[self.single], self.tile_pixels[self.single])
        return counts.index_add_(0, self.pixel_winner, torch.ones_like(self.pixel_winner))

    def _winner_of_unsure(self) -> torch.Tensor:
        """``[U, R, C]`` bool: the unsure pair's query is the winner at that pixel."""
        query, tile_row, tile_col = self.unsure_pairs.unbind(dim=1)
        single = self.single[tile_row, tile_col] & (self.tile_winner[tile_row, tile_col] == query)
        lookup = torch.full(self.single.shape, -1, dtype=torch.int64, device=query.device)
        lookup[self.multi_tiles[:, 0], self.multi_tiles[:, 1]] = torch.arange(
            self.multi_tiles.shape[0], device=query.device
        )
        multi = lookup[tile_row, tile_col]
        if self.multi_tiles.shape[0] == 0:
            return single[:, None, None] & self.unsure_valid
        in_multi = self.multi_winner[multi.clamp(min=0)] == query[:, None, None]
        mine = torch.where((multi >= 0)[:, None, None], in_multi, single[:, None, None])
        return mine & self.unsure_valid

    def paint(self, if_above: torch.Tensor, if_below: torch.Tensor | None = None) -> torch.Tensor:
        """``[H, W]`` map of ``table[winner]``, the table chosen per pixel by whether the winner's
        thresholded value is at or above the threshold (one table for both when ``if_below`` is
        None). Tables are ``[N]`` (or longer) tensors of one dtype."""
        device = if_above.device
        below = if_above if if_below is None else if_below
        winner = self.tile_winner.reshape(-1)
        above = self.surely_above.reshape(self.num, -1)
        tile_above = above[winner, torch.arange(winner.numel(), device=device)]
        coarse = torch.where(tile_above, if_above[winner], below[winner])
        out = torch.take(coarse, self.tile_index).reshape(-1)
        # tiles with several possible winners: per pixel
        multi_above = above[self.pixel_winner, self.pixel_tile]
        out[self.pixel_out] = torch.where(multi_above, if_above[self.pixel_winner], below[self.pixel_winner])
        if if_below is not None and self.unsure_pairs.numel():
            # the winner unsure of the threshold in its tile: the per-pixel decision
            mine = self._winner_of_unsure()
            query = self.unsure_pairs[:, 0, None, None].expand_as(mine)[mine]
            out[self.unsure_out[mine]] = torch.where(
                self.unsure_above[mine], if_above[query], if_below[query]
            )
        return out.view(self.size)

    @property
    def winner(self) -> torch.Tensor:
        """The full ``[H, W]`` int64 winner map (first query on exact ties)."""
        return self.paint(torch.arange(self.num, device=self.tile_winner.device))

    @property
    def winner_above(self) -> torch.Tensor:
        """The full ``[H, W]`` bool map: the winner's thresholded value is at or above the threshold."""
        true = torch.ones(self.num, dtype=torch.bool, device=self.tile_winner.device)
        return self.paint(true, ~true)

    def painted_counts(self) -> torch.Tensor:
        """``[N]`` int64 pixels won by each query where it is at or above the threshold."""
        query = torch.arange(self.num, device=self.tile_winner.device)
        painted = self.paint(query, torch.full_like(query, self.num))
        return torch.bincount(painted.reshape(-1), minlength=self.num + 1)[: self.num]


def assign_sparse(
    source: torch.Tensor,
    scores: torch.Tensor,
    size: tuple[int, int],
    *,
    activation: Activation,
    mask_threshold: float,
    threshold_scored: bool,
    tile: int | None = None,
) -> SparseAssignment:
    """Per-pixel argmax of ``score x activation(resize(source))`` and the threshold counts.

    Args:
        source: ``[N, h, w]`` float32 masks of N >= 1 queries.
        scores: ``[N]`` float32 positive scores.
        size: ``(H, W)``.
        activation: applied after the resize (``sigmoid`` for logits, ``identity`` for probabilities).
        mask_threshold: threshold of the thresholded value.
        threshold_scored: threshold ``score x probability`` instead of the probability.
        tile: side of a tile in source pixels (a speed trade-off; the result does not depend on it);
            default: about :data:`TILE_OUTPUT_SIDE` output pixels per side.

    Returns:
        :class:`SparseAssignment` (winners: first query on exact ties). A fixed number of device
        syncs (tile, pair and item counts), none per query.
    """
    num, height, width = source.shape
    out_height, out_width = size
    device = source.device
    if tile is None:
        factor = ((out_height / height) * (out_width / width)) ** 0.5
        tile = min(max(round(TILE_OUTPUT_SIDE / factor), 1), 8)
    geo = geometry(height, width, out_height, out_width, device, tile=tile)
    rows, cols = geo.rows, geo.cols
    eps = (geo.plain_ulps + 4.0) * _ULP
    context = _Context(
        source=source,
        scores=scores,
        size=size,
        activation=activation,
        threshold_scored=threshold_scored,
        geo=geo,
        eps=eps,
    )

    # ---- bounds per (query, tile) of the value and of the thresholded value
    bounds = _tile_bounds(source, tile, activation, eps)
    score = scores[:, None, None]
    value_high = bounds.prob_high * (score * (1 + eps))
    value_low = bounds.prob_low * (score * (1 - eps))
    thr_high, thr_low = (value_high, value_low) if threshold_scored else (bounds.prob_high, bounds.prob_low)
    used = (rows.tile_count > 0)[:, None] & (cols.tile_count > 0)[None, :]
    best_low, tile_winner = value_low.max(dim=0)  # the best lower bound's query is always a candidate
    candidate = (value_high >= best_low) & used
    multi = candidate.sum(dim=0) > 1
    surely_above = thr_low >= mask_threshold
    unsure = ~surely_above & (thr_high >= mask_threshold) & used
    tile_pixels = rows.tile_count[:, None] * cols.tile_count[None, :]
    # exact: every partial sum is an integer below 2**24
    above_area = (surely_above.reshape(num, -1).float() @ tile_pixels.reshape(-1).float()).round().long()

    # ---- tiles with several possible winners: the best candidate at each of their pixels
    multi_tiles = torch.nonzero(multi)
    pairs = torch.nonzero(candidate[:, multi_tiles[:, 0], multi_tiles[:, 1]].T)  # (tile, query)
    pair_tile, pair_query = pairs[:, 0], pairs[:, 1]
    block = context.block(pair_query, multi_tiles[pair_tile, 0], multi_tiles[pair_tile, 1])
    num_tiles = multi_tiles.shape[0]
    value = torch.where(block.valid, block.value, -torch.inf)
    best = _reduce(value, pair_tile, num_tiles, "amax", -torch.inf)
    best_of_pair = best[pair_tile]
    query_b = pair_query[:, None, None].expand_as(value)
    winner_block = _reduce(
        torch.where(value == best_of_pair, query_b, num), pair_tile, num_tiles, "amin", num
    )
    is_winner = query_b == winner_block[pair_tile]
    winner_slack = _reduce(torch.where(is_winner, block.slack, 0.0), pair_tile, num_tiles, "amax", 0.0)
    close = block.valid & ~is_winner & (best_of_pair - value <= block.slack + winner_slack[pair_tile])
    doubt = _reduce(close.to(torch.uint8), pair_tile, num_tiles, "amax", 0).bool()
    # decisions within the margin: every candidate of those pixels again, exactly
    item = torch.nonzero(doubt[pair_tile] & block.valid)  # (pair, row in block, col in block)
    if item.numel():
        pair = item[:, 0]
        exact = context.exact(
            pair_query[pair], block.out_row[pair, item[:, 1]], block.out_col[pair, item[:, 2]]
        )
        flat = (pair_tile[pair] * value.shape[1] + item[:, 1]) * value.shape[2] + item[:, 2]
        slots = winner_block.numel()
        redo_best = torch.full((slots,), -torch.inf, device=device).scatter_reduce(
            0, flat, exact.value, "amax", include_self=True
        )
        at = exact.value == redo_best[flat]
        redo_winner = torch.full((slots,), num, dtype=torch.int64, device=device).scatter_reduce(
            0, flat[at], pair_query[pair][at], "amin", include_self=True
        )
        winner_block = torch.where(doubt, redo_winner.view_as(winner_block), winner_block)
    tile_row, tile_col = multi_tiles[:, 0], multi_tiles[:, 1]
    multi_out = rows.block_index[tile_row][:, :, None] * out_width + cols.block_index[tile_col][:, None, :]
    multi_valid = rows.block_valid[tile_row][:, :, None] & cols.block_valid[tile_col][:, None, :]
    real = torch.nonzero(multi_valid.reshape(-1)).squeeze(1)
    tiles_w = cols.tile_count.numel()
    multi_tile = (tile_row * tiles_w + tile_col)[:, None, None].expand_as(multi_valid)

    # ---- (query, tile) pairs unsure of the threshold: per pixel, above or not
    unsure_pairs = torch.nonzero(unsure)
    t_query = unsure_pairs[:, 0]
    t_block = context.block(t_query, unsure_pairs[:, 1], unsure_pairs[:, 2], value=False)
    t_above = (t_block.thresholded >= mask_threshold) & t_block.valid
    t_doubt = t_block.valid & ((t_block.thresholded - mask_threshold).abs() <= t_block.thr_slack)
    item = torch.nonzero(t_doubt)
    if item.numel():
        pair = item[:, 0]
        exact = context.exact(
            t_query[pair], t_block.out_row[pair, item[:, 1]], t_block.out_col[pair, item[:, 2]]
        )
        t_above[pair, item[:, 1], item[:, 2]] = exact.thresholded >= mask_threshold
    above_area = above_area.index_add(0, t_query, t_above.flatten(1).sum(dim=1))
    return SparseAssignment(
        size=size,
        num=num,
        above_area=above_area,
        tile_index=geo.tile_index,
        tile_winner=tile_winner,
        tile_pixels=tile_pixels,
        single=used & ~multi,
        surely_above=surely_above,
        multi_tiles=multi_tiles,
        multi_winner=winner_block,
        multi_valid=multi_valid,
        pixel_winner=winner_block.reshape(-1)[real],
        pixel_out=multi_out.reshape(-1)[real],
        pixel_tile=multi_tile.reshape(-1)[real],
        unsure_pairs=unsure_pairs,
        unsure_above=t_above,
        unsure_valid=t_block.valid,
        unsure_out=t_block.out_row[:, :, None] * out_width + t_block.out_col[:, None, :],
    )


class _Bounds(NamedTuple):
    """``[N, T_rows, T_cols]`` bounds of the activated values of each query in each tile."""

    prob_high: torch.Tensor
    prob_low: torch.Tensor


def _window_extrema(values: torch.Tensor, dim: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum and minimum along ``dim`` over the windows ``[t * tile, t * tile + tile]`` (clamped
    to the last index) for ``t = 0 .. ceil(L / tile) - 1``."""
    length = values.shape[dim]
    full = (length - 1) // tile  # windows that fit; exactly one more (the last, clamped) follows
    windows = values.narrow(dim, 0, full * tile + 1).unfold(dim, tile + 1, tile) if full else None
    tail = values.narrow(dim, full * tile, length - full * tile)
    tail_high, tail_low = tail.amax(dim=dim, keepdim=True), tail.amin(dim=dim, keepdim=True)
    if windows is None:
        return tail_high, tail_low
    high = torch.cat((windows.amax(dim=-1), tail_high), dim=dim)
    low = torch.cat((windows.amin(dim=-1), tail_low), dim=dim)
    return high, low


def _tile_bounds(source: torch.Tensor, tile: int, activation: Activation, eps: float) -> _Bounds:
    """Minimum and maximum over each tile's ``(tile + 1) x (tile + 1)`` source window (the tile and
    its next row and column), through the activation, widened by the rounding margin ``eps``."""
    row_high, row_low = _window_extrema(source, 1, tile)
    high = _window_extrema(row_high, 2, tile)[0]
    low = _window_extrema(row_low, 2, tile)[1]
    if activation == "sigmoid":
        # logits: an absolute margin for the interpolation's rounding, then the monotone sigmoid
        margin = eps * torch.maximum(high.abs(), low.abs())
        return _Bounds((high + margin).sigmoid() * (1 + eps), (low - margin).sigmoid() * (1 - eps))
    # probabilities are >= 0: a relative margin
    return _Bounds(high * (1 + eps), low * (1 - eps))


def _reduce(
    values: torch.Tensor, index: torch.Tensor, size: int, how: str, initial: float | int
) -> torch.Tensor:
    """Reduce ``[P, ...]`` rows into ``[size, ...]`` by ``index`` (``amax``/``amin``)."""
    flat = values.flatten(1)
    out = torch.full((size, flat.shape[1]), initial, dtype=values.dtype, device=values.device)
    out.scatter_reduce_(0, index[:, None].expand_as(flat), flat, how, include_self=True)
    return out.view(size, *values.shape[1:])


class _Block(NamedTuple):
    """Values of (query, tile) pairs on their blocks of output pixels (``[P, R, C]`` each).

    ``value``: score x probability; ``slack``: how far it may be from the kernel's (None when not
    computed); ``thresholded`` and ``thr_slack`` likewise for the thresholded value; ``valid``: the
    block position exists; ``out_row`` ``[P, R]`` / ``out_col`` ``[P, C]``: output coordinates
    (clamped where invalid).
    """

    value: torch.Tensor
    slack: torch.Tensor
    thresholded: torch.Tensor
    thr_slack: torch.Tensor
    valid: torch.Tensor
    out_row: torch.Tensor
    out_col: torch.Tensor


class _Exact(NamedTuple):
    """Exact per-item values (1-D): score x probability, and the thresholded value."""

    value: torch.Tensor
    thresholded: torch.Tensor


@dataclass(frozen=True)
class _Context:
    """The inputs of one :func:`assign_sparse` call and the two ways to evaluate pixels."""

    source: torch.Tensor
    scores: torch.Tensor
    size: tuple[int, int]
    activation: Activation
    threshold_scored: bool
    geo: Geometry
    eps: float

    def block(
        self, query: torch.Tensor, tile_row: torch.Tensor, tile_col: torch.Tensor, *, value: bool = True
    ) -> _Block:
        """Plain float32 values of the pairs ``(query, tile)`` on their output blocks.

        Computed separably: first along the columns for the tile's ``tile + 1`` source rows, then
        along the rows, which is the same arithmetic, in the same order, as pixel by pixel.
        """
        rows, cols = self.geo.rows, self.geo.cols
        _, height, width = self.source.shape
        tile = self.geo.tile
        flat = self.source.reshape(-1)
        out_row = rows.block_index[tile_row]  # [P, R]
        out_col = cols.block_index[tile_col]  # [P, C]
        window = (tile_row[:, None] * tile + torch.arange(tile + 1, device=tile_row.device)).clamp(
            max=height - 1
        )
        left, right = cols.first[out_col], cols.second[out_col]  # [P, C]
        base = (query * (height * width))[:, None, None] + (window * width)[:, :, None]  # [P, K + 1, 1]
        c0, c1 = cols.w_first[out_col][:, None, :], cols.w_second[out_col][:, None, :]
        horizontal = flat[base + left[:, None, :]] * c0 + flat[base + right[:, None, :]] * c1  # [P, K + 1, C]
        first = (rows.first[out_row] - tile_row[:, None] * tile).clamp(0, tile)  # [P, R] into the window
        second = (rows.second[out_row] - tile_row[:, None] * tile).clamp(0, tile)
        columns = horizontal.shape[2]
        upper = horizontal.gather(1, first[:, :, None].expand(-1, -1, columns))
        lower = horizontal.gather(1, second[:, :, None].expand(-1, -1, columns))
        resized = upper * rows.w_first[out_row][:, :, None] + lower * rows.w_second[out_row][:, :, None]
        prob = activate(resized, self.activation)
        score = self.scores[query][:, None, None]
        # distance to the kernel's value: the interpolation's rounding (through the sigmoid's
        # slope, at most 1/4, for logits), the activation's and the product's
        prob_slack = self.eps * (prob + resized.abs()) if self.activation == "sigmoid" else self.eps * prob
        scored = prob * score if (value or self.threshold_scored) else prob
        slack = prob_slack * score if (value or self.threshold_scored) else prob_slack
        valid = rows.block_valid[tile_row][:, :, None] & cols.block_valid[tile_col][:, None, :]
        return _Block(
            value=scored,
            slack=slack,
            thresholded=scored if self.threshold_scored else prob,
            thr_slack=slack if self.threshold_scored else prob_slack,
            valid=valid,
            out_row=out_row,
            out_col=out_col,
        )

    def exact(self, query: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> _Exact:
        """The kernel's values at output pixels ``(row, col)`` of queries ``query`` (``[K]`` each):
        by the calibrated formula where it is exact, else by resizing those queries' masks."""
        geo = self.geo
        rows, cols = geo.rows, geo.cols
        _, height, width = self.source.shape
        flat = self.source.reshape(-1)
        top = query * (height * width) + rows.first[row] * width
        bottom = query * (height * width) + rows.second[row] * width
        left, right = cols.first[col], cols.second[col]
        corners = _Corners(flat[top + left], flat[top + right], flat[bottom + left], flat[bottom + right])
        weights = (rows.w_first[row], rows.w_second[row], cols.w_first[col], cols.w_second[col])
        resized = _formula(max(geo.formula, 0), corners, weights)
        if geo.formula >= 0:
            inexact = ~(geo.exact_rows[row] & geo.exact_cols[col])
        else:
            inexact = torch.ones_like(row, dtype=torch.bool)
        redo = torch.unique(query[inexact])
        if redo.numel():
            dense = resize(self.source[redo], self.size)
            slot = torch.full((self.source.shape[0],), -1, dtype=torch.int64, device=query.device)
            slot[redo] = torch.arange(redo.numel(), device=query.device)
            resized = torch.where(inexact, dense[slot[query].clamp(min=0), row, col], resized)
        prob = activate(resized, self.activation)
        value = prob * self.scores[query]
        return _Exact(value=value, thresholded=value if self.threshold_scored else prob)
