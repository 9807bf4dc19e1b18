"""Companion networks: a second model run on the same frames that provides some of the fusion's roles.

A model spec may name ``companions`` (role -> a model file beside it), e.g. a semantic model next to an
instance model. :class:`Companion` runs one on the batch and brings its role outputs into the main
model's input frame (:func:`reframe`), so the fusion sees all roles at one resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from panoptic_ros.backends.base import Backend
from panoptic_ros.backends.registry import create_backend, model_spec
from panoptic_ros.core.preprocess import Orders, Preprocessor, ResizeMode, Transform
from panoptic_ros.errors import ConfigError
from panoptic_ros.models.spec import ModelSpec


def reframe(
    tensor: torch.Tensor,
    source: Transform,
    source_size: tuple[int, int],
    target: Transform,
    target_size: tuple[int, int],
) -> torch.Tensor:
    """Bring a frame's output (``[C, h, w]`` float or ``[h, w]`` integer), computed on an input of
    ``source_size`` where the frame sat at ``source``, into the frame of an input of ``target_size``
    where it sits at ``target``, at that input's resolution (bilinear for floats, nearest for
    integers; outside the frame: zeros).
    """
    integer = not tensor.is_floating_point()
    image = tensor.float()[None] if tensor.dim() == 3 else tensor.float()[None, None]
    scale_y = image.shape[-2] / source_size[0]
    scale_x = image.shape[-1] / source_size[1]
    top, left = round(source.top * scale_y), round(source.left * scale_x)
    height = max(round(source.height * scale_y), 1)
    width = max(round(source.width * scale_x), 1)
    content = image[..., top : top + height, left : left + width]
    mode = "nearest" if integer else "bilinear"
    extra = {} if integer else {"align_corners": False}
    content = F.interpolate(content, size=(target.height, target.width), mode=mode, **extra)
    out = content.new_zeros((*content.shape[:-2], *target_size))
    out[..., target.top : target.top + target.height, target.left : target.left + target.width] = content
    out = out[0] if tensor.dim() == 3 else out[0, 0]
    return out.to(tensor.dtype) if integer else out


@dataclass
class Companion:
    """A second network on the same frames: its backend, preprocessing and the roles it provides."""

    spec: ModelSpec
    backend: Backend
    preprocess: Preprocessor
    roles: dict[str, str]  # role -> its output name

    @classmethod
    def open(
        cls,
        model: Path,
        role: str,
        relative: str,
        *,
        backend: str,
        device: torch.device,
        resize: ResizeMode,
        options: Mapping[str, Any] | None,
    ) -> Companion:
        """Load the companion ``relative`` (to ``model``'s folder) that provides ``role``.

        Raises:
            ConfigError: its spec maps no output to ``role``.
        """
        path = model.parent / relative
        spec = model_spec(path)
        if role not in spec.outputs:
            raise ConfigError(
                f"{model.name}: companion {relative} for role {role!r} has no output for that role "
                f"in its spec (it maps {sorted(spec.outputs)})"
            )
        companion_backend = create_backend(backend, path, device=str(device), spec=spec, options=options)
        return cls(
            spec=spec,
            backend=companion_backend,
            preprocess=Preprocessor(spec.input, device, mode=resize),
            roles={role: spec.outputs[role]},
        )

    def run(
        self,
        images: Sequence[torch.Tensor],
        order: Orders,
        transforms: Sequence[Transform],
        target_size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """The role outputs for the uploaded ``images`` (channels in ``order``: one for all or one per
        image), in the frame of the main model's input of ``target_size`` where each image sits at
        ``transforms[i]``."""
        batch, own = self.preprocess.batch(images, order=order)
        out = self.backend.infer({self.spec.input.name: batch})
        source_size = (self.spec.input.height, self.spec.input.width)
        result = {}
        for role, name in self.roles.items():
            tensor = out[name]
            if own == list(transforms) and source_size == tuple(target_size):
                result[role] = tensor
                continue
            result[role] = torch.stack(
                [
                    reframe(tensor[i], own[i], source_size, transforms[i], target_size)
                    for i in range(len(images))
                ]
            )
        return result
