"""The panoptic point cloud of a frame: depth back-projected with each point's category and instance.

Computed on the device from the label maps at the frame's resolution and the aligned depth image
(resized to it, nearest), one host copy at the end; only when someone subscribes
(``InputFrame.points``). The record is the ``data`` of a ``sensor_msgs/PointCloud2`` as is
(:data:`POINT_DTYPE`): ``x, y, z`` float32 meters in the camera's optical frame, ``rgb`` the category
color packed as rviz reads it (``0x00RRGGBB`` in a float32 field), ``label`` uint32
``category_id << 16 | instance id`` (the instance id as in ``panoptic/instance_ids``; 0 for stuff and
void). Pixels without valid depth are left out.
"""

from __future__ import annotations

import numpy as np
import torch

from panoptic_ros.core.geometry import CameraModel, aligned_depth, label_cloud
from panoptic_ros.core.labels import LabelSet

#: One point of the cloud, as laid out in ``PointCloud2.data`` (little-endian, 20 bytes).
POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4")])
#: Instance ids above this do not fit the label's low 16 bits (they wrap; the id map has them whole).
MAX_INSTANCE_ID = 0xFFFF


def color_table(label_set: LabelSet, device: torch.device) -> torch.Tensor:
    """``[max id + 1]`` int64 packed ``0x00RRGGBB`` category colors (void and unknown ids: gray)."""
    size = max(*(c.id for c in label_set.categories), label_set.void_semantic) + 1
    table = torch.full((size,), 0x808080, dtype=torch.int64)
    for c in label_set.categories:
        r, g, b = c.color
        table[c.id] = (r << 16) | (g << 8) | b
    return table.to(device)


def frame_cloud(
    semantic: torch.Tensor,
    instance_ids: torch.Tensor,
    depth: np.ndarray,
    camera: CameraModel,
    colors: torch.Tensor,
    *,
    stride: int = 1,
) -> np.ndarray:
    """The frame's cloud as a :data:`POINT_DTYPE` record array (see the module docstring).

    Args:
        semantic: ``[H, W]`` category id per pixel (device).
        instance_ids: ``[H, W]`` instance id per pixel, 0 for none (device).
        depth: ``[h, w]`` float32 meters, NaN where invalid, aligned with the image (any size).
        camera: the model of the depth image's camera (any size; rescaled to ``H x W``).
        colors: :func:`color_table` on the device.
        stride: keep every ``stride``-th pixel in each axis.
    """
    h, w = semantic.shape
    depth = aligned_depth(depth, (h, w))
    device = semantic.device
    cloud = label_cloud(
        torch.from_numpy(np.ascontiguousarray(depth)).to(device),
        semantic,
        instance_ids,
        camera.scaled(w, h),
        stride=stride,
    )
    category = cloud.category.clamp(0, colors.numel() - 1)
    rgb = colors[category].to(torch.int32)
    label = (cloud.category << 16) | (cloud.instance & MAX_INSTANCE_ID)
    packed = torch.cat(
        [cloud.xyz.contiguous().view(torch.int32), rgb[:, None], label.to(torch.int32)[:, None]], dim=1
    )
    return packed.cpu().numpy().view(POINT_DTYPE).reshape(-1)
