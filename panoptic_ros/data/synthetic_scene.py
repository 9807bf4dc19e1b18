"""One frame of the synthetic driving world: what a scene is and how it is drawn.

This module owns the class indices of the ``synthetic`` label set (``config/labels/synthetic.yaml``:
0 road, 1 sidewalk, 2 building, 3 vegetation, 4 sky, 5 person, 6 cyclist, 7 car), the scene records
(:class:`Thing`, :class:`Background`) and :func:`render`. Rendering draws every primitive into a
*paint* map (one id per primitive), a semantic map and an instance map with OpenCV, then turns paints
into colors in one vectorized pass. Random scenes and sequences are :mod:`panoptic_ros.data.synthetic`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CYCLIST, CAR = range(8)
THING_CLASSES = (PERSON, CYCLIST, CAR)
NUM_CLASSES = 8


@dataclass(frozen=True, slots=True)
class Thing:
    """A thing on the ground plane. ``x`` is in world pixels (screen x = x - camera x) at the image
    width the scene was laid out for; ``ground`` is the depth coordinate in [0, 1] (0 = horizon,
    1 = bottom of the image); ``vx``/``vground`` are per-frame velocities."""

    id: int
    category: int
    x: float
    ground: float
    scale: float
    vx: float
    vground: float
    colors: tuple[tuple[int, int, int], ...]
    facing: int


@dataclass(frozen=True, slots=True)
class Background:
    """The static part of a scene (world coordinates in units of the image height)."""

    horizon: float  # fraction of the image height
    road_bottom_half: float  # half-width of the road at the bottom, fraction of the width
    road_center: float  # vanishing point x, fraction of the width
    sidewalk: float  # sidewalk width at the bottom, fraction of the width
    buildings: tuple[
        tuple[float, float, float, tuple[int, int, int], int], ...
    ]  # x0, x1, top, color, window style
    trees: tuple[
        tuple[float, float, float, float, tuple[int, int, int]], ...
    ]  # x, y (from horizon), rx, ry, color
    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    road_color: tuple[int, int, int]
    sidewalk_color: tuple[int, int, int]
    brightness: float
    contrast: float
    cast: tuple[float, float, float]
    shade_angle: float
    occluders: tuple[tuple[float, float, tuple[int, int, int]], ...] = ()  # x0, x1, color: in front


#: Draws one primitive into a uint8 mask with the given value (an OpenCV call, e.g. ``cv2.fillPoly``).
Primitive = Callable[[np.ndarray, int], object]


class _Canvas:
    """Label maps plus a paint map; every primitive gets a paint id with a color and a texture."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.paint = np.zeros((height, width), np.int32)
        self.semantic = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.int32)
        self.colors: list[tuple[int, int, int]] = [(0, 0, 0)]
        self.texture: list[float] = [0.0]

    def _new_paint(self, color: tuple[int, int, int], texture: float) -> int:
        self.colors.append(color)
        self.texture.append(texture)
        return len(self.colors) - 1

    def draw(
        self,
        mask_fn: Primitive,
        color: tuple[int, int, int],
        texture: float,
        category: int,
        instance: int = 0,
    ) -> None:
        """``mask_fn(img, value)`` draws a primitive into ``img`` with ``value`` (an OpenCV call)."""
        mask = np.zeros((self.h, self.w), np.uint8)
        mask_fn(mask, 1)
        on = mask.astype(bool)
        self.paint[on] = self._new_paint(color, texture)
        self.semantic[on] = category
        self.instance[on] = instance


def _pts(points: list[tuple[float, float]]) -> list[np.ndarray]:
    return [np.round(np.array(points) * 16).astype(np.int32)]  # 4 fractional bits


SHIFT = 4  # cv2 fractional bits used by _pts
#: Thinnest stroke drawn (pixels): thinner structures cannot be segmented at the model's stride.
MIN_STROKE = 2


def _poly(points: list[tuple[float, float]]) -> Primitive:
    return lambda img, v: cv2.fillPoly(img, _pts(points), v, cv2.LINE_8, SHIFT)


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> Primitive:
    center = (round(cx * 16), round(cy * 16))
    axes = (max(round(rx * 16), 8), max(round(ry * 16), 8))
    return lambda img, v: cv2.ellipse(img, center, axes, 0, 0, 360, v, -1, cv2.LINE_8, SHIFT)


def _ring(cx: float, cy: float, r: float, thickness: float) -> Primitive:
    center = (round(cx * 16), round(cy * 16))
    return lambda img, v: cv2.circle(
        img, center, max(round(r * 16), 8), v, max(round(thickness), MIN_STROKE), cv2.LINE_8, SHIFT
    )


def _line(x0: float, y0: float, x1: float, y1: float, thickness: float) -> Primitive:
    p0 = (round(x0 * 16), round(y0 * 16))
    p1 = (round(x1 * 16), round(y1 * 16))
    return lambda img, v: cv2.line(img, p0, p1, v, max(round(thickness), MIN_STROKE), cv2.LINE_8, SHIFT)


def _draw_background(c: _Canvas, bg: Background, camera_x: float) -> None:
    h, w = c.h, c.w
    hy = bg.horizon * h
    c.draw(_poly([(0, 0), (w, 0), (w, hy + 1), (0, hy + 1)]), bg.sky_top, 0.15, SKY)
    for x0, x1, top, color, style in bg.buildings:
        sx0, sx1 = (x0 - camera_x) * w, (x1 - camera_x) * w
        if sx1 < 0 or sx0 > w:
            continue
        ty = top * h
        c.draw(_poly([(sx0, ty), (sx1, ty), (sx1, hy + 2), (sx0, hy + 2)]), color, 0.25, BUILDING)
        win = tuple(int(v * 0.55) for v in color) if style != 1 else (190, 200, 215)
        cols = max(int((sx1 - sx0) / (0.035 * h)), 1)
        rows = max(int((hy - ty) / (0.05 * h)), 1)
        for i in range(cols):
            for j in range(rows):
                wx = sx0 + (i + 0.25) * (sx1 - sx0) / cols
                wy = ty + (j + 0.25) * (hy - ty) / rows
                ww, wh = 0.5 * (sx1 - sx0) / cols, 0.45 * (hy - ty) / rows
                if (i + j + style) % 5 != 0:
                    c.draw(
                        _poly([(wx, wy), (wx + ww, wy), (wx + ww, wy + wh), (wx, wy + wh)]),
                        win,
                        0.1,
                        BUILDING,
                    )
    for tx, ty, rx, ry, color in bg.trees:
        sx = (tx - camera_x) * w
        cy = hy + ty * h - ry * h * 0.6
        for k in range(3):
            dx = (k - 1) * rx * h * 0.5
            shade = tuple(int(v * (0.8 + 0.15 * k)) for v in color)
            c.draw(_ellipse(sx + dx, cy - k * ry * h * 0.15, rx * h, ry * h), shade, 0.5, VEGETATION)
    # ground: sidewalks over the whole ground, then the road trapezoid
    vx = bg.road_center * w
    half = bg.road_bottom_half * w
    edge = (bg.road_bottom_half + bg.sidewalk) * w
    grass = tuple(int(v) for v in (90, 130, 60))
    c.draw(_poly([(0, hy), (vx - 2, hy), (vx - edge * 1.8 - 4, h), (0, h)]), grass, 0.5, VEGETATION)
    c.draw(_poly([(vx + 2, hy), (w, hy), (w, h), (vx + edge * 1.8 + 4, h)]), grass, 0.5, VEGETATION)
    c.draw(
        _poly([(vx - 1, hy), (vx + 1, hy), (vx + edge * 1.8, h), (vx - edge * 1.8, h)]),
        bg.sidewalk_color,
        0.3,
        SIDEWALK,
    )
    c.draw(
        _poly([(vx - 0.5, hy), (vx + 0.5, hy), (vx + half * 1.6, h), (vx - half * 1.6, h)]),
        bg.road_color,
        0.2,
        ROAD,
    )
    # dashed lane marking, moving with the camera's forward motion
    for k in range(8):
        t0 = ((k + camera_x * 9) % 8) / 8
        t1 = t0 + 0.06
        y0, y1 = hy + (h - hy) * t0**2, hy + (h - hy) * min(t1, 1) ** 2
        c.draw(_line(vx, y0, vx, y1, max(0.006 * w * (t0 + 0.1), 1)), (230, 230, 220), 0.05, ROAD)


def _ground_y(bg: Background, ground: float, h: int) -> float:
    return bg.horizon * h + ground * (1 - bg.horizon) * h


def _draw_thing(c: _Canvas, bg: Background, thing: Thing, camera_x: float, width_world: int) -> None:
    h = c.h
    base_y = _ground_y(bg, thing.ground, h)
    depth = thing.ground * (1 - bg.horizon) + 0.04
    s = depth * h * thing.scale
    x = thing.x - camera_x * width_world
    cat, iid = thing.category, thing.id
    if cat == CAR:
        body, glass = thing.colors
        length, height = 1.05 * s, 0.42 * s
        x0, x1 = x - length / 2, x + length / 2
        shadow = tuple(int(v * 0.5) for v in bg.road_color)
        c.draw(_ellipse(x, base_y, length * 0.55, 0.05 * s), shadow, 0.1, ROAD)
        c.draw(
            _poly(
                [
                    (x0, base_y - 0.08 * s),
                    (x1, base_y - 0.08 * s),
                    (x1, base_y - height * 0.6),
                    (x0 + 0.05 * length, base_y - height * 0.62),
                ]
            ),
            body,
            0.15,
            cat,
            iid,
        )
        r0, r1 = (0.2, 0.75) if thing.facing > 0 else (0.25, 0.8)
        c.draw(
            _poly(
                [
                    (x0 + r0 * length, base_y - height * 0.6),
                    (x0 + r1 * length, base_y - height * 0.6),
                    (x0 + (r1 - 0.08) * length, base_y - height),
                    (x0 + (r0 + 0.08) * length, base_y - height),
                ]
            ),
            body,
            0.15,
            cat,
            iid,
        )
        c.draw(
            _poly(
                [
                    (x0 + (r0 + 0.06) * length, base_y - height * 0.63),
                    (x0 + (r1 - 0.06) * length, base_y - height * 0.63),
                    (x0 + (r1 - 0.1) * length, base_y - height * 0.93),
                    (x0 + (r0 + 0.1) * length, base_y - height * 0.93),
                ]
            ),
            glass,
            0.1,
            cat,
            iid,
        )
        for wx in (x0 + 0.2 * length, x1 - 0.2 * length):
            c.draw(_ellipse(wx, base_y - 0.09 * s, 0.1 * s, 0.1 * s), (20, 20, 22), 0.05, cat, iid)
        light = (250, 240, 180) if thing.facing > 0 else (200, 20, 20)
        lx = x1 - 0.03 * length if thing.facing > 0 else x0 + 0.03 * length
        c.draw(_ellipse(lx, base_y - height * 0.45, 0.03 * s, 0.025 * s), light, 0.0, cat, iid)
        return
    shirt, trousers, skin = thing.colors
    if cat == PERSON:
        tall = 0.62 * s
        c.draw(
            _poly(
                [
                    (x - 0.07 * tall, base_y - 0.48 * tall),
                    (x - 0.02 * tall, base_y - 0.48 * tall),
                    (x - 0.05 * tall, base_y),
                    (x - 0.1 * tall, base_y),
                ]
            ),
            trousers,
            0.1,
            cat,
            iid,
        )
        c.draw(
            _poly(
                [
                    (x + 0.02 * tall, base_y - 0.48 * tall),
                    (x + 0.07 * tall, base_y - 0.48 * tall),
                    (x + 0.1 * tall, base_y),
                    (x + 0.05 * tall, base_y),
                ]
            ),
            trousers,
            0.1,
            cat,
            iid,
        )
        c.draw(_ellipse(x, base_y - 0.64 * tall, 0.1 * tall, 0.19 * tall), shirt, 0.15, cat, iid)
        c.draw(
            _line(
                x - 0.1 * tall,
                base_y - 0.78 * tall,
                x - 0.15 * tall * thing.facing,
                base_y - 0.5 * tall,
                0.045 * tall,
            ),
            shirt,
            0.1,
            cat,
            iid,
        )
        c.draw(_ellipse(x, base_y - 0.9 * tall, 0.065 * tall, 0.08 * tall), skin, 0.1, cat, iid)
        return
    # cyclist: bicycle plus a seated rider, one instance
    tall = 0.62 * s
    r = 0.2 * tall
    f = thing.facing
    wheels = (x - 0.32 * tall * f, x + 0.32 * tall * f)
    for wx in wheels:
        c.draw(_ring(wx, base_y - r, r, max(0.05 * tall, 1)), (25, 25, 25), 0.05, cat, iid)
    frame_color = trousers
    seat = (x - 0.08 * tall * f, base_y - 2.1 * r)
    bar = (x + 0.22 * tall * f, base_y - 2.4 * r)
    for p0, p1 in ((wheels[0], seat[0]), (seat[0], bar[0]), (bar[0], wheels[1])):
        y0 = base_y - r if p0 in wheels else (seat[1] if p0 == seat[0] else bar[1])
        y1 = base_y - r if p1 in wheels else (seat[1] if p1 == seat[0] else bar[1])
        c.draw(_line(p0, y0, p1, y1, max(0.04 * tall, 1)), frame_color, 0.05, cat, iid)
    c.draw(
        _line(seat[0], seat[1], x + 0.05 * tall * f, base_y - r, max(0.06 * tall, 1)), trousers, 0.1, cat, iid
    )
    c.draw(
        _ellipse(seat[0] + 0.06 * tall * f, seat[1] - 0.22 * tall, 0.09 * tall, 0.2 * tall),
        shirt,
        0.15,
        cat,
        iid,
    )
    c.draw(
        _line(seat[0] + 0.08 * tall * f, seat[1] - 0.32 * tall, bar[0], bar[1], max(0.04 * tall, 1)),
        shirt,
        0.1,
        cat,
        iid,
    )
    c.draw(
        _ellipse(seat[0] + 0.1 * tall * f, seat[1] - 0.47 * tall, 0.065 * tall, 0.08 * tall),
        skin,
        0.1,
        cat,
        iid,
    )


def _noise_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    grid = rng.normal(0, 1, (cells, cells * 2)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _shade(c: _Canvas, bg: Background, rng: np.random.Generator) -> np.ndarray:
    h, w = c.h, c.w
    colors = np.array(c.colors, np.float32)
    texture = np.array(c.texture, np.float32)
    rgb = colors[c.paint]
    # sky: vertical gradient between its two colors
    sky = c.semantic == SKY
    t = (np.arange(h, dtype=np.float32) / max(bg.horizon * h, 1))[:, None, None].clip(0, 1)
    gradient = np.array(bg.sky_top, np.float32) * (1 - t) + np.array(bg.sky_bottom, np.float32) * t
    rgb = np.where(sky[..., None], np.broadcast_to(gradient, rgb.shape), rgb)
    amplitude = texture[c.paint][..., None]
    coarse = _noise_field(rng, h, w, 6)[..., None]
    fine = _noise_field(rng, h, w, 40)[..., None]
    rgb = rgb * (1 + amplitude * (0.35 * coarse + 0.25 * fine))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 1 + 0.15 * ((xx / w - 0.5) * np.cos(bg.shade_angle) + (yy / h - 0.5) * np.sin(bg.shade_angle))
    rgb = rgb * shade[..., None] * np.array(bg.cast, np.float32)
    rgb = (rgb - 128) * bg.contrast + 128 * bg.brightness + (bg.brightness - 1) * 60
    rgb = rgb + rng.normal(0, 4, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render(
    bg: Background,
    things: list[Thing],
    *,
    height: int,
    width: int,
    camera_x: float,
    rng: np.random.Generator,
    layout_width: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one frame: ``(image RGB, semantic, instance)``; things are drawn far to near, then the
    background's occluders (vegetation in front of every thing)."""
    scale = width / layout_width
    canvas = _Canvas(height, width)
    _draw_background(canvas, bg, camera_x)
    for thing in sorted(things, key=lambda t: (t.ground, t.id)):
        _draw_thing(canvas, bg, replace(thing, x=thing.x * scale), camera_x, width)
    for x0, x1, color in bg.occluders:  # trunks close to the camera, from the top to the bottom
        sx0, sx1 = (x0 - camera_x) * width, (x1 - camera_x) * width
        canvas.draw(_poly([(sx0, 0), (sx1, 0), (sx1, height), (sx0, height)]), color, 0.3, VEGETATION)
    return _shade(canvas, bg, rng), canvas.semantic, canvas.instance
