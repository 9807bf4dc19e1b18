"""ONNX Runtime backend: CPU everywhere; CUDA (with I/O binding to PyTorch tensors) where installed.

On the CPU the backend runs the model's INT8 companion (``M.int8.onnx``, made by ``panoptic-ros
quantize``; see :mod:`panoptic_ros.backends.int8_onnx`) when one made from this very model lies next
to it (``precision="auto"``, the default), or insists on it (``"int8"``), or runs the float network
(``"fp32"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from panoptic_ros.backends.base import Backend, BackendError, TensorInfo
from panoptic_ros.backends.int8_onnx import companion_path, current_companion, remedy
from panoptic_ros.models.spec import ModelSpec

#: the values of the ``precision`` option
PRECISIONS = ("auto", "fp32", "int8")

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(uint8)": torch.uint8,
    "tensor(bool)": torch.bool,
}


def _info(arg: object) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)  # type: ignore[attr-defined]
    return TensorInfo(arg.name, shape, _ORT_TYPES.get(arg.type, torch.float32))  # type: ignore[attr-defined]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CPU, or on CUDA through its TensorRT / CUDA execution providers (see
    :func:`select_providers`) with inputs and outputs bound to PyTorch device memory.

    ``precision`` (CPU): ``auto`` runs the model's current INT8 companion when there is one, else the
    float network; ``int8`` requires the companion; ``fp32`` runs the float network. On CUDA the
    float network runs (``int8`` is refused: TensorRT's own INT8 is ``panoptic-ros build-engine --int8``).
    ``session_path`` is the file the session loaded.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        spec: ModelSpec,
        device: torch.device,
        *,
        threads: int = 0,
        tensorrt_provider: bool = True,
        fp16: bool = True,
        precision: str = "auto",
    ) -> None:
        super().__init__(model_path, spec, device)
        import onnxruntime as ort

        self.session_path = self._session_file(precision)
        self.precision = "int8" if self.session_path != self.model_path else "fp32"

        providers = select_providers(
            device,
            ort.get_available_providers(),
            tensorrt_provider=tensorrt_provider,
            fp16=fp16,
            cache_dir=self.model_path.parent,
        )
        options = ort.SessionOptions()
        # ONNX Runtime's workers spin after each run by default; in this pipeline PyTorch fusion
        # runs right after inference on the same cores, so spinning only steals its CPU time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                str(self.session_path), sess_options=options, providers=providers
            )
        except Exception as err:  # onnxruntime raises its own exception types for broken models
            raise BackendError(f"onnxruntime cannot load {self.session_path}: {err}") from err
        self._inputs = tuple(_info(i) for i in self._session.get_inputs())
        self._outputs = tuple(_info(o) for o in self._session.get_outputs())
        self._output_names = [o.name for o in self._outputs]

    def _session_file(self, precision: str) -> Path:
        """The file to load for ``precision``: the model or its INT8 companion (see the class)."""
        if precision not in PRECISIONS:
            raise BackendError(
                f"precision={precision!r} must be one of {', '.join(PRECISIONS)} for onnxruntime"
            )
        if self.device.type != "cpu":
            if precision == "int8":
                raise BackendError(
                    "onnxruntime runs INT8 companions on the CPU only; on a GPU build a TensorRT INT8 engine "
                    "(panoptic-ros build-engine --int8 --calib IMAGES_OR_BAG) or set precision auto"
                )
            return self.model_path
        if precision == "fp32":
            return self.model_path
        companion = current_companion(self.model_path)
        if companion.path is not None:
            log.info(
                "onnxruntime on the CPU: INT8 companion %s (precision fp32 runs the float model)",
                companion.path,
            )
            return companion.path
        if precision == "int8":
            why = (
                companion.problem
                or f"{self.model_path} has no INT8 companion ({companion_path(self.model_path).name})"
            )
            raise BackendError(f"precision int8 asked for, but {why}; {remedy(self.model_path)}")
        if companion.problem:
            log.warning(
                "onnxruntime: running the float model: %s; %s", companion.problem, remedy(self.model_path)
            )
        return self.model_path

    def describe(self) -> str:
        """With the precision on the CPU; on CUDA the providers choose theirs (TensorRT's FP16)."""
        if self.device.type != "cpu":
            return super().describe()
        return f"{self.name} {self.precision} on {self.device}"

    def _infer(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type == "cuda":
            return self._infer_bound(inputs)
        feeds = {name: tensor.detach().contiguous().numpy() for name, tensor in inputs.items()}
        results = self._session.run(self._output_names, feeds)
        return {
            name: torch.from_numpy(np.ascontiguousarray(r))
            for name, r in zip(self._output_names, results, strict=True)
        }

    def _infer_bound(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """CUDA: bind PyTorch device memory directly (no host round trip)."""
        binding = self._session.io_binding()
        for name, given in inputs.items():
            tensor = given.contiguous()
            binding.bind_input(
                name,
                "cuda",
                self.device.index or 0,
                _np_dtype(tensor.dtype),
                tuple(tensor.shape),
                tensor.data_ptr(),
            )
        for name in self._output_names:
            binding.bind_output(name, "cuda", self.device.index or 0)
        torch.cuda.current_stream(self.device).synchronize()
        self._session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        return {
            name: torch.from_dlpack(o.to_dlpack())
            if hasattr(o, "to_dlpack")
            else torch.from_numpy(o.numpy()).to(self.device)
            for name, o in zip(self._output_names, outs, strict=True)
        }

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
        super().close()


def select_providers(
    device: torch.device,
    available: list[str],
    *,
    tensorrt_provider: bool = True,
    fp16: bool = True,
    cache_dir: Path | None = None,
) -> list[str | tuple[str, dict[str, object]]]:
    """ONNX Runtime execution providers for ``device``, best first: on CUDA the TensorRT provider
    (where installed and wanted; engines cached in ``cache_dir``), then CUDA, then the CPU as the
    fallback for unsupported nodes; on the CPU the CPU provider alone.

    Raises:
        BackendError: CUDA asked for but this onnxruntime has no CUDA provider.
    """
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendError(
            f"onnxruntime here has no CUDA provider (has {available}); install onnxruntime-gpu "
            "or run on the CPU (device cpu) or with the torch backend (the node's parameters `device` / "
            "`backend`, the command line's --device / --backend)"
        )
    index = device.index or 0
    providers: list[str | tuple[str, dict[str, object]]] = []
    if tensorrt_provider and "TensorrtExecutionProvider" in available:
        trt_options: dict[str, object] = {"device_id": index, "trt_fp16_enable": fp16}
        if cache_dir is not None:
            trt_options |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache_dir),
                "trt_timing_cache_enable": True,
            }
        providers.append(("TensorrtExecutionProvider", trt_options))
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return providers


def _np_dtype(dtype: torch.dtype) -> type:
    return {
        torch.float32: np.float32,
        torch.float16: np.float16,
        torch.int64: np.int64,
        torch.int32: np.int32,
        torch.uint8: np.uint8,
    }[dtype]
