"""3D positions of segments from an aligned depth image and a pinhole camera model."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch

from panoptic_ros.errors import ConfigError

#: Depth encodings read as meters: ``16UC1`` holds millimeters, ``32FC1`` meters.
DEPTH_SCALE = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}


class CameraModel(NamedTuple):
    """A pinhole camera (``sensor_msgs/CameraInfo.k``): focal lengths and principal point in pixels
    of an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: object, width: int, height: int) -> CameraModel:
        """From the 9 row-major values of an intrinsic matrix ``K``.

        Raises:
            ConfigError: K does not hold 9 values, or a focal length is not positive.
        """
        values = np.asarray(k, dtype=np.float64).reshape(-1)
        if values.size != 9:
            raise ConfigError(f"camera_info K holds {values.size} values; a 3x3 matrix has 9")
        fx, fy = float(values[0]), float(values[4])
        if not (fx > 0 and fy > 0) or width <= 0 or height <= 0:
            raise ConfigError(
                f"camera_info is not calibrated: fx={fx}, fy={fy}, {width}x{height} (all must be > 0)"
            )
        return cls(fx, fy, float(values[2]), float(values[5]), int(width), int(height))

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera for an image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return CameraModel(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)


def depth_in_meters(depth: np.ndarray, encoding: str) -> np.ndarray:
    """A depth image as float32 meters, NaN where invalid (0, negative, NaN or infinite).

    Raises:
        ConfigError: an encoding other than ``16UC1``/``mono16`` (millimeters) or ``32FC1`` (meters).
    """
    scale = DEPTH_SCALE.get(encoding)
    if scale is None:
        raise ConfigError(f"depth encoding {encoding!r} is not a depth format; use 16UC1 (mm) or 32FC1 (m)")
    from panoptic_ros.core.geometry_cpu import depth_meters  # compiled: imported when first needed

    meters = depth_meters(depth, scale)
    if meters is None:  # not a native uint16 or float32 image: numpy's passes, the same values
        meters = depth.astype(np.float32) * np.float32(scale)
        meters[~(np.isfinite(meters) & (meters > 0))] = np.nan
    return meters


def aligned_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A depth image aligned with a camera frame of ``size`` ``(height, width)``: itself at that size,
    else resized to it (nearest: no depth mixed across an edge).

    Raises:
        ValueError: not a one-channel ``[H, W]`` image.
    """
    if depth.ndim != 2 or not depth.size:
        raise ValueError(f"a depth image must be [H, W] with pixels, got shape {depth.shape}")
    height, width = size
    if depth.shape == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def segment_positions(
    label_map: torch.Tensor,
    ids: torch.Tensor,
    centroids: torch.Tensor,
    depth: torch.Tensor,
    camera: CameraModel,
    *,
    min_pixels: int = 10,
    weights: torch.Tensor | None = None,
    kernels: bool | None = None,
    semantic: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame positions of segments: the median valid depth inside each mask, back-projected
    through the segment's centroid pixel.

    Args:
        label_map: ``[H, W]`` integer segment label of each pixel; with ``semantic``, the thing ids
            (0 where none): a pixel's label is then its id where positive, else ``-1 - semantic``.
        ids: ``[S]`` the labels of the segments to place (values of ``label_map``).
        centroids: ``[S, 2]`` ``(x, y)`` pixel centroids of those segments (in ``camera``'s image).
        depth: ``[H, W]`` float meters, NaN where invalid, aligned with ``label_map``; a depth is valid
            where it is finite and positive.
        camera: the model of the image the centroids are in.
        min_pixels: segments with fewer valid depth pixels get no position.
        weights: ``[H, W]`` integer, how many pixels each pixel stands for (a map at the model's
            resolution measured for a larger camera image, with the depth sampled at each of its
            pixels); the median and the count are then over the pixels it stands for. None: 1 each.
        kernels: the medians by the compiled loop of :mod:`panoptic_ros.core.geometry_cpu` (the same
            numbers, about 10x faster on the CPU). None: whenever the map is on the CPU; True: always
            (the map must be on the CPU); False: the tensor form (the one on CUDA).
        semantic: ``[H, W]`` integer category of each pixel, or None (``label_map`` holds the labels).
    Returns:
        ``[S, 3]`` float32 ``(x, y, z)`` meters in the optical frame (x right, y down, z forward) and
        ``[S]`` bool validity.

    The median is the lower one (of ``n`` pixels the ``(n - 1) // 2``-th smallest depth). The tensor
    form makes one sort of the valid pixels' keys, each packing the segment (high bits), the depth's
    float32 bits (which order positive floats) and the pixel's weight (low bits), whatever the number
    of segments (numpy's sort on the CPU); the compiled loops read the map as runs of equal labels
    and select every segment's median from the depth's bits, with no sort.

    Raises:
        ValueError: more segments or larger weights than a 63-bit key holds (beyond 2^31 in all; the
            tensor form), or ``kernels`` asked for with a map that is not on the CPU.
    """
    device = label_map.device
    if kernels and device.type != "cpu":
        raise ValueError(f"the compiled depth medians run on the CPU; this map is on {device}")
    if device.type == "cpu" and kernels is not False:
        from panoptic_ros.core.geometry_cpu import segment_depths

        medians, valid_np = segment_depths(
            label_map.numpy(),
            ids.numpy(),
            depth.numpy(),
            weights.numpy() if weights is not None else None,
            min_pixels=min_pixels,
            semantic=semantic.numpy() if semantic is not None else None,
        )
        valid = torch.from_numpy(valid_np)
        return _back_project(centroids, torch.from_numpy(medians), valid, camera)
    if semantic is not None:
        label_map = torch.where(label_map > 0, label_map.long(), -1 - semantic.to(label_map.device).long())
    count = ids.numel()
    index = _segment_index(label_map, ids).reshape(-1)
    z = depth.reshape(-1).to(device=device, dtype=torch.float32)
    weight = weights.reshape(-1).to(device=device, dtype=torch.int64) if weights is not None else None
    weight_bits = max(int(weight.max()), 1).bit_length() if weight is not None and weight.numel() else 1
    if count.bit_length() + 31 + weight_bits > 63:
        raise ValueError(f"{count} segments with pixel weights up to 2^{weight_bits} do not fit a 63-bit key")
    taken = (index < count) & (z > 0) & torch.isfinite(z)
    depth_bits = z.view(torch.int32).to(torch.int64) & 0x7FFFFFFF  # positive floats: order-preserving
    key = (torch.where(taken, index, count) << 31 | depth_bits) << weight_bits
    key |= torch.where(taken, weight if weight is not None else 1, 0)
    key = torch.from_numpy(np.sort(key.numpy())) if device.type == "cpu" else torch.sort(key).values
    segment = key >> (31 + weight_bits)
    weight = key & ((1 << weight_bits) - 1)  # 0 for the pixels left out, which sort last
    median = ((key >> weight_bits) & 0x7FFFFFFF).to(torch.int32).view(torch.float32)
    reach = torch.cumsum(weight, 0)  # pixels up to and including each sorted one
    total = torch.zeros(count + 1, dtype=torch.int64, device=device).index_add_(0, segment, weight)[:count]
    rank = torch.cumsum(total, 0) - total + (total - 1).clamp(min=0) // 2  # of each lower median
    pick = torch.searchsorted(reach, rank, right=True).clamp(max=max(z.numel() - 1, 0))
    valid = total >= max(min_pixels, 1)
    z_median = median[pick] if z.numel() else torch.zeros(count, device=device)
    return _back_project(centroids, torch.where(valid, z_median, 0.0), valid, camera)


def _segment_index(label_map: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``label_map`` (any shape, integer labels) as the position of each pixel's label in ``ids`` (``[S]``,
    unique), ``S`` where the label is not one of them; int64 on the map's device."""
    count = ids.numel()
    if count == 0:
        return torch.zeros(label_map.shape, dtype=torch.int64, device=label_map.device)
    sorted_ids, order = torch.sort(ids.to(device=label_map.device, dtype=torch.int64))
    labels = label_map.to(torch.int64)
    pos = torch.searchsorted(sorted_ids, labels.reshape(-1)).clamp(max=count - 1).view(labels.shape)
    return torch.where(torch.take(sorted_ids, pos) == labels, torch.take(order, pos), count)


def _back_project(
    centroids: torch.Tensor, z: torch.Tensor, valid: torch.Tensor, camera: CameraModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[S, 3]`` float32 optical-frame points of pixel ``centroids`` ``[S, 2]`` (x, y) at depths ``z``
    ``[S]`` (0 where not ``valid``), and ``valid``; on ``z``'s device. On the CPU in one compiled call
    (:func:`~panoptic_ros.core.geometry_cpu.back_project`, the same float32 steps; PyTorch's per-call
    overhead made a dozen rows cost 0.1 ms, numpy's dozen calls 0.03-0.09 ms in a frame)."""
    if centroids.shape != (z.numel(), 2) or valid.shape != z.shape:
        raise ValueError(
            f"{tuple(centroids.shape)} centroids and {tuple(valid.shape)} flags for {tuple(z.shape)} depths"
        )
    if z.device.type == "cpu":
        from panoptic_ros.core.geometry_cpu import back_project  # compiled: imported when first needed

        points = back_project(
            np.ascontiguousarray(centroids.numpy(), dtype=np.float32),
            np.ascontiguousarray(z.numpy(), dtype=np.float32),
            np.ascontiguousarray(valid.numpy(), dtype=np.bool_),
            float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy),
        )  # fmt: skip
        return torch.from_numpy(points), valid
    c = centroids.to(device=z.device, dtype=torch.float32)
    positions = torch.stack(
        ((c[:, 0] - camera.cx) * z / camera.fx, (c[:, 1] - camera.cy) * z / camera.fy, z), dim=1
    )
    return torch.where(valid[:, None], positions, 0.0), valid


class LabelCloud(NamedTuple):
    """A labelled point cloud on the device: ``xyz`` ``[N, 3]`` float32 meters in the optical frame,
    ``category`` ``[N]`` int64 category ids and ``instance`` ``[N]`` int64 instance ids (0: none)."""

    xyz: torch.Tensor
    category: torch.Tensor
    instance: torch.Tensor


def label_cloud(
    depth: torch.Tensor,
    semantic: torch.Tensor,
    instance: torch.Tensor,
    camera: CameraModel,
    *,
    stride: int = 1,
    keep: torch.Tensor | None = None,
) -> LabelCloud:
    """Back-project every ``stride``-th pixel (in both axes) with valid depth, with its labels.

    Args:
        depth: ``[H, W]`` float meters, NaN where invalid, aligned with the label maps.
        semantic: ``[H, W]`` integer category id per pixel.
        instance: ``[H, W]`` integer instance id per pixel (0 for none).
        camera: the model of an ``H x W`` image.
        stride: keep pixels whose row and column are multiples of ``stride`` (decimation).
        keep: ``[H, W]`` bool, pixels that may enter the cloud (e.g. not void); None: all.
    Returns:
        the points in row-major pixel order (no host synchronization before the caller reads them).
    """
    stride = max(int(stride), 1)
    z = depth[::stride, ::stride].to(torch.float32)
    rows = torch.arange(0, depth.shape[0], stride, device=z.device, dtype=torch.float32)
    cols = torch.arange(0, depth.shape[1], stride, device=z.device, dtype=torch.float32)
    valid = torch.isfinite(z) & (z > 0)
    if keep is not None:
        valid &= keep[::stride, ::stride]
    index = torch.nonzero(valid.reshape(-1)).squeeze(1)
    zs = z.reshape(-1)[index]
    v = rows[index // z.shape[1]]
    u = cols[index % z.shape[1]]
    xyz = torch.stack([(u - camera.cx) * zs / camera.fx, (v - camera.cy) * zs / camera.fy, zs], dim=1)
    return LabelCloud(
        xyz,
        semantic[::stride, ::stride].reshape(-1)[index].to(torch.int64),
        instance[::stride, ::stride].reshape(-1)[index].to(torch.int64),
    )
