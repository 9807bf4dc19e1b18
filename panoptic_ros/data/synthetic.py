"""A synthetic driving world with exact panoptic ground truth, deterministic by seed.

Scenes look like a forward-facing car camera: sky above a horizon, buildings with windows and
vegetation along it, a road with lane markings and sidewalks below; cars, people and cyclists stand
on the ground plane, scaled by their distance (perspective), drawn far to near so nearer things
occlude farther ones, some partly outside the frame. Every region is textured (low- and
high-frequency noise, windows, markings, wheels, clothes) and lit differently per scene (brightness,
contrast, color cast, a shading gradient).

Sequences move every thing with its own velocity, let things cross and occlude each other, enter
and leave the frame, and let the camera drift sideways. A thing keeps its id for the whole sequence:
that id is the ground truth for tracking.

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


def generate(
    count: int,
    *,
    seed: int,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    sequence_length: int | None = None,
) -> Iterator[Sample]:
    """``count`` independent images, or ``count`` sequences of ``sequence_length`` frames each.

    Deterministic: the same arguments give the same pixels. Scenes are laid out at
    :data:`DEFAULT_SIZE` and scaled to ``height`` x ``width``; ids stay stable along a sequence.
    """
    layout_width = DEFAULT_SIZE[1]
    frames = sequence_length or 1
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        bg = random_background(rng)
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
                things = [
                    replace(t, x=t.x + t.vx, ground=float(np.clip(t.ground + t.vground, 0.1, 1.1)))
                    for t in things
                ]
                things = [t for t in things if _visible(t, layout_width)]
                if rng.random() < 0.12:
                    things.append(random_thing(rng, next_id, layout_width, entering=True))
                    next_id += 1
            image, semantic, instance = render(
                bg, things, height=height, width=width, camera_x=camera_x, rng=rng, layout_width=layout_width
            )
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
) -> list[Path]:
    """Write ``count`` images (one COCO panoptic folder at ``out``) or ``count`` sequences (one folder
    per sequence, ``out/seq_NNNN``, frames in order) with their ground truth; returns the folders."""
    from tqdm import tqdm

    from panoptic_ros.core.labels import load_label_set
    from panoptic_ros.data.coco_format import segments_from_map
    from panoptic_ros.data.coco_panoptic import CocoPanopticWriter

    label_set = load_label_set("synthetic")
    folders: list[Path] = []
    writer: CocoPanopticWriter | None = None
    total = count * (sequence_length or 1)
    samples = generate(count, seed=seed, height=height, width=width, sequence_length=sequence_length)
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
