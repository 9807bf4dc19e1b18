"""Id conventions shared by the node, the files and the metrics.

- **Semantic maps** hold category ids; void is :data:`VOID_SEMANTIC_U8` (255) in ``mono8`` images and
  :data:`VOID_SEMANTIC_U16` (65535) in ``mono16`` images (used when a label set has ids > 254).
- **Instance maps** hold instance (track) ids, ``0`` for stuff and void.
- **Combined panoptic ids** (``.npz`` outputs, internal maps): ``category_id * label_divisor +
  instance_id`` with ``label_divisor = 1000`` by default and :data:`VOID_PANOPTIC` (-1) for void.
- **COCO panoptic PNGs** encode a segment id in RGB: ``id = R + 256 * G + 256**2 * B``, 0 = void.

All functions work element-wise on numpy arrays of any shape (and on PyTorch tensors where noted).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from panoptic_ros.errors import ConfigError

VOID_SEMANTIC_U8 = 255
VOID_SEMANTIC_U16 = 65535
VOID_INSTANCE = 0
VOID_PANOPTIC = -1
DEFAULT_LABEL_DIVISOR = 1000
#: COCO panoptic files written by this project: stuff of category ``c`` has segment id
#: ``STUFF_SEGMENT_BASE + c``; things keep their instance (track) ids, which stay below it.
STUFF_SEGMENT_BASE = 1 << 20
#: ... and pixels of thing category ``c`` without an instance id (things the tracker has not
#: confirmed, or a crowd) form one crowd segment per category, id ``CROWD_SEGMENT_BASE + c``.
CROWD_SEGMENT_BASE = 1 << 21

ArrayT = TypeVar("ArrayT")


def semantic_void_for(max_category_id: int) -> int:
    """The void value of a semantic image whose categories go up to ``max_category_id``.

    ``mono8`` holds ids 0..254 with 255 as void; larger label sets need ``mono16`` with 65535.
    """
    if max_category_id < 0 or max_category_id >= VOID_SEMANTIC_U16:
        raise ConfigError(f"max_category_id={max_category_id} does not fit a mono16 semantic image")
    return VOID_SEMANTIC_U8 if max_category_id < VOID_SEMANTIC_U8 else VOID_SEMANTIC_U16


def encode_panoptic(
    semantic: ArrayT, instance: ArrayT, *, void_semantic: int, label_divisor: int = DEFAULT_LABEL_DIVISOR
) -> ArrayT:
    """Combine a semantic map and an instance map into one panoptic id map.

    Args:
        semantic: category ids, any shape, integer; ``void_semantic`` marks void.
        instance: instance ids of the same shape, ``0 <= id < label_divisor``; 0 for stuff.
        void_semantic: the void value used in ``semantic``.
        label_divisor: the multiplier of the category id.

    Returns:
        ``int64`` (numpy or torch, like the inputs) ``semantic * label_divisor + instance``, and
        :data:`VOID_PANOPTIC` where ``semantic`` is void.
    """
    if isinstance(semantic, np.ndarray):
        combined = semantic.astype(np.int64) * label_divisor + np.asarray(instance).astype(np.int64)
        return np.where(semantic == void_semantic, VOID_PANOPTIC, combined)  # type: ignore[return-value]
    # torch tensors: same arithmetic without importing torch here
    combined = semantic.long() * label_divisor + instance.long()  # type: ignore[attr-defined]
    return combined.masked_fill(semantic == void_semantic, VOID_PANOPTIC)  # type: ignore[attr-defined]


def decode_panoptic(
    panoptic: np.ndarray, *, void_semantic: int, label_divisor: int = DEFAULT_LABEL_DIVISOR
) -> tuple[np.ndarray, np.ndarray]:
    """Split a combined panoptic id map into ``(semantic, instance)``, the inverse of
    :func:`encode_panoptic`. Void (-1) becomes ``void_semantic`` and instance 0."""
    panoptic = np.asarray(panoptic, dtype=np.int64)
    void = panoptic < 0
    semantic = np.where(void, void_semantic, panoptic // label_divisor)
    instance = np.where(void, VOID_INSTANCE, panoptic % label_divisor)
    return semantic, instance


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colors (``H x W x 3`` uint8, RGB order) to segment ids (``H x W`` int64)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB array, got shape {rgb.shape}")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids (``H x W``, 0 <= id < 2**24) to COCO panoptic PNG colors (``H x W x 3`` uint8, RGB)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(f"segment ids must lie in [0, 2**24), got [{ids.min()}, {ids.max()}]")
    return np.stack([ids & 0xFF, (ids >> 8) & 0xFF, (ids >> 16) & 0xFF], axis=-1).astype(np.uint8)
