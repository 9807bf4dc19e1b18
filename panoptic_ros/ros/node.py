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
fusion and per-camera tracking (:class:`~panoptic_ros.runtime.FrameEngine`, the same engine as
``bag process`` and ``infer``), and publishes each output someone subscribes to
(:mod:`panoptic_ros.ros.camera_io`). Bad input of any kind is counted per camera, logged (throttled)
and skipped; the next good frame is processed. Parameter changes: :class:`ParameterChanges`; the
executables: :mod:`panoptic_ros.ros.executables`.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from panoptic_ros.core import stamps
from panoptic_ros.core.decode import color_frame
from panoptic_ros.core.messages import header_message
from panoptic_ros.errors import ConfigError, ImageDecodeError, PanopticRosError, UnsupportedEncodingError
from panoptic_ros.resources import default_model
from panoptic_ros.ros.camera_io import CameraIO, available_outputs
from panoptic_ros.ros.conversions import message_class, to_ros
from panoptic_ros.ros.params import ParameterChanges, current_values, declare_all
from panoptic_ros.ros.qos import subscription_qos
from panoptic_ros.runtime.config import NodeConfig
from panoptic_ros.runtime.diagnostics import PipelineInfo, diagnostics, status_line
from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.outputs import OutputContext
from panoptic_ros.runtime.records import FrameResult, InputFrame
from panoptic_ros.runtime.slots import LatestFrameSlots
from panoptic_ros.runtime.stats import NodeStats

NODE_NAME = "panoptic"


class PanopticNode(LifecycleNode):
    """The lifecycle node; see the module docstring."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._slots: LatestFrameSlots[tuple[Any, int]] = LatestFrameSlots()
        self._stats = NodeStats()
        self._config: NodeConfig | None = None  # in force
        self._changes = ParameterChanges(self)
        self._engine: FrameEngine | None = None
        self._cameras: dict[str, CameraIO] = {}
        self._subscriptions: list[Any] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._diagnostics_pub: Any = None
        self._diagnostics_timer: Any = None
        self._active = False
        self._status_lines: dict[str, str] = {}

    # --------------------------------------------------------------------------------------------
    # parameters (see ParameterChanges: each change is parsed and validated once)

    def _check_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        engine = self._engine
        return self._changes.check(
            params, configured=self._config is not None, fusion=engine.fusion_params if engine else None
        )

    def _apply_parameters(self, params: Sequence[Parameter]) -> None:
        self._changes.accept(params, configured=self._config is not None)

    def _take_pending_config(self) -> None:
        config = self._changes.take()
        if config is None or self._engine is None:
            return
        fusion_changed = self._config is None or config.engine.fusion != self._config.engine.fusion
        self._engine.apply(config.engine)
        self._config = config
        if fusion_changed:
            self._publish_camera_outputs()  # LabelInfo reports the threshold in force

    # --------------------------------------------------------------------------------------------
    # lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            config = NodeConfig.from_values(current_values(self))
            model = config.model or str(default_model())
            log.info(f"loading {model} (backend {config.backend}, device {config.device})")
            engine = FrameEngine.open(
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
            declare_all(self, model_fusion=dict(engine.spec.fusion))
            config = NodeConfig.from_values(current_values(self), fusion=engine.fusion_params)
            engine.apply(config.engine)
        except ConfigError as err:
            log.error(f"configure failed: {err}")
            engine.close()
            return TransitionCallbackReturn.FAILURE
        engine.warm_up(config.warmup_frames, cameras=len(config.cameras))
        self._engine, self._config = engine, config
        self._create_publishers(config)
        log.info(
            f"configured: {engine.label_set.name} model on {engine.describe()}, "
            f"{len(config.cameras)} camera(s): {', '.join(c.image for c in config.cameras)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self._config
        if config is None or self._engine is None:
            return TransitionCallbackReturn.FAILURE
        self._slots.clear()
        self._slots.reopen()
        self._stop.clear()
        self._engine.reset()
        self._create_subscriptions(config)
        self._worker = threading.Thread(target=self._work, name="panoptic_worker", daemon=True)
        self._worker.start()
        result = super().on_activate(state)
        self._active = True
        self._publish_camera_outputs()
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
        if self._engine is not None:
            device = self._engine.device
            self._engine.close()
            self._engine = None
            gc.collect()
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
        self._config = None
        self._stats.reset()

    # --------------------------------------------------------------------------------------------
    # publishers and subscriptions

    def _create_publishers(self, config: NodeConfig) -> None:
        outputs, skipped = available_outputs()
        if skipped and config.publish_vision_msgs:
            self.get_logger().warning(
                f"publish_vision_msgs is true but vision_msgs is not installed; skipped {skipped}"
            )
        for topics in config.cameras:
            camera = self._cameras[topics.image] = CameraIO(topics)
            camera.create_publishers(self, outputs, config.output_qos_depth)
        self._diagnostics_pub = self.create_publisher(
            message_class("diagnostic_msgs/msg/DiagnosticArray"), "/diagnostics", 10
        )
        self._diagnostics_timer = self.create_timer(config.diagnostics_period, self._publish_diagnostics)

    def _subscription_qos(self, config: NodeConfig, topic: str) -> Any:
        found = [info.qos_profile.reliability for info in self.get_publishers_info_by_topic(topic)]
        qos, warning = subscription_qos(config.qos_mode, config.qos_reliability, config.qos_depth, found)
        if warning:
            self.get_logger().warning(f"{topic}: {warning}")
        return qos

    def _create_subscriptions(self, config: NodeConfig) -> None:
        for key, camera in self._cameras.items():
            for kind, topic, callback in camera.subscriptions(self._image_callback(key)):
                qos = self._subscription_qos(config, topic)
                self._subscriptions.append(self.create_subscription(kind, topic, callback, qos))

    def _destroy_subscriptions(self) -> None:
        for sub in self._subscriptions:
            self.destroy_subscription(sub)
        self._subscriptions.clear()

    def _image_callback(self, key: str) -> Any:
        def store(msg: Image | CompressedImage) -> None:  # store and return: the worker does the rest
            self._slots.put(key, (msg, time.monotonic_ns()))

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
            engine = self._engine
            try:
                outputs, batch_times = engine.infer(frames)
            except Exception as err:
                for frame in frames:
                    self._trouble(frame.camera, "processing_error", f"inference failed: {err!r}", error=True)
                continue
            for frame, output in zip(frames, outputs, strict=True):
                try:
                    result = engine.result(frame, output, batch_times)
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
            rgb = color_frame(msg, compressed=camera.topics.compressed)
        except UnsupportedEncodingError as err:
            self._trouble(key, "unsupported_encoding", str(err))
            return None
        except ImageDecodeError as err:
            self._trouble(key, "corrupt_compressed" if camera.topics.compressed else "malformed", str(err))
            return None
        stamp = stamps.stamp_ns(msg)
        side = None
        if camera.topics.depth and camera.topics.camera_info:
            try:
                side = camera.side.match(stamp, rgb.shape[:2], round(self._config.sync_tolerance * 1e9))
            except (ConfigError, ImageDecodeError) as err:
                self._trouble(key, "depth_error", str(err))
        return InputFrame(
            camera=key,
            rgb=rgb,
            stamp_ns=stamp,
            frame_id=str(msg.header.frame_id),
            received_ns=received_ns,
            depth=side[0] if side else None,
            camera_model=side[1] if side else None,
            overlay=camera.wanted("overlay"),
        )

    def _output_context(self, camera: str = "") -> OutputContext:
        engine = self._engine
        return OutputContext(
            engine.label_set,
            engine.label_divisor,
            engine.score_threshold(),
            self._status_lines.get(camera, ""),
        )

    def _publish(self, result: FrameResult, started_ns: int, decoded_ns: int) -> None:
        camera = self._cameras.get(result.camera)
        if camera is None:
            return
        for event in result.events:
            self._trouble(result.camera, event, f"tracker reset at stamp {result.stamp_ns / 1e9:.3f} s")
        begin = time.monotonic_ns()
        config = self._config
        enabled = {"markers": config.publish_markers, "detections": config.publish_vision_msgs}
        try:
            camera.publish(result, self._output_context(result.camera), enabled)
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

    def _publish_camera_outputs(self) -> None:
        """The latched outputs of every camera: the label set, and LabelInfo with the threshold in force."""
        if self._engine is None:
            return
        header = header_message(self.get_clock().now().nanoseconds, "")
        context = self._output_context()
        for camera in self._cameras.values():
            camera.publish_latched(header, context)

    # --------------------------------------------------------------------------------------------
    # diagnostics

    def _publish_diagnostics(self) -> None:
        engine, config = self._engine, self._config
        if self._diagnostics_pub is None or engine is None or config is None:
            return
        now = time.monotonic()
        slots = self._slots.stats()
        snapshot = self._stats.snapshot()
        backend = engine.describe()
        info = PipelineInfo.of(engine, active=self._active)
        for key, stats in snapshot.items():
            dropped = slots[key].dropped if key in slots else 0
            self._status_lines[key] = status_line(key, stats, dropped, backend, now)
        message = diagnostics(
            self.get_name(),
            self.get_clock().now().nanoseconds,
            info,
            cameras=list(self._cameras),
            slots=slots,
            stats=snapshot,
            now=now,
        )
        self._diagnostics_pub.publish(to_ros(message))
