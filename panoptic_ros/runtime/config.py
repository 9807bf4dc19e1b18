"""The node's parameters as one table (name, default, range, meaning) and the validated record built
from their values. ROS-free: ``panoptic_ros.ros.params`` turns the table into parameter descriptors.

Parameters marked ``dynamic`` take effect at the next frame when changed at run time; the others are
read at configure and can only be changed while the node is unconfigured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from panoptic_ros.backends.registry import precision_options
from panoptic_ros.core.payload import DEFAULT_MAX_PIXELS
from panoptic_ros.errors import ConfigError
from panoptic_ros.runtime.engine import EngineParams
from panoptic_ros.tracking import TrackerParams

Value = bool | int | float | str | list[str]
#: Validates fusion threshold overrides into the model family's record (raises ConfigError).
FusionCheck = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    ``minimum``/``maximum`` bound numbers (``step`` for integers); ``choices`` lists allowed strings.
    A ``default`` of None means "from the model spec" (declared at configure, fusion thresholds).
    """

    name: str
    default: Value | None
    description: str
    minimum: float | None = None
    maximum: float | None = None
    step: int | None = None
    choices: tuple[str, ...] = ()
    dynamic: bool = False
    kind: type | None = None

    @property
    def value_type(self) -> type:
        if self.kind is not None:
            return self.kind
        if self.default is None:
            raise ConfigError(f"parameter {self.name} needs a kind when its default comes from the model")
        return type(self.default)

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigError` with the reason when ``value`` is not allowed."""
        expected = self.value_type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{self.name} must be a {expected.__name__}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.name}={value!r} is not one of {', '.join(self.choices)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.name} must be finite, got {value}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{self.name}={value} is below its minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{self.name}={value} is above its maximum {self.maximum}")


def _tracker_default(name: str) -> Any:
    return next(f.default for f in fields(TrackerParams) if f.name == name)


P = ParamSpec
PARAMETERS: tuple[ParamSpec, ...] = (
    # model and backend (read at configure)
    P("model", "", "ONNX model or TensorRT engine; empty: the shipped engines/panoptic_synthetic.onnx"),
    P("backend", "auto", "inference backend", choices=("auto", "tensorrt", "onnxruntime", "torch")),
    P("device", "auto", "auto, cpu, cuda or cuda:N"),
    P("precision", "auto",
      "network precision. auto: the backend's own (TensorRT fp16; ONNX Runtime on the CPU the model's "
      "INT8 companion M.int8.onnx when one made from this model lies next to it, else fp32; PyTorch "
      "fp32). int8: a TensorRT INT8 engine, or the companion on the CPU (refused without one)",
      choices=("auto", "fp32", "fp16", "int8")),
    P("resize", "resize", "fit frames to the model input by stretching or letterboxing",
      choices=("resize", "letterbox")),
    P("warmup_frames", 2,
      "blank frames through the whole frame path at configure and again on the serving threads at "
      "activate (at the model's size and a larger 4:3 size, with depth, batched as the cameras will be), so "
      "the first camera frames are not the slow ones", 0, 50, 1),
    P("cuda_graph", False,
      "run the network, the fixed-shape fusion and the label maps of each batch as one CUDA graph, "
      "captured per batch geometry (CUDA, torch backend, center-offset models; refused otherwise)"),
    P("overlap_network", True,
      "run the network of the next frames on one thread while another fuses, tracks and publishes the "
      "previous ones (more frames per second on few cores; off: one thread does everything in turn)"),
    P("side_thread", True,
      "draw a frame's overlay while a second thread expands its label images to the camera's size, "
      "where they are large (1280x720 and up: lower latency for a little more CPU); off: one thread"),
    P("camera_threads", 1,
      "make the results of a batch's cameras (tracking, instances, overlay, label images) on up to this "
      "many threads at once, each camera's frames in order; 1: one camera after another; 0: half the "
      "cores from 8 cores on (at most 8), one below", 0, 64, 1),
    # inputs
    P("image_topics", ["/camera/image_raw"],
      "camera topics; a name ending in /compressed is a sensor_msgs/CompressedImage, else an Image. "
      "Outputs of /ns/image_raw go to /ns/panoptic/..."),
    P("camera_info_topics", [""], "one per image topic ('' for none), or empty: no 3D positions"),
    P("depth_topics", [""],
      "aligned depth image per image topic (16UC1 mm or 32FC1 m; .../compressed: compressedDepth; "
      "'' for none)"),
    P("qos.mode", "match_publisher",
      "subscription QoS: match_publisher (the reliability the camera's publishers offer, re-evaluated "
      "as publishers come and go), sensor_data (best effort: receives from any publisher but loses "
      "images over ~500 KB without a large-image transport profile), explicit (qos.reliability)",
      choices=("sensor_data", "match_publisher", "explicit")),
    P("qos.reliability", "best_effort", "reliability in explicit mode", choices=("best_effort", "reliable")),
    P("qos.depth", 1, "subscription queue depth (the node keeps only the newest frame anyway)", 1, 100, 1),
    P("no_frames_timeout", 3.0,
      "seconds without a frame from a camera whose topic has publishers before a warning (log once, "
      "WARN on /diagnostics, naming the likely cause); 0: never", 0.0, 3600.0),
    P("output_qos_depth", 2, "queue depth of the (reliable) output publishers", 1, 10, 1),
    P("sync_tolerance", 0.05, "max |stamp difference| (s) between an image and its depth image", 0.0, 5.0),
    P("max_input_pixels", DEFAULT_MAX_PIXELS,
      "largest image (width x height) decoded; larger ones are refused and counted as too_large "
      "(default 8K UHD; bounds the memory of a frame)", 1, 1 << 31, 1, dynamic=True),
    # outputs (dynamic)
    P("tracking", True, "track things across frames (instance ids are track ids)", dynamic=True),
    P("publish_lost", True, "list lost tracks (state LOST, area 0) in panoptic/instances", dynamic=True),
    P("publish_markers", True, "MarkerArray of labels at 3D positions (with depth + camera_info)",
      dynamic=True),
    P("publish_vision_msgs", False,
      "also vision_msgs/Detection2DArray (id = track id) and LabelInfo where vision_msgs is installed",
      dynamic=True),
    P("min_depth_pixels", 10, "valid depth pixels a segment needs for a 3D position", 1, 1_000_000, 1,
      dynamic=True),
    P("points_stride", 1,
      "panoptic/points keeps every n-th pixel in each axis (decimation; the cloud is computed only "
      "while subscribed, from depth + camera_info)", 1, 64, 1, dynamic=True),
    # watchdog (dynamic)
    P("target_rate", 0.0,
      "frames per second each camera must be served at: the budget of a frame is 1/target_rate; 0: "
      "the camera's own rate (measured). p95 frame time over budget for diagnostics_window: WARN",
      0.0, 1000.0, dynamic=True),
    P("watchdog_error_after", 30.0,
      "seconds over budget after which the camera's diagnostics go ERROR; 0: never", 0.0, 3600.0,
      dynamic=True),
    P("diagnostics_period", 1.0, "seconds between /diagnostics messages", 0.1, 60.0),
    P("diagnostics_window", 10.0, "seconds of history behind a camera's WARN level (bad frames)", 1.0, 3600.0,
      dynamic=True),
    P("log_throttle", 5.0, "seconds between repeated warnings of one kind per camera", 0.0, 3600.0,
      dynamic=True),
    # fusion thresholds (defaults from the model spec; dynamic)
    P("fusion.center_threshold", None, "min center heatmap value of an instance center", 0.0, 10.0,
      dynamic=True, kind=float),
    P("fusion.nms_kernel", None, "max-pool window of center NMS (odd, model-input pixels)", 1, 51, 2,
      dynamic=True, kind=int),
    P("fusion.top_k", None, "max instance centers per frame", 1, 1000, 1, dynamic=True, kind=int),
    P("fusion.stuff_area", None, "min stuff segment area (model-input pixels)", 0, 10_000_000, 1,
      dynamic=True, kind=int),
    # tracker thresholds (dynamic)
    P("tracker.high_score", _tracker_default("high_score"), "score that starts tracks / first association",
      0.0, 1.0, dynamic=True),
    P("tracker.low_score", _tracker_default("low_score"), "score below which instances are ignored",
      0.0, 1.0, dynamic=True),
    P("tracker.min_hits", _tracker_default("min_hits"), "hits that confirm a track", 1, 100, 1, dynamic=True),
    P("tracker.max_age", _tracker_default("max_age"),
      "frames a lost track stays in the association (then only re-identification can return its id)",
      0, 10_000, 1,
      dynamic=True),
    P("tracker.publish_tentative", _tracker_default("publish_tentative"),
      "draw tentative tracks in instance_ids", dynamic=True),
    P("tracker.min_mask_iou", _tracker_default("min_mask_iou"), "mask IoU gate of association", 0.0, 1.0,
      dynamic=True),
    P("tracker.min_box_iou", _tracker_default("min_box_iou"), "box IoU gate of association", 0.0, 1.0,
      dynamic=True),
    P("tracker.max_center_distance", _tracker_default("max_center_distance"),
      "center distance gate (box sizes)", 0.0, 100.0, dynamic=True),
    P("tracker.appearance_weight", _tracker_default("appearance_weight"), "weight of the color cost",
      0.0, 10.0, dynamic=True),
    P("tracker.reid_seconds", _tracker_default("reid_seconds"),
      "a confirmed track unmatched for up to this long (seconds, stamps) can get its id back by color "
      "and motion, also after max_age or leaving the image; 0: off", 0.0, 3600.0, dynamic=True),
    P("tracker.reid_max_color_distance", _tracker_default("reid_max_color_distance"),
      "re-identification color gate (mean RGB distance / 255 / sqrt(3))", 0.0, 1.0, dynamic=True),
    P("tracker.reid_max_distance", _tracker_default("reid_max_distance"),
      "re-identification motion gate at no time gap (box sizes, from the predicted or last seen "
      "position)", 0.01, 100.0, dynamic=True),
    P("tracker.reid_distance_growth", _tracker_default("reid_distance_growth"),
      "widening of that gate per second since the last match (box sizes per second)", 0.0, 100.0,
      dynamic=True),
)  # fmt: skip
del P

BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


@dataclass(frozen=True)
class CameraTopics:
    """The topics of one camera: image (raw or compressed), optional camera_info and depth."""

    image: str
    camera_info: str = ""
    depth: str = ""

    @property
    def compressed(self) -> bool:
        return self.image.rstrip("/").endswith("/compressed")


@dataclass(frozen=True)
class NodeConfig:
    """The validated values of every parameter."""

    model: str
    backend: str
    device: str
    precision: str
    resize: Literal["resize", "letterbox"]
    warmup_frames: int
    cuda_graph: bool
    overlap_network: bool
    side_thread: bool
    camera_threads: int
    cameras: tuple[CameraTopics, ...]
    qos_mode: str
    qos_reliability: str
    qos_depth: int
    no_frames_timeout: float
    output_qos_depth: int
    sync_tolerance: float
    engine: EngineParams
    fusion: Mapping[str, Any]  # the fusion.* overrides as given (validated in engine.fusion)
    publish_markers: bool
    publish_vision_msgs: bool
    diagnostics_period: float
    diagnostics_window: float
    target_rate: float
    watchdog_error_after: float
    log_throttle: float
    max_input_pixels: int

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, fusion: FusionCheck | None = None) -> NodeConfig:
        """Validate parameter values (missing ones take their defaults; fusion ones the model's): the
        one place a parameter change is parsed and checked.

        Args:
            values: parameter name -> value.
            fusion: the loaded model's threshold check (``FrameEngine.fusion_params``); with it the
                ``fusion.*`` values are validated into ``engine.fusion`` (the record the engine takes
                as is). Without it (before a model is loaded) they are only collected in ``fusion``.

        Raises:
            ConfigError: a value out of its range, inconsistent topic lists, or thresholds the fusion
                or the tracker refuse; the message names the parameter.
        """
        merged: dict[str, Any] = {p.name: p.default for p in PARAMETERS}
        merged.update(values)
        for name, value in values.items():
            spec = BY_NAME.get(name)
            if spec is None:
                if name.startswith("fusion."):
                    continue  # a threshold of the model's family: the fusion validates it
                raise ConfigError(f"unknown parameter {name!r}")
            if value is not None:
                spec.check(value)
        cameras = _cameras(merged["image_topics"], merged["camera_info_topics"], merged["depth_topics"])
        tracker_values = {k.split(".", 1)[1]: v for k, v in merged.items() if k.startswith("tracker.")}
        fusion_values = {
            k.split(".", 1)[1]: v for k, v in merged.items() if k.startswith("fusion.") and v is not None
        }
        try:
            tracker = TrackerParams.from_mapping(tracker_values)
        except ConfigError as err:
            raise ConfigError(f"refused: {err}") from err
        fusion_params = fusion(fusion_values) if fusion is not None else None
        return cls(
            model=merged["model"],
            backend=merged["backend"],
            device=merged["device"],
            precision=merged["precision"],
            resize=merged["resize"],
            warmup_frames=merged["warmup_frames"],
            cuda_graph=merged["cuda_graph"],
            overlap_network=merged["overlap_network"],
            side_thread=merged["side_thread"],
            camera_threads=merged["camera_threads"],
            cameras=cameras,
            qos_mode=merged["qos.mode"],
            qos_reliability=merged["qos.reliability"],
            qos_depth=merged["qos.depth"],
            no_frames_timeout=merged["no_frames_timeout"],
            output_qos_depth=merged["output_qos_depth"],
            sync_tolerance=float(merged["sync_tolerance"]),
            engine=EngineParams(
                tracking=merged["tracking"],
                tracker=tracker,
                publish_lost=merged["publish_lost"],
                min_depth_pixels=merged["min_depth_pixels"],
                points_stride=merged["points_stride"],
                fusion=fusion_params,
            ),
            fusion=fusion_values,
            publish_markers=merged["publish_markers"],
            publish_vision_msgs=merged["publish_vision_msgs"],
            diagnostics_period=float(merged["diagnostics_period"]),
            diagnostics_window=float(merged["diagnostics_window"]),
            target_rate=float(merged["target_rate"]),
            watchdog_error_after=float(merged["watchdog_error_after"]),
            log_throttle=float(merged["log_throttle"]),
            max_input_pixels=int(merged["max_input_pixels"]),
        )

    def backend_options(self) -> dict[str, Any]:
        """The backend's own options these values ask for: ``precision`` unless it is ``auto``."""
        return precision_options(self.precision)

    def engine_options(self) -> dict[str, Any]:
        """:meth:`FrameEngine.open`'s keyword options these values ask for (all but the model)."""
        return {
            "side_thread": self.side_thread,
            "camera_threads": self.camera_threads,
            "backend": self.backend,
            "device": self.device,
            "resize": self.resize,
            "fusion": self.fusion,
            "cuda_graph": self.cuda_graph,
            "backend_options": self.backend_options(),
        }


def _cameras(images: Sequence[str], infos: Sequence[str], depths: Sequence[str]) -> tuple[CameraTopics, ...]:
    images = [t for t in images if t]
    if not images:
        raise ConfigError("image_topics is empty; give at least one camera topic")
    if len(set(images)) != len(images):
        raise ConfigError(f"image_topics lists a topic twice: {list(images)}")
    infos, depths = (
        _aligned("camera_info_topics", infos, len(images)),
        _aligned("depth_topics", depths, len(images)),
    )
    return tuple(CameraTopics(i, c, d) for i, c, d in zip(images, infos, depths, strict=True))


def _aligned(name: str, topics: Sequence[str], count: int) -> list[str]:
    if not topics or list(topics) == [""]:
        return [""] * count
    if len(topics) != count:
        raise ConfigError(
            f"{name} has {len(topics)} entries but image_topics has {count}; "
            "give one per camera ('' for none)"
        )
    return list(topics)
