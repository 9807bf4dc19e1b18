"""A synthetic driving world with exact panoptic ground truth, deterministic by seed.

Scenes look like a forward-facing car camera: sky above a horizon, buildings with windows and
vegetation along it, a road with lane markings and sidewalks below; cars, people and cyclists stand
on the ground plane, scaled by their distance (perspective), drawn far to near so nearer things
occlude farther ones, some partly outside the frame. Every region is textured (low- and
high-frequency noise, windows, markings, wheels, clothes) and lit differently per scene (brightness,
contrast, color cast, a shading gradient).

Sequences move every thing with its own velocity, let things cross and occlude each other, enter
and leave the frame, and let the camera drift sideways. A thing keeps its id for the whole sequence:
that id is the ground truth for tracking. Two options (off by default; the default scenes do not
change) make things disappear and come back, for re-identification: ``returns`` (a thing that has
left the frame waits out of view, :data:`RETURN_FRAMES` frames, then walks back in through the
border it left by) and ``occluders`` (tree trunks right in front of the camera, over the full image
height, that hide what passes behind them). Their randomness comes from a generator of their own, so
a scene with them is the default scene plus them.

This module owns the world's randomness and time: random scenes (:func:`random_background`,
:func:`random_thing`), images and sequences (:func:`generate`), their COCO panoptic ground truth
(:func:`segment_map`, :func:`export_coco`). What a scene is (the class indices of the ``synthetic``
label set, :class:`~panoptic_ros.data.synthetic_scene.Thing`,
:class:`~panoptic_ros.data.synthetic_scene.Background`) and how one frame is drawn is
:mod:`panoptic_ros.data.synthetic_scene`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from panoptic_ros.core.ids import STUFF_SEGMENT_BASE
from panoptic_ros.data.synthetic_scene import (
    CAR,
    CYCLIST,
    PERSON,
    THING_CLASSES,
    Background,
    Thing,
    render,
)

#: Default image size (height, width) of the shipped model and of ``synth`` without a size.
DEFAULT_SIZE = (192, 384)
#: Frames a returning thing stays out of view (inclusive range; ``generate(returns=...)``).
RETURN_FRAMES = (3, 30)
#: Width of an occluder, as a fraction of the image width (``generate(occluders=...)``).
OCCLUDER_WIDTH = (0.04, 0.1)


class Sample(NamedTuple):
    """One rendered frame.

    Attributes:
        image: ``H x W x 3`` uint8, RGB.
        semantic: ``H x W`` uint8 class index (see :mod:`panoptic_ros.data.synthetic_scene`).
        instance: ``H x W`` int32 thing id (stable within a sequence), 0 on stuff.
        sequence: index of the sequence (or of the image, for single images).
        frame: index of the frame within its sequence (0 for single images).
    """

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    sequence: int
    frame: int


def _color(rng: np.random.Generator, base: tuple[int, int, int], spread: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)  # type: ignore[return-value]


def random_background(rng: np.random.Generator) -> Background:
    buildings = []
    x = -1.5
    while x < 3.5:  # world x in image widths: room for camera drift both ways
        width = rng.uniform(0.08, 0.35)
        top = rng.uniform(0.05, 0.3)
        base = (rng.integers(60, 200),) * 3
        buildings.append((x, x + width, top, _color(rng, base, 40), int(rng.integers(0, 3))))
        x += width + rng.uniform(-0.02, 0.06)
    trees = tuple(
        (
            rng.uniform(-1.5, 3.5),
            rng.uniform(-0.04, 0.02),
            rng.uniform(0.02, 0.07),
            rng.uniform(0.03, 0.1),
            _color(rng, (70, 120, 40), 30),
        )
        for _ in range(int(rng.integers(3, 12)))
    )
    return Background(
        horizon=rng.uniform(0.36, 0.5),
        road_bottom_half=rng.uniform(0.3, 0.45),
        road_center=rng.uniform(0.4, 0.6),
        sidewalk=rng.uniform(0.1, 0.2),
        buildings=tuple(buildings),
        trees=trees,
        sky_top=_color(rng, (90, 140, 210), 30),
        sky_bottom=_color(rng, (180, 200, 230), 25),
        road_color=_color(rng, (95, 90, 95), 20),
        sidewalk_color=_color(rng, (170, 150, 160), 25),
        brightness=rng.uniform(0.65, 1.25),
        contrast=rng.uniform(0.75, 1.2),
        cast=tuple(rng.uniform(0.9, 1.1, 3)),  # type: ignore[arg-type]
        shade_angle=rng.uniform(0, 2 * np.pi),
    )


_CAR_COLORS = (
    (200, 30, 30),
    (30, 60, 170),
    (230, 230, 230),
    (30, 30, 30),
    (150, 150, 160),
    (200, 180, 40),
    (40, 120, 60),
)


def random_thing(rng: np.random.Generator, thing_id: int, width: int, *, entering: bool = False) -> Thing:
    category = int(rng.choice(THING_CLASSES, p=(0.35, 0.2, 0.45)))
    ground = float(rng.uniform(0.18, 1.05))
    speed = {PERSON: 0.8, CYCLIST: 2.0, CAR: 3.0}[category] * (0.3 + ground)
    if entering:
        side = rng.integers(0, 2)
        x = -0.08 * width if side == 0 else 1.08 * width
        vx = abs(rng.normal(speed, speed / 3)) * (1 if side == 0 else -1)
    else:
        x = float(rng.uniform(-0.05, 1.05) * width)
        vx = float(rng.normal(0, speed))
    if category == CAR:
        colors = (_color(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 25), _color(rng, (40, 50, 60), 15))
    else:
        colors = (
            _color(rng, tuple(rng.integers(30, 230, 3)), 0),  # type: ignore[arg-type]  # shirt
            _color(rng, tuple(rng.integers(20, 120, 3)), 0),  # type: ignore[arg-type]  # trousers
            _color(rng, (200, 160, 130), 50),  # skin
        )
    return Thing(
        id=thing_id,
        category=category,
        x=float(x),
        ground=ground,
        scale=float(rng.uniform(0.85, 1.2)),
        vx=float(vx),
        vground=float(rng.normal(0, 0.004)),
        colors=colors,
        facing=int(rng.choice((-1, 1))),
    )


def _visible(thing: Thing, width: int) -> bool:
    return -0.2 * width < thing.x < 1.2 * width


def random_occluders(
    rng: np.random.Generator, count: int
) -> tuple[tuple[float, float, tuple[int, int, int]], ...]:
    """``count`` trunks in front of the camera: ``(x0, x1, color)``, x in image widths (world)."""
    occluders = []
    for _ in range(count):
        x0 = float(rng.uniform(0.1, 0.85))
        occluders.append((x0, x0 + float(rng.uniform(*OCCLUDER_WIDTH)), _color(rng, (95, 70, 50), 20)))
    return tuple(occluders)


class _Returns:
    """Things that come back after leaving the frame (``generate(returns=...)``): each thing that
    leaves the view (no pixels, center outside the image) is chosen once, with probability
    ``chance``, to wait :data:`RETURN_FRAMES` frames out of view and then walk back in."""

    def __init__(self, chance: float, rng: np.random.Generator) -> None:
        self.chance, self.rng = chance, rng
        self.seen: set[int] = set()  # ids that have had pixels
        self.decided: set[int] = set()  # ids that have left the view once
        self.waiting: dict[int, int] = {}  # id -> frames left out of view

    def step(self, thing: Thing) -> Thing:
        """The thing one frame later: held while waiting, turned back when the wait is over."""
        left = self.waiting.get(thing.id)
        if left is None:
            return replace(
                thing, x=thing.x + thing.vx, ground=float(np.clip(thing.ground + thing.vground, 0.1, 1.1))
            )
        if left > 1:
            self.waiting[thing.id] = left - 1
            return thing
        del self.waiting[thing.id]
        return replace(thing, vx=-thing.vx, x=thing.x - thing.vx)

    def observe(
        self, things: list[Thing], instance: np.ndarray, screen_width: float, camera_x: float
    ) -> None:
        """After a frame is drawn: start the wait of things that have just left the view."""
        shown = set(np.unique(instance).tolist())
        for thing in things:
            if thing.id in shown:
                self.seen.add(thing.id)
                continue
            outside = not 0 <= thing.x - camera_x * screen_width <= screen_width
            if thing.id in self.seen and thing.id not in self.decided and outside:
                self.decided.add(thing.id)
                if self.rng.random() < self.chance:
                    self.waiting[thing.id] = int(self.rng.integers(RETURN_FRAMES[0], RETURN_FRAMES[1] + 1))


def generate(
    count: int,
    *,
    seed: int,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    sequence_length: int | None = None,
    returns: float = 0.0,
    occluders: int = 0,
) -> Iterator[Sample]:
    """``count`` independent images, or ``count`` sequences of ``sequence_length`` frames each.

    Deterministic: the same arguments give the same pixels. Scenes are laid out at
    :data:`DEFAULT_SIZE` and scaled to ``height`` x ``width``; ids stay stable along a sequence.
    ``returns``: the chance that a thing leaving the frame comes back (see the module docstring);
    ``occluders``: trunks in front of the camera per scene.
    """
    if not 0.0 <= returns <= 1.0 or occluders < 0:
        raise ValueError(f"returns={returns} must lie in [0, 1] and occluders={occluders} be >= 0")
    layout_width = DEFAULT_SIZE[1]
    frames = sequence_length or 1
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        bg = random_background(rng)
        extra = np.random.default_rng([seed, index, 1])  # the options' own randomness
        if occluders:
            bg = replace(bg, occluders=random_occluders(extra, occluders))
        comebacks = _Returns(returns, extra)
        next_id = 1
        things: list[Thing] = []
        for _ in range(int(rng.integers(3, 15))):
            things.append(random_thing(rng, next_id, layout_width))
            next_id += 1
        camera_x = 0.0
        camera_v = float(rng.normal(0, 0.002)) if sequence_length else 0.0
        for frame in range(frames):
            if frame:
                camera_x += camera_v
                things = [comebacks.step(t) for t in things]
                things = [t for t in things if _visible(t, layout_width)]
                if rng.random() < 0.12:
                    things.append(random_thing(rng, next_id, layout_width, entering=True))
                    next_id += 1
            image, semantic, instance = render(
                bg, things, height=height, width=width, camera_x=camera_x, rng=rng, layout_width=layout_width
            )
            if returns:
                comebacks.observe(things, instance, layout_width, camera_x)
            yield Sample(image, semantic, instance, index, frame)


def segment_map(sample: Sample) -> tuple[np.ndarray, dict[int, int]]:
    """A sample's COCO panoptic segment map (``H x W`` int64) and segment id -> category id.

    Things keep their (sequence-stable) ids; stuff of class ``c`` gets ``STUFF_SEGMENT_BASE + c``.
    """
    semantic = sample.semantic.astype(np.int64)
    is_thing = np.isin(semantic, THING_CLASSES)
    segments = np.where(is_thing, sample.instance.astype(np.int64), STUFF_SEGMENT_BASE + semantic)
    ids = np.unique(segments)
    categories = {int(i): (int(i) - STUFF_SEGMENT_BASE if i >= STUFF_SEGMENT_BASE else -1) for i in ids}
    thing_ids = [i for i, c in categories.items() if c < 0]
    if thing_ids:
        first_pixel = {
            int(v): int(semantic.ravel()[p])
            for v, p in zip(*np.unique(segments.ravel(), return_index=True), strict=True)
        }
        categories.update({i: first_pixel[i] for i in thing_ids})
    return segments, categories


def export_coco(
    out: Path,
    count: int,
    *,
    seed: int,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    sequence_length: int | None = None,
    overwrite: bool = False,
    returns: float = 0.0,
    occluders: int = 0,
) -> list[Path]:
    """Write ``count`` images (one COCO panoptic folder at ``out``) or ``count`` sequences (one folder
    per sequence, ``out/seq_NNNN``, frames in order) with their ground truth; returns the folders.
    ``returns``, ``occluders``: as for :func:`generate`."""
    from tqdm import tqdm

    from panoptic_ros.core.labels import load_label_set
    from panoptic_ros.data.coco_format import segments_from_map
    from panoptic_ros.data.coco_panoptic import CocoPanopticWriter

    label_set = load_label_set("synthetic")
    folders: list[Path] = []
    writer: CocoPanopticWriter | None = None
    total = count * (sequence_length or 1)
    samples = generate(
        count,
        seed=seed,
        height=height,
        width=width,
        sequence_length=sequence_length,
        returns=returns,
        occluders=occluders,
    )
    # On an error the open writer never writes its panoptic.json, so no half-written folder looks complete.
    for sample in tqdm(samples, total=total, desc=f"rendering into {out}", unit="img"):
        if writer is None or (sequence_length and sample.frame == 0):
            if writer is not None:
                writer.close()
            folder = out / f"seq_{sample.sequence:04d}" if sequence_length else out
            writer = CocoPanopticWriter(folder, label_set, overwrite=overwrite)
            folders.append(folder)
        stem = f"{sample.frame:06d}" if sequence_length else f"{seed:04d}_{sample.sequence:06d}"
        segments, categories = segment_map(sample)
        writer.add(stem, sample.image, segments, segments_from_map(segments, categories))
    if writer is not None:
        writer.close()
    return folders
