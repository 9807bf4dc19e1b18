from __future__ import annotations

import torch

from panoptic_ros.models.targets import IGNORE, center_offset_targets

THINGS = torch.tensor([False, True])  # class 0 stuff, class 1 thing


def test_offsets_point_to_the_center_of_mass() -> None:
    semantic = torch.zeros(1, 12, 16, dtype=torch.long)
    instance = torch.zeros(1, 12, 16, dtype=torch.long)
    semantic[0, 2:5, 3:9] = 1
    instance[0, 2:5, 3:9] = 4  # centroid (y 3, x 5.5)
    semantic[0, 8:12, 10:12] = 1
    instance[0, 8:12, 10:12] = 9  # centroid (y 9.5, x 10.5)
    t = center_offset_targets(semantic, instance, THINGS, sigma=1.0, small_area=10)
    ys, xs = torch.nonzero(instance[0] == 4, as_tuple=True)
    assert torch.allclose(ys + t.offset[0, 0, ys, xs], torch.full_like(ys, 3, dtype=torch.float))
    assert torch.allclose(xs + t.offset[0, 1, ys, xs], torch.full_like(xs, 5.5, dtype=torch.float))
    assert (t.offset[0, :, ~t.thing[0]] == 0).all()
    # heatmap: Gaussian peaks at the centers, max over instances
    assert (
        abs(float(t.center[0, 0, 3, 5]) - torch.exp(torch.tensor(-0.125)).item()) < 1e-5
    )  # 0.5 px from center
    assert float(t.center[0, 0, 0, 15]) < 1e-6
    # pixel weights: the 8-pixel instance is small (< 10), the 18-pixel one is not
    assert (t.pixel_weight[0][instance[0] == 9] == 3).all() and (
        t.pixel_weight[0][instance[0] == 4] == 1
    ).all()


def test_ignored_and_stuff_pixels_are_not_things() -> None:
    semantic = torch.full((1, 4, 4), IGNORE, dtype=torch.long)
    instance = torch.ones(1, 4, 4, dtype=torch.long)
    t = center_offset_targets(semantic, instance, THINGS)
    assert not t.thing.any() and float(t.center.max()) == 0.0
