"""The panoptic perception node: camera topics in, panoptic labels and tracked instances out.

A lifecycle node (``panoptic_lifecycle_node``):

- configure: read the parameters, load the model (build or load the engine), warm up, create the
  publishers of every camera;
- activate: subscribe to the cameras, start the worker thread, publish the label set;
- deactivate: unsubscribe, stop the worker;
- cleanup: destroy the publishers, free the model and its device memory.

``panoptic_node`` is the same node driven through configure and activate at start-up.

Subscription callbacks only store the newest message per camera (:class:`LatestFrameSlots`); the
worker thread takes the pending frames of all cameras, decodes them, runs one batched inference,
fusion and per-camera tracking (:class:`FrameProcessor`), and publishes. Bad input of any kind is
counted per camera, logged (throttled) and skipped; the next good frame is processed.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from panoptic_ros.core.geometry import CameraModel, depth_in_meters
from panoptic_ros.core.image_codec import compressed_to_color, image_to_array, image_to_color
from panoptic_ros.core.pipeline import PanopticPipeline
from panoptic_ros.core.topics import join_topic, output_namespace
from panoptic_ros.errors import ConfigError, ImageDecodeError, PanopticRosError, UnsupportedEncodingError
from panoptic_ros.msg import CategoryArray, PanopticInstanceArray
from panoptic_ros.ros import messages
from panoptic_ros.ros.conversions import category_array_msg
from panoptic_ros.ros.params import current_values, declare_all
from panoptic_ros.runtime.config import BY_NAME, CameraTopics, NodeConfig
from panoptic_ros.runtime.processor import FrameProcessor
from panoptic_ros.runtime.records import FrameResult, InputFrame
from panoptic_ros.runtime.slots import LatestFrameSlots
from panoptic_ros.runtime.stats import ERROR_KINDS, NodeStats

NODE_NAME = "panoptic"


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class CameraIO:
    """One camera's topics, publishers and latest side inputs (camera_info, recent depth images)."""

    topics: CameraTopics
    namespace: str
    publishers: dict[str, Any] = field(default_factory=dict)
    camera_info: CameraInfo | None = None
    depth: deque[tuple[int, Image]] = field(default_factory=lambda: deque(maxlen=8))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def topic(self, name: str) -> str:
        return join_topic(self.namespace, "panoptic", name)

    def wanted(self, name: str) -> bool:
        pub = self.publishers.get(name)
        return pub is not None and pub.get_subscription_count() > 0


class PanopticNode(LifecycleNode):
    """The lifecycle node; see the module docstring."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._slots: LatestFrameSlots[tuple[Any, int]] = LatestFrameSlots()
        self._stats = NodeStats()
        self._config: NodeConfig | None = None
        self._pending_config: NodeConfig | None = None
        self._config_lock = threading.Lock()
        self._pipeline: PanopticPipeline | None = None
        self._processor: FrameProcessor | None = None
        self._cameras: dict[str, CameraIO] = {}
        self._subscriptions: list[Any] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._diagnostics_pub: Any = None
        self._diagnostics_timer: Any = None
        self._active = False
        self._vision_msgs = messages.vision_msgs_available()
        self._status_lines: dict[str, str] = {}

    # --------------------------------------------------------------------------------------------
    # parameters

    def _check_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        """Refuse a change with a reason: out of range, inconsistent, or static while configured."""
        if self._config is not None:
            static = [p.name for p in params if p.name in BY_NAME and not BY_NAME[p.name].dynamic]
            if static:
                return SetParametersResult(
                    successful=False,
                    reason=f"{', '.join(static)} is read at configure: deactivate and clean up the node, "
                    "change it, then configure again",
                )
        values = current_values(self)
        values.update({p.name: _value(p) for p in params})
        try:
            config = NodeConfig.from_values(values)
            if self._processor is not None:
                self._processor.check_fusion(config.fusion)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: Sequence[Parameter]) -> None:
        if self._config is None:
            return
        config = NodeConfig.from_values(current_values(self))
        with self._config_lock:
            self._pending_config = config
        self.get_logger().info("parameters changed: " + ", ".join(f"{p.name}={_value(p)!r}" for p in params))

    def _take_pending_config(self) -> None:
        with self._config_lock:
            config, self._pending_config = self._pending_config, None
        if config is None or self._processor is None:
            return
        self._processor.update_params(config.processor)
        self._processor.set_fusion(config.fusion)
        self._config = config

    # --------------------------------------------------------------------------------------------
    # lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            config = NodeConfig.from_values(current_values(self))
            model = config.model or str(_default_model())
            log.info(f"loading {model} (backend {config.backend}, device {config.device})")
            pipeline = PanopticPipeline(
                model,
                backend=config.backend,
                device=config.device,
                resize=config.resize,
                fusion=config.fusion,
            )
        except (PanopticRosError, OSError) as err:
            log.error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        try:
            declare_all(self, model_fusion=dict(pipeline.spec.fusion))
            config = NodeConfig.from_values(current_values(self))
            processor = FrameProcessor(pipeline, config.processor)
            processor.set_fusion(config.fusion)
        except ConfigError as err:
            log.error(f"configure failed: {err}")
            pipeline.close()
            return TransitionCallbackReturn.FAILURE
        self._warm_up(pipeline, config.warmup_frames, cameras=len(config.cameras))
        self._pipeline, self._processor, self._config = pipeline, processor, config
        self._create_publishers(config)
        log.info(
            f"configured: {pipeline.spec.label_set.name} model on {pipeline.backend.describe()}, "
            f"{len(config.cameras)} camera(s): {', '.join(c.image for c in config.cameras)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self._config
        if config is None:
            return TransitionCallbackReturn.FAILURE
        self._slots.clear()
        self._slots.reopen()
        self._stop.clear()
        self._processor.reset()
        self._create_subscriptions(config)
        self._worker = threading.Thread(target=self._work, name="panoptic_worker", daemon=True)
        self._worker.start()
        result = super().on_activate(state)
        self._active = True
        self._publish_categories()
        self.get_logger().info("active")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._destroy_subscriptions()
        self._stop_worker()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._destroy_subscriptions()
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.on_shutdown(state)
        return TransitionCallbackReturn.SUCCESS

    def _warm_up(self, pipeline: PanopticPipeline, frames: int, *, cameras: int) -> None:
        """Inferences on blank frames, batched as the cameras will be (a backend may specialize per
        batch size on its first run), so the first real frames are not the slow ones."""
        if frames <= 0:
            return
        size = pipeline.spec.input
        blank = np.zeros((size.height, size.width, 3), dtype=np.uint8)
        batches = sorted({1, min(cameras, size.max_batch)})
        for _ in range(frames):
            for batch in batches:
                pipeline([blank] * batch)
        pipeline.times.seconds.clear()
        pipeline.times.frames = 0

    def _release(self) -> None:
        for camera in self._cameras.values():
            for pub in camera.publishers.values():
                self.destroy_publisher(pub)
        self._cameras.clear()
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._diagnostics_pub is not None:
            self.destroy_publisher(self._diagnostics_pub)
            self._diagnostics_pub = None
        if self._pipeline is not None:
            device = self._pipeline.device
            self._pipeline.close()
            self._pipeline = self._processor = None
            gc.collect()
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
        self._config = None
        self._stats.reset()

    # --------------------------------------------------------------------------------------------
    # publishers and subscriptions

    def _create_publishers(self, config: NodeConfig) -> None:
        reliable = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=config.output_qos_depth,
            reliability=ReliabilityPolicy.RELIABLE,
        )
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        kinds: dict[str, tuple[type, QoSProfile]] = {
            "semantic": (Image, reliable),
            "instance_ids": (Image, reliable),
            "instances": (PanopticInstanceArray, reliable),
            "overlay": (Image, reliable),
            "categories": (CategoryArray, latched),
            "markers": (MarkerArray, reliable),
        }
        if self._vision_msgs:
            from vision_msgs.msg import Detection2DArray, LabelInfo

            kinds["detections"] = (Detection2DArray, reliable)
            kinds["label_info"] = (LabelInfo, latched)
        elif config.publish_vision_msgs:
            self.get_logger().warning("publish_vision_msgs is true but vision_msgs is not installed; skipped")
        for topics in config.cameras:
            camera = CameraIO(topics, output_namespace(topics.image))
            for name, (msg_type, qos) in kinds.items():
                topic = camera.topic("label_info" if name == "label_info" else name)
                camera.publishers[name] = self.create_lifecycle_publisher(msg_type, topic, qos)
            self._cameras[topics.image] = camera
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(config.diagnostics_period, self._publish_diagnostics)

    def _subscription_qos(self, config: NodeConfig, topic: str) -> QoSProfile:
        reliability = ReliabilityPolicy.BEST_EFFORT
        if config.qos_mode == "explicit":
            reliability = (
                ReliabilityPolicy.RELIABLE
                if config.qos_reliability == "reliable"
                else ReliabilityPolicy.BEST_EFFORT
            )
        elif config.qos_mode == "match_publisher":
            found = [info.qos_profile.reliability for info in self.get_publishers_info_by_topic(topic)]
            if found and all(r == ReliabilityPolicy.RELIABLE for r in found):
                reliability = ReliabilityPolicy.RELIABLE
            elif not found:
                self.get_logger().warning(
                    f"qos.mode match_publisher: no publisher on {topic} yet; subscribing best effort "
                    "(receives from reliable and best-effort publishers)"
                )
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=config.qos_depth,
            reliability=reliability,
            durability=DurabilityPolicy.VOLATILE,
        )

    def _create_subscriptions(self, config: NodeConfig) -> None:
        for key, camera in self._cameras.items():
            topics = camera.topics
            msg_type = CompressedImage if topics.compressed else Image
            qos = self._subscription_qos(config, topics.image)
            self._subscriptions.append(
                self.create_subscription(msg_type, topics.image, self._image_callback(key), qos)
            )
            if topics.camera_info:
                self._subscriptions.append(
                    self.create_subscription(
                        CameraInfo,
                        topics.camera_info,
                        self._info_callback(camera),
                        self._subscription_qos(config, topics.camera_info),
                    )
                )
            if topics.depth:
                self._subscriptions.append(
                    self.create_subscription(
                        Image,
                        topics.depth,
                        self._depth_callback(camera),
                        self._subscription_qos(config, topics.depth),
                    )
                )

    def _destroy_subscriptions(self) -> None:
        for sub in self._subscriptions:
            self.destroy_subscription(sub)
        self._subscriptions.clear()

    # callbacks: store and return

    def _image_callback(self, key: str) -> Any:
        def store(msg: Image | CompressedImage) -> None:
            self._slots.put(key, (msg, time.monotonic_ns()))

        return store

    def _info_callback(self, camera: CameraIO) -> Any:
        def store(msg: CameraInfo) -> None:
            camera.camera_info = msg

        return store

    def _depth_callback(self, camera: CameraIO) -> Any:
        def store(msg: Image) -> None:
            with camera.lock:
                camera.depth.append((stamp_ns(msg.header), msg))

        return store

    # --------------------------------------------------------------------------------------------
    # the worker

    def _stop_worker(self) -> None:
        self._stop.set()
        self._slots.close()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    def _work(self) -> None:
        while not self._stop.is_set():
            pending = self._slots.take(timeout=0.2)
            if not pending or self._stop.is_set():
                continue
            self._take_pending_config()
            started = time.monotonic_ns()
            frames = [f for key, item in pending.items() if (f := self._decode(key, *item)) is not None]
            decoded = time.monotonic_ns()
            if not frames:
                continue
            try:
                outputs, batch_times = self._processor.infer(frames)
            except Exception as err:
                for frame in frames:
                    self._trouble(frame.camera, "processing_error", f"inference failed: {err!r}", error=True)
                continue
            for frame, output in zip(frames, outputs, strict=True):
                try:
                    result = self._processor.result(frame, output, batch_times)
                except Exception as err:
                    self._trouble(frame.camera, "processing_error", f"processing failed: {err!r}", error=True)
                    continue
                self._publish(result, started, decoded)

    def _trouble(self, camera: str, kind: str, text: str, *, error: bool = False) -> None:
        self._stats.count(camera, kind)
        period = self._config.log_throttle if self._config is not None else 5.0
        log_now, suppressed = self._stats.should_log(camera, kind, period)
        if log_now:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            line = f"{camera}: {kind.replace('_', ' ')}: {text}{more}"
            (self.get_logger().error if error else self.get_logger().warning)(line)

    def _decode(self, key: str, msg: Any, received_ns: int) -> InputFrame | None:
        camera = self._cameras.get(key)
        if camera is None:
            return None
        try:
            decode = compressed_to_color if camera.topics.compressed else image_to_color
            rgb = decode(msg, "rgb")
        except UnsupportedEncodingError as err:
            self._trouble(key, "unsupported_encoding", str(err))
            return None
        except ImageDecodeError as err:
            self._trouble(key, "corrupt_compressed" if camera.topics.compressed else "malformed", str(err))
            return None
        stamp = stamp_ns(msg.header)
        depth, model = self._side_inputs(camera, stamp, rgb.shape[:2])
        return InputFrame(
            camera=key,
            rgb=rgb,
            stamp_ns=stamp,
            header=msg.header,
            received_ns=received_ns,
            depth=depth,
            camera_model=model,
            overlay=camera.wanted("overlay"),
        )

    def _side_inputs(
        self, camera: CameraIO, stamp: int, shape: tuple[int, int]
    ) -> tuple[np.ndarray | None, CameraModel | None]:
        info = camera.camera_info
        if not camera.topics.depth or info is None:
            return None, None
        with camera.lock:
            candidates = list(camera.depth)
        if not candidates:
            return None, None
        depth_stamp, depth_msg = min(candidates, key=lambda c: abs(c[0] - stamp))
        if abs(depth_stamp - stamp) > self._config.sync_tolerance * 1e9:
            return None, None
        try:
            model = CameraModel.from_k(info.k, info.width or shape[1], info.height or shape[0])
            depth = depth_in_meters(image_to_array(depth_msg), depth_msg.encoding)
        except (ConfigError, ImageDecodeError) as err:
            self._trouble(camera.topics.image, "depth_error", str(err))
            return None, None
        if depth.ndim != 2:
            self._trouble(
                camera.topics.image, "depth_error", f"depth image has shape {depth.shape}, expected H x W"
            )
            return None, None
        return depth, model

    def _publish(self, result: FrameResult, started_ns: int, decoded_ns: int) -> None:
        camera = self._cameras.get(result.camera)
        if camera is None:
            return
        for event in result.events:
            self._trouble(result.camera, event, f"tracker reset at stamp {result.stamp_ns / 1e9:.3f} s")
        begin = time.monotonic_ns()
        header = result.header
        label_set = self._processor.label_set
        config = self._config
        pubs = camera.publishers
        try:
            if camera.wanted("semantic"):
                pubs["semantic"].publish(messages.semantic_msg(result, header))
            if camera.wanted("instance_ids"):
                pubs["instance_ids"].publish(messages.instance_ids_msg(result, header))
            if camera.wanted("instances"):
                pubs["instances"].publish(messages.instances_msg(result, header, label_set))
            if result.overlay_bgr is not None and camera.wanted("overlay"):
                pubs["overlay"].publish(messages.overlay_msg(result, header))
            if config.publish_markers and camera.wanted("markers"):
                status = self._status_lines.get(result.camera, "")
                pubs["markers"].publish(messages.markers_msg(result, header, label_set, status=status))
            if config.publish_vision_msgs and camera.wanted("detections"):
                pubs["detections"].publish(messages.detections_msg(result, header))
        except (PanopticRosError, ValueError, TypeError) as err:
            self._trouble(result.camera, "processing_error", f"publishing failed: {err!r}", error=True)
            return
        end = time.monotonic_ns()
        latencies = {k: 1000 * v for k, v in result.times.items()}
        latencies["queue"] = (started_ns - result.received_ns) / 1e6
        latencies["decode"] = (decoded_ns - started_ns) / 1e6
        latencies["publish"] = (end - begin) / 1e6
        latencies["total"] = (end - result.received_ns) / 1e6
        self._stats.frame(result.camera, latencies)

    def _publish_categories(self) -> None:
        if self._processor is None:
            return
        label_set = self._processor.label_set
        header = Header()
        header.stamp = self.get_clock().now().to_msg()
        msg = category_array_msg(label_set, header, label_divisor=self._processor.label_divisor)
        for camera in self._cameras.values():
            camera.publishers["categories"].publish(msg)
            if "label_info" in camera.publishers:
                threshold = float(self._processor.pipeline.spec.fusion.get("center_threshold", 0.0))
                camera.publishers["label_info"].publish(messages.label_info_msg(label_set, header, threshold))

    # --------------------------------------------------------------------------------------------
    # diagnostics

    def _publish_diagnostics(self) -> None:
        if self._diagnostics_pub is None or self._pipeline is None:
            return
        now = time.monotonic()
        slot_stats = self._slots.stats()
        snapshot = self._stats.snapshot()
        backend = self._pipeline.backend.describe()
        device = str(self._pipeline.device)
        name = self.get_name()
        statuses = [
            DiagnosticStatus(
                level=DiagnosticStatus.OK,
                name=f"{name}: pipeline",
                hardware_id=device,
                message="active" if self._active else "inactive",
                values=_kv(
                    backend=backend,
                    device=device,
                    model=str(self._pipeline.model_path),
                    label_set=self._pipeline.label_set.name,
                    cameras=len(self._cameras),
                ),
            )
        ]
        for key in self._cameras:
            stats = snapshot.get(key)
            slot = slot_stats.get(key)
            received = slot.received if slot else 0
            dropped = slot.dropped if slot else 0
            processed = stats.processed if stats else 0
            errors = stats.errors if stats else dict.fromkeys(ERROR_KINDS, 0)
            values: dict[str, object] = {
                "frames_received": received,
                "frames_published": processed,
                "frames_dropped": dropped,
                "rate_hz": f"{stats.rate(now) if stats else 0.0:.2f}",
                **errors,
                "backend": backend,
                "device": device,
            }
            if stats:
                for stage in sorted(stats.latency_ms):
                    p50, p95 = stats.percentiles(stage, (50, 95))
                    values[f"latency_{stage}_ms_p50"] = f"{p50:.2f}"
                    values[f"latency_{stage}_ms_p95"] = f"{p95:.2f}"
            bad = sum(errors.values())
            if stats:
                total = stats.percentiles("total", (50, 95))
                self._status_lines[key] = (
                    f"{key}: {stats.rate(now):.1f} Hz, latency {total[0]:.0f}/{total[1]:.0f} ms p50/p95, "
                    f"{dropped} dropped, {bad} bad ({backend})"
                )
            level = DiagnosticStatus.OK
            message = "ok"
            if self._active and received == 0:
                level, message = DiagnosticStatus.WARN, "no frames received yet"
            elif bad:
                level, message = DiagnosticStatus.WARN, f"{bad} bad or failed frames so far"
            statuses.append(
                DiagnosticStatus(
                    level=level,
                    name=f"{name}: {key}",
                    hardware_id=device,
                    message=message,
                    values=_kv(**values),
                )
            )
        header = Header()
        header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(DiagnosticArray(header=header, status=statuses))


def _kv(**values: object) -> list[KeyValue]:
    return [KeyValue(key=k, value=str(v)) for k, v in values.items()]


def _value(param: Parameter) -> Any:
    value = param.value
    return list(value) if param.type_ == Parameter.Type.STRING_ARRAY else value


def _default_model() -> Any:
    from panoptic_ros.cli import default_model

    return default_model()


# ------------------------------------------------------------------------------------------------
# executables


def _spin(node: PanopticNode) -> None:
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        # Ctrl-C / SIGINT from `ros2 launch`: the context is already shut down, so no rosout logging
        print(f"[{node.get_name()}] shutting down", file=sys.stderr)
    finally:
        node.on_shutdown(None)
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()


def main_lifecycle(args: Sequence[str] | None = None) -> int:
    """``panoptic_lifecycle_node``: starts unconfigured; a lifecycle manager drives it."""
    rclpy.init(args=args)
    _spin(PanopticNode())
    return 0


def main(args: Sequence[str] | None = None) -> int:
    """``panoptic_node``: configures and activates itself, then serves until shut down."""
    rclpy.init(args=args)
    node = PanopticNode()
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("could not configure; see the error above")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("could not activate")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    _spin(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
