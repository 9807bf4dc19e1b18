"""Whole-frame CUDA graphs: the network, the fixed-shape fusion and the label maps of a batch, captured
once per batch geometry and replayed.

After preprocessing, everything the pipeline does on the device for a batch (normalization, the
network, each frame's fixed-shape fusion with its segments measured in its camera frame, the category
maps and the segment table) has shapes that depend only on the batch geometry: the batch size, where
each frame sits in the model input, and the fusion thresholds. :class:`FrameGraph` captures that work
in one CUDA graph on its first batch of a geometry and replays it for the next ones: one launch
instead of a few hundred, and no device sync (the host then moves what it publishes in a few
transfers, :mod:`panoptic_ros.runtime.engine`). :class:`FrameGraphs` keeps the graphs of the last few
geometries.

A graph's outputs are its own static buffers, overwritten by the next replay; :meth:`FrameGraph.__call__`
copies them out (one copy kernel per output tensor), so a batch's results stay valid while the next
batch replays (the node's worker runs the network of the next batch while it publishes this one).
What a graph needs is checked by :func:`graph_refusal`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import torch
from torch.overrides import TorchFunctionMode

from panoptic_ros.errors import PanopticRosError

T = TypeVar("T")

#: Graphs kept (batch geometries: batch sizes x camera sizes x thresholds), least recently used dropped;
#: each holds its own memory pool (the network's activations, the grouping's scratch).
MAX_GRAPHS = 4


class GraphCaptureError(PanopticRosError, RuntimeError):
    """Capturing a whole-frame CUDA graph failed; the pipeline runs without it from then on."""


def _clone(value: T) -> T:
    """A copy of every tensor in a (nested) tuple, list or NamedTuple; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.clone()  # type: ignore[return-value]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_clone(v) for v in value))  # type: ignore[return-value]
    if isinstance(value, tuple | list):
        return type(value)(_clone(v) for v in value)  # type: ignore[return-value]
    return value


class FrameGraph(Generic[T]):
    """``body(input)`` captured as one CUDA graph for inputs shaped like ``example``.

    Args:
        body: the device work; it must make no device sync and allocate nothing the host reads.
        example: an input of the shape and dtype the graph takes (copied into the static input).
        warmup: eager runs on a side stream before the capture (lazy caches, kernel selection).
    """

    def __init__(self, body: Callable[[torch.Tensor], T], example: torch.Tensor, *, warmup: int = 2) -> None:
        if example.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs an input on a CUDA device, got {example.device}")
        if warmup < 1:
            raise ValueError("a CUDA graph needs at least one eager warm-up run (lazy constants, kernels)")
        self.device = example.device
        # the body and what it holds (the frames' geometry) stay alive as long as the graph reads them
        self._body = body
        with torch.cuda.device(self.device):  # the capture, its stream and the replays on this GPU
            self.input = example.clone()
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    body(self.input)
            current.wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            self._stream = torch.cuda.Stream(device=self.device)
            # thread-local: another thread (the node's worker publishing the previous batch) may copy
            # to the host while this one captures
            with (
                torch.cuda.graph(self.graph, stream=self._stream, capture_error_mode="thread_local"),
                _TensorsUsed() as used,
            ):
                self._outputs = body(self.input)
        # the graph reads these by address at every replay: cached constants (pixel grids, key tables,
        # class masks) must not be freed and reused when a cache drops them
        self._keepalive = used.tensors
        self.replays = 0

    def __call__(self, x: torch.Tensor) -> T:
        """Replay on ``x`` (same shape and dtype as the example); returns copies of the outputs, on the
        current stream of the graph's device (the replay is ordered after the input copy)."""
        with torch.cuda.device(self.device):
            self.input.copy_(x)
            self.graph.replay()
            self.replays += 1
            return _clone(self._outputs)


class _TensorsUsed(TorchFunctionMode):
    """Collects every tensor handed to a PyTorch function while active (the capture's inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.tensors: dict[int, torch.Tensor] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: object,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        for value in (*args, *(kwargs or {}).values()):
            for tensor in _tensors(value):
                self.tensors[id(tensor)] = tensor
        return func(*args, **(kwargs or {}))


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _tensors(v)]
    return []


class FrameGraphs(Generic[T]):
    """The graphs of the last :data:`MAX_GRAPHS` batch geometries, captured on first use.

    A capture that fails is not tried again: :attr:`failed` holds the error, and the caller runs the
    work eagerly from then on."""

    def __init__(self, limit: int = MAX_GRAPHS) -> None:
        self._graphs: OrderedDict[Hashable, FrameGraph[T]] = OrderedDict()
        self._limit = limit
        self.captures = 0
        self.failed: BaseException | None = None

    def run(self, key: Hashable, body: Callable[[torch.Tensor], T], x: torch.Tensor) -> T:
        """Replay the graph of ``key`` on ``x``, capturing ``body`` first when there is none.

        Raises:
            GraphCaptureError: the capture failed (:attr:`failed` is set; the batch is not served).
        """
        graph = self._graphs.get(key)
        if graph is None:
            try:
                graph = FrameGraph(body, x)
            except RuntimeError as err:
                self.failed = err
                self._graphs.clear()
                raise GraphCaptureError(
                    f"capturing the frame's CUDA graph failed ({err}); running without cuda_graph from "
                    "the next batch on"
                ) from err
            self.captures += 1
            self._graphs[key] = graph
            while len(self._graphs) > self._limit:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return graph(x)

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        self._graphs.clear()


def graph_refusal(
    *,
    device: torch.device,
    capturable: bool,
    fixed_shapes: bool,
    companions: int,
    center_slots: int | None,
    label_divisor: int,
) -> str | None:
    """Why a pipeline cannot run as a whole-frame CUDA graph, or None when it can.

    Args:
        device: the pipeline's device (must be CUDA).
        capturable: the backend's launches can be captured (PyTorch eager or compiled, without its
            own ``cuda_graphs``).
        fixed_shapes: the model family fuses with fixed shapes.
        companions: companion models (their reframing is not captured).
        center_slots: the fusion's center slots (None: not a center-offset fusion).
        label_divisor: instance numbers must stay below it without a check on the host.
    """
    if device.type != "cuda":
        return f"a CUDA graph needs a CUDA device, not {device}"
    if not capturable:
        return (
            "the backend's work cannot be captured in a CUDA graph; use the torch backend without its "
            "own cuda_graphs option"
        )
    if not fixed_shapes:
        return "the model's decoder family has no fixed-shape fusion (only center-offset has)"
    if companions:
        return "models with companions are not captured"
    if center_slots is not None and center_slots >= label_divisor:
        return f"{center_slots} center slots do not fit label_divisor={label_divisor}; set fusion.top_k lower"
    return None
