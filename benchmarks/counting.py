"""Counting launch-bound work: top-level PyTorch ops per stage and host reads of device data.

Both counts are properties of the code, not of the machine: the same on the CPU and on a GPU (where
each op is a kernel launch and each host read a device synchronisation), which is why they can be
measured, and kept from growing, without a GPU.

* :func:`top_level_ops`: from a PyTorch profiler trace, the ``aten::`` ops directly under each
  ``panoptic::<stage>`` label that :class:`~panoptic_ros.runtime.pipeline.PanopticPipeline` and
  :class:`~panoptic_ros.runtime.engine.FrameEngine` put around their stages (ops nested inside
  another op are not counted again).
* :func:`count_host_reads`: the Python-level calls that read device data back to the host (a copy
  to the host, ``nonzero``, ``unique``, ``item``, ``tolist``, ``bool``/``int``/``float`` of a tensor,
  indexing with a boolean mask), counted while a block runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: Labels of the stages after the network.
AFTER_NETWORK_LABELS = (
    "panoptic::fusion",
    "panoptic::postprocess",
    "panoptic::tracking",
    "panoptic::outputs",
)

_TORCH_READS = ("nonzero", "unique", "masked_select")
_TENSOR_READS = ("cpu", "nonzero", "item", "tolist", "__bool__", "__int__", "__float__")


def top_level_ops(events: Any, labels: tuple[str, ...] = AFTER_NETWORK_LABELS) -> dict[str, int]:
    """``aten::`` ops whose parent is one of ``labels`` in a profiler's ``events()``, per label."""
    counts = dict.fromkeys(labels, 0)
    for event in events:
        parent = event.cpu_parent
        if parent is not None and parent.name in counts and event.name.startswith("aten::"):
            counts[parent.name] += 1
    return counts


@contextmanager
def count_host_reads() -> Iterator[dict[str, int]]:
    """Count host reads (see the module docstring) while the block runs; the dict fills as it runs."""
    counts: dict[str, int] = {}
    originals: list[tuple[object, str, Callable[..., Any]]] = []
    unwrapped: dict[Callable[..., Any], Callable[..., Any]] = {}

    def wrap(owner: object, name: str) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] = counts.get(name, 0) + 1
            return original(*args, **kwargs)

        unwrapped[counted] = original
        setattr(owner, name, counted)

    for name in _TORCH_READS:
        wrap(torch, name)
    for name in _TENSOR_READS:
        wrap(torch.Tensor, name)
    try:
        with _MaskIndexCounter(counts, unwrapped):
            yield counts
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


class _MaskIndexCounter(TorchFunctionMode):
    """Counts ``tensor[mask]`` reads and writes (a boolean tensor among the indices) without touching
    ``torch.Tensor.__getitem__`` (which would leave CPython's sequence slot set for the process)."""

    def __init__(
        self, counts: dict[str, int], unwrapped: dict[Callable[..., Any], Callable[..., Any]]
    ) -> None:
        super().__init__()
        self.counts = counts
        self.unwrapped = unwrapped  # a counted method reaches the mode as itself: call what it wraps

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: object,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and len(args) > 1:
            index = args[1]
            parts = index if isinstance(index, tuple) else (index,)
            if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                self.counts["mask_index"] = self.counts.get("mask_index", 0) + 1
        return self.unwrapped.get(func, func)(*args, **(kwargs or {}))
