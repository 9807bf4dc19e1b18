"""PyTorch backend: the network module itself, rebuilt from the spec, weights read from the ONNX file.

The spec's ``architecture`` names the module class (``"package.module:Class"``, only inside
``panoptic_ros``) and its arguments; with ``fused_batchnorm`` the module's BatchNorm layers are folded
first, so its parameter names equal the ONNX initializer names and the ONNX file is the only weight
file. A ``.pt`` state dict next to the model (same stem) is used instead when present.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from panoptic_ros.backends.base import Backend, BackendError, TensorInfo
from panoptic_ros.models.spec import ModelSpec


def build_module(spec: ModelSpec) -> nn.Module:
    """Instantiate the network class named in ``spec.architecture`` (without weights)."""
    arch = spec.architecture
    if not arch or "module" not in arch:
        raise BackendError(
            f"model {spec.name!r} has no 'architecture' in its spec, so the torch backend cannot rebuild it; "
            "use --backend onnxruntime"
        )
    module_name, _, class_name = str(arch["module"]).partition(":")
    if not module_name.startswith("panoptic_ros."):
        raise BackendError(
            f"architecture module {module_name!r} is outside panoptic_ros; refusing to import it"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise BackendError(f"cannot find network class {arch['module']!r}: {err}") from err
    module = cls(**dict(arch.get("kwargs", {})))
    if arch.get("fused_batchnorm"):
        from panoptic_ros.models.center_offset_net import fuse_batchnorm

        module = fuse_batchnorm(module.eval())
    return module


def onnx_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every initializer of an ONNX file as a tensor, by name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    return {
        init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in proto.graph.initializer
    }


class _GraphRunner:
    """One captured CUDA graph for one input shape: static input/output buffers, replayed per call.

    The outputs it returns are the graph's static buffers, valid until the next call of the same shape
    (the pipeline consumes them before the next inference).
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, warmup: int = 3) -> None:
        self.device = example.device
        with torch.cuda.device(self.device):  # capture and replay on the module's GPU (cuda:N too)
            self.input = example.clone()
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):  # warm up outside the capture, as CUDA graphs require
                for _ in range(warmup):
                    module(self.input)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=torch.cuda.Stream(device=self.device)):
                self.outputs = module(self.input)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.cuda.device(self.device):
            self.input.copy_(x)
            self.graph.replay()
        return self.outputs


class TorchBackend(Backend):
    """The network module in PyTorch: eager by default; ``compile=True`` runs it through
    ``torch.compile`` (fixed shapes); ``cuda_graphs=True`` (CUDA only) captures one CUDA graph per
    input shape and replays it, removing the per-layer launch cost."""

    name = "torch"

    def __init__(
        self,
        model_path: Path,
        spec: ModelSpec,
        device: torch.device,
        *,
        compile: bool = False,
        cuda_graphs: bool = False,
        precision: str = "fp32",
    ) -> None:
        super().__init__(model_path, spec, device)
        if precision != "fp32":
            raise BackendError(
                f"the torch backend runs fp32, not {precision}; for int8 use onnxruntime on the CPU "
                "(with the model's INT8 companion) or tensorrt, or set precision auto"
            )
        if cuda_graphs and device.type != "cuda":
            raise BackendError(f"cuda_graphs needs a CUDA device, not {device}; drop the option on the CPU")
        module = build_module(spec)
        state_path = self.model_path.with_suffix(".pt")
        if state_path.is_file():
            weights = torch.load(state_path, map_location="cpu", weights_only=True)
        else:
            weights = onnx_weights(self.model_path)
        expected = module.state_dict()
        missing = [k for k in expected if k not in weights and not k.endswith("num_batches_tracked")]
        if missing:
            raise BackendError(
                f"{model_path}: weights for {len(missing)} parameters of {type(module).__name__} are missing "
                f"(first: {missing[:3]}); the file does not match the spec's architecture"
            )
        shapes = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
        if shapes:
            raise BackendError(
                f"{model_path}: parameter shapes differ from the architecture for {shapes[:3]}"
            )
        module.load_state_dict({k: weights[k] for k in expected if k in weights}, strict=False)
        self.module = module.eval().to(device)
        self._forward = torch.compile(self.module, dynamic=False) if compile else self.module
        self._graphs: dict[tuple[int, ...], _GraphRunner] | None = {} if cuda_graphs else None
        h, w = spec.input.height, spec.input.width
        self._inputs = (TensorInfo(spec.input.name, (None, 3, h, w), torch.float32),)
        self._outputs = tuple(
            TensorInfo(name, (None, None, h, w), torch.float32) for name in spec.outputs.values()
        )

    @property
    def capturable(self) -> bool:
        """On CUDA without its own graphs: the module's kernels can join a whole-frame CUDA graph."""
        return self.device.type == "cuda" and self._graphs is None

    @torch.inference_mode()
    def _infer(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs[self.spec.input.name]
        if self._graphs is not None:
            runner = self._graphs.get(tuple(x.shape))
            if runner is None:
                runner = self._graphs[tuple(x.shape)] = _GraphRunner(self._forward, x)
            result = runner(x)
        else:
            result = self._forward(x)
        if isinstance(result, torch.Tensor):
            result = (result,)
        return dict(zip(self.spec.outputs.values(), result, strict=True))

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]
        self._forward = None  # type: ignore[assignment]
        self._graphs = None
        super().close()
