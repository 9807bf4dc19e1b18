from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from panoptic_ros.core.ids import (
    VOID_PANOPTIC,
    decode_panoptic,
    encode_panoptic,
    id_to_rgb,
    rgb_to_id,
    semantic_void_for,
)
from panoptic_ros.errors import ConfigError


def test_encode_known_values() -> None:
    semantic = np.array([[7, 255], [0, 5]])
    instance = np.array([[3, 9], [0, 12]])
    assert encode_panoptic(semantic, instance, void_semantic=255).tolist() == [
        [7003, VOID_PANOPTIC],
        [0, 5012],
    ]


def test_encode_torch_matches_numpy() -> None:
    semantic = np.array([[7, 255], [0, 5]])
    instance = np.array([[3, 9], [0, 12]])
    expected = encode_panoptic(semantic, instance, void_semantic=255)
    got = encode_panoptic(torch.from_numpy(semantic), torch.from_numpy(instance), void_semantic=255)
    assert got.dtype == torch.int64 and got.numpy().tolist() == expected.tolist()


@settings(max_examples=50, deadline=None)
@given(
    semantic=arrays(np.int64, (5, 7), elements=st.integers(0, 200) | st.just(255)),
    instance=arrays(np.int64, (5, 7), elements=st.integers(0, 999)),
)
def test_decode_inverts_encode(semantic: np.ndarray, instance: np.ndarray) -> None:
    instance = np.where(semantic == 255, 0, instance)
    sem, inst = decode_panoptic(encode_panoptic(semantic, instance, void_semantic=255), void_semantic=255)
    assert np.array_equal(sem, semantic) and np.array_equal(inst, instance)


def test_coco_rgb_encoding() -> None:
    assert rgb_to_id(np.array([[[1, 2, 3]]], np.uint8)).item() == 1 + 256 * 2 + 65536 * 3
    ids = np.array([[0, 1, 255, 256, 70000, (1 << 24) - 1]])
    assert np.array_equal(rgb_to_id(id_to_rgb(ids)), ids)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        id_to_rgb(np.array([1 << 24]))


def test_semantic_void() -> None:
    assert semantic_void_for(18) == 255
    assert semantic_void_for(254) == 255
    assert semantic_void_for(255) == 65535
    with pytest.raises(ConfigError):
        semantic_void_for(70000)
