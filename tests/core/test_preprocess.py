from __future__ import annotations

import numpy as np
import pytest
import torch

from panoptic_ros.core.preprocess import Preprocessor, Transform, plan, resize_image, restore
from panoptic_ros.errors import ConfigError
from panoptic_ros.models.spec import InputSpec

SPEC = InputSpec(name="image", height=8, width=16, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))


def test_plan_resize_and_letterbox() -> None:
    assert plan((480, 640), (8, 16), "resize") == Transform(480, 640, 0, 0, 8, 16)
    # 480x640 into 8x16 keeps 4:3 -> 8 x 11 (rounded), centered horizontally
    assert plan((480, 640), (8, 16), "letterbox") == Transform(480, 640, 0, 2, 8, 11)
    with pytest.raises(ConfigError):
        plan((1, 1), (8, 16), "crop")  # type: ignore[arg-type]


def test_normalization_channel_order_and_layout() -> None:
    frame = np.zeros((8, 16, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 12, 24, 35
    pre = Preprocessor(SPEC, torch.device("cpu"))
    x, transforms = pre([frame], order="rgb")
    assert x.shape == (1, 3, 8, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 1.0, 1.0]))
    x_bgr, _ = pre([frame[..., ::-1].copy()], order="bgr")
    assert torch.equal(x, x_bgr)
    assert transforms == [Transform(8, 16, 0, 0, 8, 16)]


@pytest.mark.parametrize("mode", ["resize", "letterbox"])
def test_a_batch_takes_each_frames_own_channel_order(mode: str) -> None:
    """Cameras of one batch may deliver different orders (a bgr8 camera, an rgb8 one): each frame is
    fitted as its own order says, equal to the batch of the same frames all given as RGB (the swap
    after the resize moves whole channels, so it commutes with the per-channel resize)."""
    rng = np.random.default_rng(4)
    frames = [
        rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((30, 50, 3), (9, 20, 3), (8, 16, 3))
    ]
    pre = Preprocessor(SPEC, torch.device("cpu"), mode=mode)  # type: ignore[arg-type]
    as_rgb, rgb_transforms = pre(frames, order="rgb")
    orders = ["bgr", "rgb", "bgr"]
    given = [
        np.ascontiguousarray(f[..., ::-1]) if o == "bgr" else f for f, o in zip(frames, orders, strict=True)
    ]
    mixed, transforms = pre(given, order=orders)  # type: ignore[arg-type]
    assert torch.equal(mixed, as_rgb) and transforms == rgb_transforms
    with pytest.raises(ConfigError, match="one each"):
        pre(given, order=["bgr", "rgb"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one each"):
        pre(given, order=["bgr", "rgb", "brg"])  # type: ignore[list-item]


def test_letterbox_pads_with_zero_after_normalization_and_batches_sizes() -> None:
    pre = Preprocessor(SPEC, torch.device("cpu"), mode="letterbox")
    tall = np.full((16, 8, 3), 100, np.uint8)
    wide = np.full((4, 32, 3), 50, np.uint8)
    x, transforms = pre([tall, wide])
    assert x.shape == (2, 3, 8, 16)
    t = transforms[0]
    assert (t.height, t.width, t.left) == (8, 4, 6)
    assert torch.all(x[0, :, :, :6] == 0) and torch.all(x[0, :, :, 10:] == 0)
    assert torch.allclose(x[0, 0, :, 6:10], torch.full((8, 4), (100 - 10) / 2.0))


def test_resize_matches_training_resize() -> None:
    # the same function the training augmentation uses for scale jitter: bilinear, half-pixel
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    up = resize_image(image, (8, 8))
    expected = torch.nn.functional.interpolate(image, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(up, expected)
    assert resize_image(image, (4, 4)) is image


def test_restore_inverts_letterbox() -> None:
    t = plan((20, 10), (8, 16), "letterbox")  # 8 x 4 region at left 6
    labels = torch.full((8, 16), -1, dtype=torch.int64)
    labels[:, 6:10] = torch.arange(4)[None, :]
    back = restore(labels, t)
    assert back.shape == (20, 10) and back.dtype == torch.int64
    assert set(back.unique().tolist()) == {0, 1, 2, 3}
    assert torch.equal(back[:, 0], torch.zeros(20, dtype=torch.int64))


def test_bad_frames_are_refused() -> None:
    pre = Preprocessor(SPEC, torch.device("cpu"))
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        pre([np.zeros((8, 16), np.uint8)])
    with pytest.raises(ConfigError, match="no frames"):
        pre([])


@pytest.mark.gpu
def test_frames_of_one_size_uploaded_back_to_back_keep_their_own_pixels() -> None:
    """Two cameras of one size share a pinned staging buffer: the second frame must not overwrite it
    before the first one's asynchronous copy is done."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pre = Preprocessor(InputSpec(name="image", height=64, width=96), torch.device("cuda"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(4)]
    uploaded = [pre.upload(frame) for frame in frames]
    for frame, image in zip(frames, uploaded, strict=True):
        assert np.array_equal(image.cpu().numpy(), frame)
