"""The one interface every inference backend implements.

A backend is made from a model file and its :class:`~panoptic_ros.models.spec.ModelSpec`, reports its
inputs and outputs, and maps named tensors to named tensors on its device: ``infer`` takes PyTorch
tensors (on the backend's device) and returns PyTorch tensors on the same device, never copying
outputs to the host on its own. It is a context manager; ``close`` frees what it holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar, NamedTuple

import torch

from panoptic_ros.errors import PanopticRosError
from panoptic_ros.models.spec import ModelSpec


class BackendError(PanopticRosError, RuntimeError):
    """A backend cannot load a model, or an inference call failed; the message says what to do."""


class TensorInfo(NamedTuple):
    """Name, shape (``None`` for a dynamic dimension) and dtype of a model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: torch.dtype


class Backend(ABC):
    """Base class of the backends; subclasses set :attr:`name` and implement the abstract methods."""

    name: ClassVar[str]

    def __init__(self, model_path: Path, spec: ModelSpec, device: torch.device) -> None:
        self.model_path = Path(model_path)
        self.spec = spec
        self.device = device
        self._closed = False
        # set by each subclass once its model is loaded
        self._inputs: tuple[TensorInfo, ...] = ()
        self._outputs: tuple[TensorInfo, ...] = ()

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """The model's inputs as the runtime reports them."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """The model's outputs as the runtime reports them."""
        return self._outputs

    @abstractmethod
    def _infer(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    @property
    def capturable(self) -> bool:
        """Whether :meth:`infer` only launches work on the current CUDA stream, without a device sync,
        so it can be captured in a CUDA graph with the work around it (False unless a backend says)."""
        return False

    def infer(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the model: named input tensors on :attr:`device` -> named output tensors on it."""
        if self._closed:
            raise BackendError(f"{self.name} backend for {self.model_path.name} is closed")
        expected = {info.name for info in self.inputs}
        if set(inputs) != expected:
            raise BackendError(
                f"{self.name}: inputs {sorted(inputs)} given, the model takes {sorted(expected)}"
            )
        return self._infer(inputs)

    def warmup(self, iterations: int = 2) -> None:
        """Run a few inferences on zeros at the model's input size (and batch 1)."""
        spec = self.spec.input
        x = torch.zeros(1, 3, spec.height, spec.width, device=self.device)
        for _ in range(iterations):
            self.infer({spec.name: x})

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.name} on {self.device}"
