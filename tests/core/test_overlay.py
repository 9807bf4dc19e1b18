"""The overlay decided at the map's resolution equals the overlay of the camera-size map, and both equal a
straightforward per-pixel blend (up to rounding), for stretched and letterboxed frames of any size."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.overlay import BORDER, OverlayPainter, overlay, tracked_display_map
from panoptic_ros.core.preprocess import pixel_frame, plan
from panoptic_ros.errors import ConfigError
from panoptic_ros.models.spec import load_spec
from panoptic_ros.resources import default_model

DIVISOR = 1000


@pytest.fixture(scope="module")
def label_set() -> LabelSet:
    return load_spec(default_model()).label_set


def random_panoptic(
    rng: np.random.Generator, shape: tuple[int, int], label_set: LabelSet, void: float = 0.1
) -> np.ndarray:
    """Blocky maps (segments a few pixels wide) with stuff, numbered things and a share of void blocks."""
    ids = [c.id for c in label_set.categories]
    coarse = (shape[0] // 4 + 1, shape[1] // 4 + 1)
    category = rng.choice(ids, size=coarse)
    number = rng.integers(0, 4, size=coarse)
    labels = category * DIVISOR + number
    labels[rng.random(coarse) < void] = -1
    labels[rng.integers(coarse[0]), rng.integers(coarse[1])] = -1  # some void, always
    return np.kron(labels, np.ones((4, 4), dtype=np.int64))[: shape[0], : shape[1]]


def reference(
    image: np.ndarray, panoptic: np.ndarray, label_set: LabelSet, alpha: float = 0.55
) -> np.ndarray:
    """Every camera pixel on its own: category color shaded per instance, blended, borders white."""
    lut = np.asarray(label_set.color_lut, dtype=np.float64)
    out = image.astype(np.float64).copy()
    height, width = panoptic.shape
    for y in range(height):
        for x in range(width):
            value = panoptic[y, x]
            if value >= 0:
                number = value % DIVISOR
                shade = 0.75 + 0.5 * ((number * 0.618034) % 1.0) if number > 0 else 1.0
                color = np.clip(np.rint(lut[min(value // DIVISOR, len(lut) - 1)] * shade), 0, 255)
                out[y, x] = image[y, x] * (1 - alpha) + color * alpha
            above = y > 0 and panoptic[y - 1, x] != value
            left = x > 0 and panoptic[y, x - 1] != value
            if above or left:
                out[y, x] = BORDER
    return np.rint(out).astype(np.uint8)


@pytest.mark.parametrize("void", [0.2, 0.01], ids=["much-void", "little-void"])
@pytest.mark.parametrize("mode", ["resize", "letterbox"])
@pytest.mark.parametrize("camera", [(48, 64), (30, 41), (13, 17), (64, 100)])
def test_overlay_at_model_resolution_equals_the_camera_size_overlay(
    label_set: LabelSet, mode: str, camera: tuple[int, int], void: float
) -> None:
    rng = np.random.default_rng(camera[0] * 7 + len(mode))
    model = (24, 40)
    panoptic = random_panoptic(rng, model, label_set, void)
    share = (panoptic < 0).mean()
    assert share > 0.05 if void > 0.05 else 0 < share <= 0.05, "much and little void are tested"
    image = rng.integers(0, 256, size=(*camera, 3), dtype=np.uint8)
    frame = pixel_frame(plan(camera, model, mode), model, torch.device("cpu"))  # type: ignore[arg-type]
    in_camera = frame.expand(panoptic)
    assert np.array_equal(in_camera, frame.resample(torch.from_numpy(panoptic)).numpy())
    fast = overlay(image, panoptic, label_set, frame=frame, label_divisor=DIVISOR)
    direct = overlay(image, in_camera, label_set, label_divisor=DIVISOR)
    swapped = overlay(image, panoptic, label_set, frame=frame, label_divisor=DIVISOR, swap=True)
    assert np.array_equal(swapped, fast[..., ::-1]), "an RGB image gives the BGR picture"
    bgr_image = np.ascontiguousarray(image[..., ::-1])
    from_bgr = overlay(bgr_image, panoptic, label_set, frame=frame, label_divisor=DIVISOR, order="bgr")
    assert np.array_equal(from_bgr, swapped), "a BGR image gives the same BGR picture, without a swap"
    for cuts in ((camera[0] // 3,), (1, camera[0] // 2, camera[0] - 1)):  # bands painted apart, last first
        bounds = [0, *cuts, camera[0]]
        painter = OverlayPainter(image, panoptic, label_set, frame=frame, label_divisor=DIVISOR, swap=True)
        for start, stop in reversed(list(itertools.pairwise(bounds))):
            painter.paint(start, stop)
        assert np.array_equal(painter.picture, swapped), f"bands split at {cuts} make the whole picture"
    assert fast.shape == (*camera, 3) and fast.dtype == np.uint8
    assert np.array_equal(fast, direct)
    expected = reference(image, in_camera, label_set)
    assert np.abs(fast.astype(int) - expected.astype(int)).max() <= 1
    assert (fast == BORDER).all(axis=2).any(), "blocky maps have borders"


def test_void_keeps_the_image(label_set: LabelSet) -> None:
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    panoptic = np.full((6, 8), -1, dtype=np.int64)
    assert np.array_equal(overlay(image, panoptic, label_set, label_divisor=DIVISOR), image)


def test_an_unknown_channel_order_is_refused(label_set: LabelSet) -> None:
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="channel order"):
        overlay(image, np.zeros((6, 8), dtype=np.int64), label_set, order="brg")  # type: ignore[arg-type]


def test_a_map_of_another_size_needs_its_frame(label_set: LabelSet) -> None:
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="needs a frame"):
        overlay(image, np.zeros((3, 4), dtype=np.int64), label_set)


@pytest.mark.parametrize("blocky", [False, True], ids=["scattered", "blocky"])
@pytest.mark.parametrize("semantic_type", [np.int32, np.int64])
def test_tracked_display_map_shades_things_by_track_and_keeps_stuff_by_category(
    label_set: LabelSet, semantic_type: type, blocky: bool
) -> None:
    """Each pixel by hand: a tracked thing pixel ``category * divisor + track % (divisor - 1) + 1``,
    an untracked pixel its category's stuff id, or -1 for a thing category and void; tracks pixel by
    pixel and in blocks (runs of one track), category maps of either integer type."""
    rng = np.random.default_rng(4)
    ids = [c.id for c in label_set.categories] + [label_set.void_semantic]
    semantic = rng.choice(ids, size=(20, 30)).astype(semantic_type)
    is_thing = {c.id: c.is_thing for c in label_set.categories}
    thing = np.vectorize(lambda c: is_thing.get(int(c), False))(semantic)
    numbers = rng.integers(1, 5000, size=(20, 30))
    if blocky:  # blocks of 4 x 5 pixels of one track
        numbers = numbers[::4, ::5].repeat(4, axis=0).repeat(5, axis=1)
    tracks = np.where(thing & (rng.random((20, 30)) < 0.7), numbers, 0)
    shown = tracked_display_map(semantic, tracks.astype(np.int32), label_set, DIVISOR)
    assert shown.dtype == np.int32
    for (y, x), category in np.ndenumerate(semantic):
        if tracks[y, x]:
            expected = category * DIVISOR + tracks[y, x] % (DIVISOR - 1) + 1
        elif category == label_set.void_semantic or is_thing[int(category)]:
            expected = -1
        else:
            expected = category * DIVISOR
        assert shown[y, x] == expected, (y, x)
    assert (shown == -1).any() and (shown % DIVISOR == 0).any() and (shown % DIVISOR > 0).any()


def test_a_category_outside_the_label_set_is_refused(label_set: LabelSet) -> None:
    """The stuff table is read without numba's checks: a category below 0 or past the table (the void
    value is the table's last row) raises instead of reading outside it."""
    tracks = np.zeros((3, 4), dtype=np.int32)
    for wrong in (-1, label_set.void_semantic + 1):
        semantic = np.zeros((3, 4), dtype=np.int64)
        semantic[2, 3] = wrong
        with pytest.raises(IndexError, match="outside the label set"):
            tracked_display_map(semantic, tracks, label_set, DIVISOR)
    with pytest.raises(ConfigError, match="track map"):  # the compiled pass reads both unchecked
        tracked_display_map(np.zeros((3, 4), dtype=np.int64), tracks[:2], label_set, DIVISOR)


def test_alpha_outside_zero_to_one_is_refused(label_set: LabelSet) -> None:
    image = np.zeros((6, 8, 3), dtype=np.uint8)
    panoptic = np.zeros((6, 8), dtype=np.int64)
    for alpha in (-0.2, 1.2):
        with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
            overlay(image, panoptic, label_set, alpha=alpha)
    assert np.array_equal(overlay(image, panoptic, label_set, alpha=0.0), image)


def test_a_frame_made_for_a_larger_map_is_refused(label_set: LabelSet) -> None:
    """The compiled loops do not check their indices: a frame that copies map rows or columns past
    the map it is given is refused before them."""
    camera, model = (30, 41), (24, 40)
    frame = pixel_frame(plan(camera, model, "resize"), model, torch.device("cpu"))  # type: ignore[arg-type]
    image = np.zeros((*camera, 3), dtype=np.uint8)
    for smaller in ((12, 40), (24, 20)):
        with pytest.raises(ConfigError, match="past the"):
            overlay(image, np.zeros(smaller, dtype=np.int64), label_set, frame=frame)
