"""Mask-classification (MaskFormer, Mask2Former, OneFormer) panoptic fusion, vectorized for any device.

The network gives, per image, class logits ``[Q, K + 1]`` (Q queries, K classes, the last column
"no object") and mask logits ``[Q, h, w]`` at a reduced resolution (a quarter of the input for
Mask2Former). Fusion turns them into a panoptic map at ``output_size`` (``H x W``):

1. **Query selection** (:func:`select_queries`): ``score, label = softmax(class_logits).max(-1)``
   over all ``K + 1`` columns; a query is kept when its label is not "no object" and
   ``score > object_threshold`` (strictly).
2. **Pixel assignment** (:func:`assign_pixels`): each pixel goes to the selected query with the
   largest ``score x mask probability`` (the first query on exact ties, as :func:`torch.argmax`).
3. **Overlap filter**: a query becomes a segment only when enough of its own mask survives the
   assignment (see the modes).
4. **Merge**: stuff of one class becomes one segment; every thing query keeps its own id.

Two modes (``MaskClassificationParams.mode``):

``"mask2former"`` — the rules of the Mask2Former paper's code (``panoptic_inference``):
mask logits are upsampled bilinearly (half-pixel centers) to ``H x W`` *before* the sigmoid;
``p = sigmoid(upsampled logits)``; pixels go to ``argmax_q score_q * p_q``; with ``area_q`` the pixels
won by q and ``original_q = #(p_q >= mask_threshold)`` (the *unscored* probability), the query is
dropped when ``area_q == 0``, ``original_q == 0``, ``area_q / original_q < overlap_threshold`` or no
won pixel has ``p_q >= mask_threshold``; a kept query paints only the pixels it won **and** where
``p_q >= mask_threshold``. Stuff queries of one class share the first one's segment. The paper's
defaults: object threshold 0.8, overlap 0.8, mask threshold 0.5.

``"transformers"`` — reproduces ``post_process_panoptic_segmentation`` of the Hugging Face
``transformers`` image processors (Mask2Former, MaskFormer, OneFormer; checked against 4.57) for the
same logits and arguments, pixel for pixel and id for id. Its differences from the paper:

* Mask2Former's processor first resizes the mask logits to 384 x 384 (``intermediate_height`` /
  ``intermediate_width``; MaskFormer and OneFormer do not), applies the sigmoid there, and then
  resizes the *probabilities* (not the logits) to the target size.
* ``original_q`` counts ``score_q * p_q >= mask_threshold`` (the *scored* probability).
* The area ratio is computed in float32 and a query is kept only when ``area / original >
  overlap_threshold`` (strictly; the paper keeps ``>=``); a kept query paints every pixel it won,
  also those with ``p < mask_threshold``.
* Only classes in ``label_ids_to_fuse`` are merged (here: every stuff class with ``fuse_stuff``, none
  without). Segment ids count kept queries, but after a fused class repeats, the counter restarts
  from that class's id, so a later segment can get an id already in use (two segments, one id);
  :attr:`MaskClassificationOutput.segment_id_map` and :func:`transformers_result` reproduce that,
  while :attr:`MaskClassificationOutput.panoptic` keeps such segments apart.
* Its defaults are object threshold 0.5, overlap 0.8, mask threshold 0.5; without
  ``target_sizes`` the map stays at the mask resolution (384 x 384 for Mask2Former).

Computation (both give the same result):

* ``dense``: the ``[N, H, W]`` upsampled masks of the N selected queries, one argmax. Used on CUDA
  and for small outputs.
* ``sparse`` (the CPU default for large upsampled outputs,
  :mod:`panoptic_ros.fusion.upsampled_argmax`): per tile of source pixels and query, the minimum and
  maximum of the source values bound every upsampled value, so most tiles have one possible winner
  and most queries are surely above or below the mask threshold there; only the other (tile,
  query) pairs are evaluated per pixel, with PyTorch's own interpolation weights, and decisions
  within rounding distance are recomputed exactly. Bit for bit the dense result in transformers
  mode; in mask2former mode up to the last bit of PyTorch's sigmoid, which PyTorch itself computes
  differently in its vectorized and scalar code paths.

Device syncs: a fixed number per frame (the number of selected queries, of uncertain tiles and
pairs, of segments), never one per query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from panoptic_ros.core.ids import DEFAULT_LABEL_DIVISOR, VOID_PANOPTIC
from panoptic_ros.core.params import check_choice, check_int, check_number, from_mapping
from panoptic_ros.core.segments import PixelFrame, geometry_from_histograms
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion.center_offset import FusionInputError, SegmentStats, thing_class_mask
from panoptic_ros.fusion.upsampled_argmax import Activation, SparseAssignment, activate, assign_sparse, resize

FusionMode = Literal["mask2former", "transformers"]
AssignStrategy = Literal["auto", "dense", "sparse"]

MODES: tuple[str, ...] = ("mask2former", "transformers")

#: The size Mask2Former's transformers image processor resizes mask logits to before the sigmoid.
TRANSFORMERS_MASK2FORMER_SIZE = (384, 384)

#: The sparse strategy is chosen (on the CPU) when the output has at least this many times the
#: pixels of the mask logits and at least this many query-pixels; below, dense is as fast.
SPARSE_MIN_UPSAMPLING = 4
SPARSE_MIN_ELEMENTS = 2**20


# --------------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class MaskClassificationParams:
    """Thresholds and rules of mask-classification fusion; the defaults are Mask2Former's.

    Attributes:
        mode: ``"mask2former"`` (the paper's rules) or ``"transformers"`` (the Hugging Face
            ``post_process_panoptic_segmentation`` rules); see the module docstring.
        object_threshold: a query is selected when its class score is strictly above it.
        mask_threshold: a mask probability (scored in ``transformers`` mode) at or above it is "on".
        overlap_threshold: the fraction of a query's "on" pixels it must win to become a segment.
        intermediate_height: ``transformers`` mode: resize the mask logits to this size before the
            sigmoid (384 for Mask2Former's processor); 0 = no intermediate resize.
        intermediate_width: see ``intermediate_height``.
        fuse_stuff: ``transformers`` mode: merge the queries of each stuff class into one segment
            id (``label_ids_to_fuse`` = the stuff classes); False = ``label_ids_to_fuse=None``.
        label_divisor: panoptic id = class * label_divisor + instance number.
    """

    mode: str = "mask2former"
    object_threshold: float = 0.8
    mask_threshold: float = 0.5
    overlap_threshold: float = 0.8
    intermediate_height: int = 0
    intermediate_width: int = 0
    fuse_stuff: bool = True
    label_divisor: int = DEFAULT_LABEL_DIVISOR

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        for name in ("object_threshold", "mask_threshold", "overlap_threshold"):
            check_number(name, getattr(self, name))
        for name in ("intermediate_height", "intermediate_width"):
            check_int(name, getattr(self, name), minimum=0)
        if (self.intermediate_height == 0) != (self.intermediate_width == 0):
            raise ConfigError(
                "intermediate_height and intermediate_width must both be 0 or both positive, got "
                f"{self.intermediate_height} x {self.intermediate_width}"
            )
        if self.intermediate_height and self.mode != "transformers":
            raise ConfigError(
                "an intermediate mask size is a transformers-mode rule; set mode='transformers'"
            )
        if not isinstance(self.fuse_stuff, bool):
            raise ConfigError(f"fuse_stuff must be true or false, got {self.fuse_stuff!r}")
        check_int("label_divisor", self.label_divisor, minimum=1)

    @property
    def intermediate_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the intermediate resize, or None."""
        if self.intermediate_height == 0:
            return None
        return (self.intermediate_height, self.intermediate_width)

    @classmethod
    def transformers(cls, model_type: str, **overrides: Any) -> MaskClassificationParams:
        """The defaults of ``post_process_panoptic_segmentation`` for a transformers model type
        (``mask2former``, ``maskformer``, ``oneformer``): thresholds 0.5 / 0.5 / 0.8, and the
        384 x 384 intermediate size for Mask2Former."""
        size = TRANSFORMERS_MASK2FORMER_SIZE if model_type == "mask2former" else (0, 0)
        defaults: dict[str, Any] = {
            "mode": "transformers",
            "object_threshold": 0.5,
            "mask_threshold": 0.5,
            "overlap_threshold": 0.8,
            "intermediate_height": size[0],
            "intermediate_width": size[1],
        }
        return cls(**{**defaults, **overrides})

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> MaskClassificationParams:
        """Defaults overridden by the fusion thresholds of a model spec.

        Raises:
            ConfigError: a key is not a field (the message lists the valid ones) or a value is bad.
        """
        return from_mapping(cls, spec, "mask-classification fusion")


# --------------------------------------------------------------------------------------------------
# records


class QuerySelection(NamedTuple):
    """The N queries that pass the class-score filter, in query order.

    Attributes:
        queries: ``[N]`` int64 query index.
        scores: ``[N]`` float32 softmax score of the predicted class.
        classes: ``[N]`` int64 predicted class (never "no object").
    """

    queries: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


@dataclass(frozen=True)
class DenseAssignment:
    """Which selected query each pixel goes to, as full maps (N selected queries).

    Attributes:
        winner: ``[H, W]`` int64 index (into the N selected queries) of the largest score x mask
            probability, the first on exact ties.
        winner_above: ``[H, W]`` bool, whether the winner's thresholded value (scored or not, see
            :func:`assign_pixels`) is at or above the mask threshold.
        above_area: ``[N]`` int64 pixel count of each query's thresholded value at or above it.
    """

    winner: torch.Tensor
    winner_above: torch.Tensor
    above_area: torch.Tensor

    def counts(self) -> torch.Tensor:
        """``[N]`` int64 pixels won by each query."""
        return torch.bincount(self.winner.reshape(-1), minlength=self.above_area.numel())

    def painted_counts(self) -> torch.Tensor:
        """``[N]`` int64 pixels won by each query where it is at or above the threshold."""
        return torch.bincount(self.winner[self.winner_above], minlength=self.above_area.numel())

    def paint(self, if_above: torch.Tensor, if_below: torch.Tensor | None = None) -> torch.Tensor:
        """``[H, W]`` map of ``table[winner]``, the table chosen by ``winner_above`` (one table for
        both when ``if_below`` is None)."""
        painted = torch.take(if_above, self.winner)
        if if_below is None:
            return painted
        return torch.where(self.winner_above, painted, torch.take(if_below, self.winner))


#: A pixel assignment: full maps (dense) or tiles plus overrides (sparse); both have ``winner``,
#: ``winner_above``, ``above_area``, ``counts()``, ``painted_counts()`` and ``paint()``.
PixelAssignment = DenseAssignment | SparseAssignment


class KeptQueries(NamedTuple):
    """The selected queries that became (part of) a segment, in query order (M of them).

    Attributes:
        queries: ``[M]`` int64 query index.
        classes: ``[M]`` int64 class.
        scores: ``[M]`` float32 class score.
        ids: ``[M]`` int64 segment id in the mode's own numbering (see ``segment_id_map``).
        fused: ``[M]`` bool, whether the class's queries share one id (stuff).
    """

    queries: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    ids: torch.Tensor
    fused: torch.Tensor


class MaskClassificationOutput(NamedTuple):
    """Result of :func:`fuse_mask_classification`; every tensor is on the input's device.

    Attributes:
        panoptic: ``[H, W]`` int64 ``class * label_divisor + n`` for the n-th thing segment of a
            class (in query order), ``class * label_divisor`` for stuff, -1 for void.
        instance: ``[H, W]`` int32 thing segment number ``1..T``, 0 for stuff and void.
        segment_id_map: ``[H, W]`` int32 segment ids numbered like the mode's reference code (the
            ``segmentation`` of ``post_process_panoptic_segmentation`` in ``transformers`` mode,
            ``panoptic_seg`` of Mask2Former's ``panoptic_inference`` otherwise), 0 = none.
        segments: per-segment statistics, things first (query order), then stuff (class order);
            thing segment ``i`` is ``instance == i + 1``. Scores: the query's class score; for
            stuff the largest of its queries'.
        segment_queries: ``[S]`` int64 the query of each segment (the first one for stuff).
        kept: the queries that became segments.
        num_selected: how many queries passed the class-score filter.
    """

    panoptic: torch.Tensor
    instance: torch.Tensor
    segment_id_map: torch.Tensor
    segments: SegmentStats
    segment_queries: torch.Tensor
    kept: KeptQueries
    num_selected: int


# --------------------------------------------------------------------------------------------------
# query selection and pixel assignment


def select_queries(class_logits: torch.Tensor, object_threshold: float) -> QuerySelection:
    """Softmax over the ``K + 1`` columns of ``[Q, K + 1]`` logits; keep the queries whose best
    column is not the last ("no object") and whose score is ``> object_threshold``.

    One device sync (the number of kept queries).
    """
    if class_logits.dim() != 2 or class_logits.shape[1] < 2 or not class_logits.is_floating_point():
        raise FusionInputError(
            f"class logits must be a float [Q, K + 1] tensor (K >= 1 classes plus 'no object'), got "
            f"{class_logits.dtype} of shape {tuple(class_logits.shape)}"
        )
    no_object = class_logits.shape[1] - 1
    scores, labels = F.softmax(class_logits.float(), dim=-1).max(-1)
    queries = torch.nonzero(labels.ne(no_object) & (scores > object_threshold)).squeeze(1)
    return QuerySelection(queries, scores[queries], labels[queries])


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w]`` -> ``[N, H, W]`` bilinear with half-pixel centers (``align_corners=False``),
    the resize of Mask2Former and of transformers; the input itself when the size is unchanged."""
    return resize(masks, size)


def assign_pixels(
    source: torch.Tensor,
    scores: torch.Tensor,
    size: tuple[int, int],
    *,
    activation: Activation,
    mask_threshold: float,
    threshold_scored: bool,
    strategy: AssignStrategy = "auto",
) -> PixelAssignment:
    """Per-pixel argmax of ``score x activation(resize(source))`` and the mask-threshold counts.

    Args:
        source: ``[N, h, w]`` float, the masks of the N selected queries (logits for
            ``activation="sigmoid"``, probabilities for ``"identity"``).
        scores: ``[N]`` float32 class scores.
        size: ``(H, W)`` output size; ``source`` is resized bilinearly (half-pixel centers).
        activation: applied after the resize.
        mask_threshold: the "on" threshold of the thresholded value.
        threshold_scored: threshold ``score x probability`` (transformers) instead of the probability.
        strategy: ``dense``, ``sparse`` (see the module docstring) or ``auto`` (sparse on the CPU
            for large upsampled outputs, dense otherwise). Both give identical results.

    Returns:
        a :class:`DenseAssignment` or a :class:`~panoptic_ros.fusion.upsampled_argmax.SparseAssignment`
        (N must be at least 1); they answer the same questions identically.
    """
    if source.dim() != 3 or source.shape[0] != scores.shape[0] or source.shape[0] == 0:
        raise FusionInputError(
            f"source masks {tuple(source.shape)} and scores {tuple(scores.shape)} must be [N, h, w] "
            "and [N] with N >= 1"
        )
    if strategy not in ("auto", "dense", "sparse"):
        raise ConfigError(f"strategy={strategy!r} must be auto, dense or sparse")
    source = source.float()
    scores = scores.float()
    if strategy == "auto":
        height, width = size
        upsampling = height * width >= SPARSE_MIN_UPSAMPLING * source.shape[1] * source.shape[2]
        large = source.shape[0] * height * width >= SPARSE_MIN_ELEMENTS
        strategy = "sparse" if source.device.type == "cpu" and upsampling and large else "dense"
    if strategy == "dense":
        return _assign_dense(
            source,
            scores,
            size,
            activation=activation,
            mask_threshold=mask_threshold,
            threshold_scored=threshold_scored,
        )
    return assign_sparse(
        source,
        scores,
        size,
        activation=activation,
        mask_threshold=mask_threshold,
        threshold_scored=threshold_scored,
    )


def _assign_dense(
    source: torch.Tensor,
    scores: torch.Tensor,
    size: tuple[int, int],
    *,
    activation: Activation,
    mask_threshold: float,
    threshold_scored: bool,
) -> DenseAssignment:
    """All N upsampled masks at once: ``N x H x W`` floats (the reference computation)."""
    resized = resize_masks(source, size)
    prob = (
        resized.sigmoid_()
        if activation == "sigmoid" and resized is not source
        else activate(resized, activation)
    )
    values = prob * scores[:, None, None]
    # max(dim=0).indices returns the first maximal index, like argmax, and is faster on the CPU
    winner = values.max(dim=0).indices
    above = (values if threshold_scored else prob) >= mask_threshold
    return DenseAssignment(
        winner=winner,
        winner_above=above.gather(0, winner[None])[0],
        above_area=above.flatten(1).sum(dim=1),
    )


# --------------------------------------------------------------------------------------------------
# segments


def _transformers_ids(classes: torch.Tensor, fused: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Segment ids of ``compute_segments`` in transformers for the kept queries (``[M]``, in order).

    Its counter: a new segment gets ``current + 1``; a fused class seen before sets ``current`` to
    that class's id. So a non-repeating query's id is the id at the last repeat before it plus the
    new segments since, and a repeat's id is its class's first id: ``id = id[parent] + add`` over a
    tree (parents come earlier), summed by pointer jumping in ``log2(M)`` vectorized steps.
    """
    count = classes.numel()
    device = classes.device
    if count == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    position = torch.arange(count, device=device)
    first = torch.full((num_classes,), count, dtype=torch.int64, device=device)
    first = first.scatter_reduce(0, classes[fused], position[fused], "amin", include_self=True)
    repeat = fused & (first[classes] != position)
    new_count = torch.cumsum((~repeat).long(), 0)  # new segments up to and including each query
    last_repeat = torch.cummax(torch.where(repeat, position, torch.full_like(position, -1)), 0).values
    before = torch.cat((torch.full((1,), -1, dtype=torch.int64, device=device), last_repeat[:-1]))
    sentinel = count  # node "before everything", id 0
    new_before = torch.where(before >= 0, new_count[before.clamp(min=0)], torch.zeros_like(before))
    parent = torch.where(repeat, first[classes], torch.where(before >= 0, before, sentinel))
    add = torch.where(repeat, torch.zeros_like(new_count), new_count - new_before)
    parent = torch.cat((parent, torch.tensor([sentinel], device=device)))
    add = torch.cat((add, torch.zeros(1, dtype=torch.int64, device=device)))
    for _ in range(max(1, math.ceil(math.log2(count + 1)))):
        add = add + add[parent]
        parent = parent[parent]
    return add[:count]


def _mask2former_ids(classes: torch.Tensor, fused: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Segment ids of Mask2Former's ``panoptic_inference`` for the kept queries: a counter of new
    segments; a stuff class seen before reuses its first id."""
    count = classes.numel()
    position = torch.arange(count, device=classes.device)
    first = torch.full((num_classes,), count, dtype=torch.int64, device=classes.device)
    first = first.scatter_reduce(0, classes[fused], position[fused], "amin", include_self=True)
    repeat = fused & (first[classes] != position)
    new_count = torch.cumsum((~repeat).long(), 0)
    return torch.where(repeat, new_count[first[classes].clamp(max=max(count - 1, 0))], new_count)


def fuse_mask_classification(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: MaskClassificationParams | None = None,
    *,
    output_size: tuple[int, int] | None = None,
    strategy: AssignStrategy = "auto",
    frame: PixelFrame | None = None,
) -> MaskClassificationOutput:
    """Mask-classification panoptic fusion of one image's network outputs, on their device.

    Args:
        class_logits: ``[Q, K + 1]`` float, the last column "no object".
        mask_logits: ``[Q, h, w]`` float mask logits.
        thing_classes: the class indices (in ``[0, K)``) that are things, or a ``[K]`` bool mask.
        params: rules and thresholds; Mask2Former's when None.
        output_size: ``(H, W)`` of the result; default: the mask size (after the intermediate
            resize in transformers mode).
        strategy: pixel assignment strategy (see :func:`assign_pixels`).
        frame: measure the segments in the camera frame the maps are resampled into (see
            :mod:`panoptic_ros.core.segments`); None: at ``output_size``.

    Returns:
        :class:`MaskClassificationOutput`. For batched outputs use
        :func:`fuse_mask_classification_batch`.
    """
    params = params if params is not None else MaskClassificationParams()
    if mask_logits.dim() != 3 or mask_logits.shape[0] != class_logits.shape[0]:
        raise FusionInputError(
            f"mask logits must be [Q, h, w] with the Q of the class logits {tuple(class_logits.shape)}, "
            f"got shape {tuple(mask_logits.shape)}"
        )
    if not mask_logits.is_floating_point():
        raise FusionInputError(f"mask logits must be floating point, got {mask_logits.dtype}")
    if mask_logits.shape[0] >= params.label_divisor:
        raise ConfigError(
            f"{mask_logits.shape[0]} queries do not fit label_divisor={params.label_divisor}: "
            "instance numbers would overflow into the next class"
        )
    selection = select_queries(class_logits, params.object_threshold)
    num_classes = class_logits.shape[1] - 1
    device = mask_logits.device
    is_thing_class = thing_class_mask(thing_classes, num_classes, device)
    transformers = params.mode == "transformers"
    if transformers:
        masks = _transformers_probabilities(mask_logits, selection.queries, params.intermediate_size)
    else:
        masks = mask_logits[selection.queries].float()
    size = output_size if output_size is not None else (int(masks.shape[1]), int(masks.shape[2]))
    num = selection.queries.numel()
    if num == 0:
        return _empty_output(size, device)

    # transformers: probabilities resized and thresholded after scoring; Mask2Former: logits
    # resized, then the sigmoid, thresholded unscored (and the winner's threshold decides painting)
    assignment = assign_pixels(
        masks,
        selection.scores,
        size,
        activation="identity" if transformers else "sigmoid",
        mask_threshold=params.mask_threshold,
        threshold_scored=transformers,
        strategy=strategy,
    )
    areas = assignment.counts()
    above = assignment.above_area
    query_index = torch.arange(num, device=device)
    if transformers:
        exists = (areas > 0) & (above > 0)
        # transformers divides the two int64 counts (a float32 result) and compares as a Python float
        ratio = torch.true_divide(areas, above.clamp(min=1)).double()
        keep = exists & (ratio > params.overlap_threshold)
        # the query painted at each pixel (num for none): every pixel a kept query won
        pixel_query = assignment.paint(torch.where(keep, query_index, num))
    else:
        painted_area = assignment.painted_counts()
        ratio = areas.double() / above.clamp(min=1).double()
        keep = (areas > 0) & (above > 0) & (painted_area > 0) & ~(ratio < params.overlap_threshold)
        # ... and only where its probability reaches the mask threshold
        pixel_query = assignment.paint(torch.where(keep, query_index, num), torch.full_like(query_index, num))
    is_thing = is_thing_class[selection.classes]
    fused = ~is_thing if (params.fuse_stuff or not transformers) else torch.zeros_like(is_thing)

    kept_index = torch.nonzero(keep).squeeze(1)
    kept_classes = selection.classes[kept_index]
    kept_fused = fused[kept_index]
    id_rule = _transformers_ids if transformers else _mask2former_ids
    kept_ids = id_rule(kept_classes, kept_fused, num_classes)
    mode_id = torch.zeros(num + 1, dtype=torch.int32, device=device)
    mode_id[kept_index] = kept_ids.to(torch.int32)

    segments, segment_of_query, segment_queries, num_things = _segments(
        selection, keep, is_thing, num_classes, params.label_divisor
    )
    num_segments = segments.ids.numel()
    # per-query pixel counts by row and column, summed into the segments (stuff queries merge)
    height, width = size
    # (with a frame, a pixel counts as the camera pixels that copy it: see core.segments)
    ones = torch.ones((), dtype=torch.int64, device=device).expand(height, width)
    row_weights = frame.cols.weight[None, :].expand(height, width) if frame is not None else ones
    col_weights = frame.rows.weight[:, None].expand(height, width) if frame is not None else ones
    row_hist = torch.zeros(height, num + 1, dtype=torch.int64, device=device).scatter_add_(
        1, pixel_query, row_weights
    )
    col_hist = torch.zeros(num + 1, width, dtype=torch.int64, device=device).scatter_add_(
        0, pixel_query, col_weights
    )
    segment_of = torch.cat((segment_of_query, torch.full((1,), num_segments, device=device)))  # [num + 1]
    segment_rows = torch.zeros(num_segments + 1, height, dtype=torch.int64, device=device)
    segment_cols = torch.zeros(num_segments + 1, width, dtype=torch.int64, device=device)
    segment_rows.index_add_(0, segment_of, row_hist.T)
    segment_cols.index_add_(0, segment_of, col_hist)
    geometry = geometry_from_histograms(segment_rows[:num_segments], segment_cols[:num_segments], frame)
    void = torch.full((1,), VOID_PANOPTIC, dtype=torch.int64, device=device)
    panoptic_of = torch.cat((segments.ids, void))[segment_of]
    instance_of = torch.where(segment_of < num_things, segment_of + 1, 0).to(torch.int32)
    return MaskClassificationOutput(
        panoptic=torch.take(panoptic_of, pixel_query),
        instance=_lookup(instance_of, pixel_query),
        segment_id_map=_lookup(mode_id, pixel_query),
        segments=segments._replace(
            areas=geometry.areas, bboxes=geometry.bboxes, centroids=geometry.centroids
        ),
        segment_queries=segment_queries,
        kept=KeptQueries(
            queries=selection.queries[kept_index],
            classes=kept_classes,
            scores=selection.scores[kept_index],
            ids=kept_ids,
            fused=kept_fused,
        ),
        num_selected=num,
    )


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a small table and a large index map (``index_select``, the fastest form)."""
    return torch.index_select(table, 0, index.reshape(-1)).view(index.shape)


def _transformers_probabilities(
    mask_logits: torch.Tensor, queries: torch.Tensor, intermediate: tuple[int, int] | None
) -> torch.Tensor:
    """``[N, h', w']`` probabilities of the selected queries exactly as transformers computes them.

    transformers resizes all Q masks (to 384 x 384 for Mask2Former) and applies the sigmoid to the
    whole ``Q x h' x w'`` tensor. The resize of one mask does not depend on the others, so only the
    selected ones are resized; but PyTorch's sigmoid may round an element differently depending on
    where it falls in the tensor (vectorized body or scalar remainder), so the sigmoid runs on a
    tensor of transformers' shape, holding the selected masks at their places (the others zero).
    """
    logits = mask_logits.float()
    if intermediate is None:
        probs = logits.sigmoid()
    elif queries.numel() == 0:
        return logits.new_zeros(0, *intermediate)
    else:
        probs = torch.zeros(logits.shape[0], *intermediate, device=logits.device)
        probs[queries] = resize_masks(logits[queries], intermediate)
        probs.sigmoid_()
    return probs[queries]


def _segments(
    selection: QuerySelection,
    keep: torch.Tensor,
    is_thing: torch.Tensor,
    num_classes: int,
    label_divisor: int,
) -> tuple[SegmentStats, torch.Tensor, torch.Tensor, int]:
    """The segment list (things by query, then stuff by class) without the geometry, each selected
    query's segment index (S for none), each segment's query, and the thing count T."""
    device = keep.device
    classes = selection.classes
    kept_thing = keep & is_thing
    kept_stuff = keep & ~is_thing
    stuff_present = torch.zeros(num_classes, dtype=torch.bool, device=device)
    stuff_present[classes[kept_stuff]] = True
    num_things, num_stuff = (int(v) for v in torch.stack((kept_thing.sum(), stuff_present.sum())).tolist())
    num_segments = num_things + num_stuff
    thing_rank = torch.cumsum(kept_thing.long(), 0) - 1
    stuff_rank = torch.cumsum(stuff_present.long(), 0) - 1
    segment_of_query = torch.where(
        kept_thing,
        thing_rank,
        torch.where(kept_stuff, num_things + stuff_rank[classes], torch.full_like(classes, num_segments)),
    )
    # instance number of a thing: its rank among the kept things of its class
    one_hot = F.one_hot(classes, num_classes).bool() & kept_thing[:, None]
    number = torch.cumsum(one_hot.long(), 0).gather(1, classes[:, None]).squeeze(1)
    query_ids = torch.where(is_thing, classes * label_divisor + number, classes * label_divisor)

    segment_ids = torch.zeros(num_segments + 1, dtype=torch.int64, device=device)
    segment_ids[segment_of_query] = query_ids  # stuff queries of a class write the same id
    segment_classes = torch.zeros(num_segments + 1, dtype=torch.int64, device=device)
    segment_classes[segment_of_query] = classes
    scores = torch.full((num_segments + 1,), -math.inf, device=device)
    scores = scores.scatter_reduce(0, segment_of_query, selection.scores, "amax", include_self=True)
    large = torch.iinfo(torch.int64).max
    queries = torch.full((num_segments + 1,), large, dtype=torch.int64, device=device)
    queries = queries.scatter_reduce(0, segment_of_query, selection.queries, "amin", include_self=True)
    empty = torch.zeros(num_segments, dtype=torch.int64, device=device)
    stats = SegmentStats(
        ids=segment_ids[:num_segments],
        classes=segment_classes[:num_segments],
        is_thing=torch.arange(num_segments, device=device) < num_things,
        areas=empty,
        bboxes=empty[:, None].expand(num_segments, 4),
        centroids=torch.zeros(num_segments, 2, device=device),
        scores=scores[:num_segments].float(),
    )
    return stats, segment_of_query, queries[:num_segments], num_things


def _empty_output(size: tuple[int, int], device: torch.device) -> MaskClassificationOutput:
    height, width = size
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return MaskClassificationOutput(
        panoptic=torch.full((height, width), VOID_PANOPTIC, dtype=torch.int64, device=device),
        instance=torch.zeros(height, width, dtype=torch.int32, device=device),
        segment_id_map=torch.zeros(height, width, dtype=torch.int32, device=device),
        segments=SegmentStats(
            ids=empty,
            classes=empty,
            is_thing=torch.zeros(0, dtype=torch.bool, device=device),
            areas=empty,
            bboxes=empty.view(0, 4),
            centroids=torch.zeros(0, 2, device=device),
            scores=torch.zeros(0, device=device),
        ),
        segment_queries=empty,
        kept=KeptQueries(empty, empty, torch.zeros(0, device=device), empty, empty.bool()),
        num_selected=0,
    )


def fuse_mask_classification_batch(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    thing_classes: Sequence[int] | torch.Tensor,
    params: MaskClassificationParams | None = None,
    *,
    output_size: tuple[int, int] | None = None,
    strategy: AssignStrategy = "auto",
) -> list[MaskClassificationOutput]:
    """:func:`fuse_mask_classification` for each image of ``[B, Q, K + 1]`` / ``[B, Q, h, w]``."""
    if class_logits.dim() != 3 or mask_logits.dim() != 4 or class_logits.shape[0] != mask_logits.shape[0]:
        raise FusionInputError(
            f"batched class logits {tuple(class_logits.shape)} and mask logits {tuple(mask_logits.shape)} "
            "must be [B, Q, K + 1] and [B, Q, h, w]"
        )
    return [
        fuse_mask_classification(
            class_logits[i], mask_logits[i], thing_classes, params, output_size=output_size, strategy=strategy
        )
        for i in range(class_logits.shape[0])
    ]


def transformers_result(
    output: MaskClassificationOutput, size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The result in the form ``post_process_panoptic_segmentation`` returns for one image:
    ``{"segmentation": [H, W] int32 ids (a float -1 map when no query passed the score filter),
    "segments_info": [{"id", "label_id", "was_fused", "score"}, ...]}`` (one entry per kept query,
    scores rounded to 6 decimals). Meaningful for ``mode="transformers"``."""
    if output.num_selected == 0:
        height, width = size if size is not None else tuple(output.segment_id_map.shape)
        return {"segmentation": torch.zeros((height, width)) - 1, "segments_info": []}
    kept = output.kept
    rows = zip(
        kept.ids.tolist(), kept.classes.tolist(), kept.fused.tolist(), kept.scores.tolist(), strict=True
    )
    return {
        "segmentation": output.segment_id_map,
        "segments_info": [
            {"id": int(i), "label_id": int(c), "was_fused": bool(f), "score": round(float(s), 6)}
            for i, c, f, s in rows
        ],
    }
