"""A compact center-offset panoptic network (the Panoptic-DeepLab family) in plain PyTorch.

Shared encoder (strides 2..16, residual blocks, dilation at the deepest stage, a light ASPP), one
light decoder back to output stride 4 with skips from strides 4 and 8, and three heads:

- ``semantic``: class logits ``N x C x H x W``,
- ``center``: instance-center heatmap ``N x 1 x H x W`` (trained towards Gaussians, no sigmoid),
- ``offset``: ``N x 2 x H x W``, the vector (dy, dx) in input pixels from each pixel to its center.

Heads run at stride 4 and are upsampled bilinearly to the input size inside the network, so every
backend returns maps at the model's input resolution. With ``semantic_stride=2`` the semantic head
runs at stride 2 instead, on the stride-4 features brought up and fused with the stem's stride-2
features: thin parts (limbs, wheels, poles) a few pixels wide survive, and mask borders land to within
a pixel or two. The center and offset heads stay at stride 4 (centers and offsets are smooth inside an
instance). Input: ``N x 3 x H x W`` float, normalized
RGB (see the model spec); H and W multiples of 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_NAMES = ("semantic", "center", "offset")


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(channels, channels, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class LightASPP(nn.Module):
    """1x1 branch and two dilated 3x3 branches fused by a 1x1 conv, plus image pooling added by
    broadcasting (no shape-dependent ops in the exported graph)."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, int] = (2, 4)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn(cin, cout, k=1), *(conv_bn(cin, cout, dilation=r) for r in rates)]
        )
        self.pool = conv_bn(cin, cout, k=1)
        self.project = conv_bn(cout * (len(rates) + 1), cout, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1)) + self.pool(
            x.mean(dim=(2, 3), keepdim=True)
        )


class Head(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.body = conv_bn(cin, mid)
        self.out = nn.Conv2d(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class CompactPanopticNet(nn.Module):
    """See the module docstring. ``width`` scales every channel count; ``semantic_stride`` (4 or 2) is
    the output stride of the semantic head."""

    def __init__(self, num_classes: int, width: int = 32, semantic_stride: int = 4) -> None:
        super().__init__()
        if semantic_stride not in (2, 4):
            raise ValueError(f"semantic_stride must be 2 or 4, got {semantic_stride}")
        w = width
        self.num_classes = num_classes
        self.width = width
        self.semantic_stride = semantic_stride
        self.stem = nn.Sequential(conv_bn(3, w // 2, stride=2), conv_bn(w // 2, w // 2))  # /2
        self.stage4 = nn.Sequential(conv_bn(w // 2, w, stride=2), ResidualBlock(w))  # /4
        self.stage8 = nn.Sequential(
            conv_bn(w, 2 * w, stride=2), ResidualBlock(2 * w), ResidualBlock(2 * w)
        )  # /8
        self.stage16 = nn.Sequential(
            conv_bn(2 * w, 3 * w, stride=2), ResidualBlock(3 * w), ResidualBlock(3 * w, dilation=2)
        )  # /16
        self.aspp = LightASPP(3 * w, 2 * w)
        self.skip8 = conv_bn(2 * w, w, k=1)
        self.fuse8 = conv_bn(3 * w, 2 * w)
        self.skip4 = conv_bn(w, w // 2, k=1)
        self.fuse4 = nn.Sequential(conv_bn(2 * w + w // 2, 2 * w), conv_bn(2 * w, 2 * w))
        if semantic_stride == 2:
            self.reduce4 = conv_bn(2 * w, w, k=1)
            self.fuse2 = conv_bn(w + w // 2, w)
            self.semantic_head = Head(w, w, num_classes)
        else:
            self.semantic_head = Head(2 * w, w, num_classes)
        self.center_head = Head(2 * w, w // 2, 1)
        self.offset_head = Head(2 * w, w, 2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f2 = self.stem(image)
        f4 = self.stage4(f2)
        f8 = self.stage8(f4)
        f16 = self.aspp(self.stage16(f8))
        x = self.fuse8(torch.cat([_up(f16, 2), self.skip8(f8)], dim=1))
        x = self.fuse4(torch.cat([_up(x, 2), self.skip4(f4)], dim=1))
        if self.semantic_stride == 2:
            x2 = self.fuse2(torch.cat([_up(self.reduce4(x), 2), f2], dim=1))
            semantic = _up(self.semantic_head(x2), 2)
        else:
            semantic = _up(self.semantic_head(x), 4)
        return semantic, _up(self.center_head(x), 4), _up(self.offset_head(x), 4)


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


@torch.no_grad()
def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` in a ``Sequential`` into the
    convolution (weights scaled, bias added) and replace it with ``Identity``. In place; returns
    ``model``. The result computes the same function in eval mode, and its parameter names are the
    initializer names of the exported ONNX graph, so the ONNX file alone carries the weights."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, bn = module[index], module[index + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bias)
            module[index + 1] = nn.Identity()
    return model
