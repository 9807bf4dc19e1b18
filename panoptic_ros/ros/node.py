"""The panoptic perception node: camera topics in, panoptic labels and tracked instances out.

A lifecycle node (``panoptic_lifecycle_node``):

- configure: read the parameters, load the model (build or load the engine), warm up, create the
  publishers of every camera;
- activate: start the worker (it warms up its threads first), subscribe to the cameras, publish the label set;
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

import threading
import time
from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from panoptic_ros.core import stamps
from panoptic_ros.core.decode import camera_frame, check_message, refusal_kind
from panoptic_ros.core.messages import header_message
from panoptic_ros.errors import ConfigError, ImageDecodeError, PanopticRosError
from panoptic_ros.fusion.center_offset_fixed import DEFAULT_MAX_CENTERS
from panoptic_ros.resources import default_model
from panoptic_ros.ros.camera_io import CameraIO, available_outputs
from panoptic_ros.ros.inputs import CameraInputs
from panoptic_ros.ros.params import ParameterChanges, check_overrides, current_values, declare_all
from panoptic_ros.ros.reporting import Reporter
from panoptic_ros.runtime.config import NodeConfig
from panoptic_ros.runtime.engine import FrameEngine
from panoptic_ros.runtime.memory import freeze_long_lived, thaw_long_lived
from panoptic_ros.runtime.outputs import (
    INSTANCE_IMAGE_OUTPUTS,
    POSITION_OUTPUTS,
    SEMANTIC_IMAGE_OUTPUTS,
    OutputContext,
)
from panoptic_ros.runtime.records import FrameResult, InputFrame
from panoptic_ros.runtime.slots import LatestFrameSlots, SlotStats
from panoptic_ros.runtime.stats import NodeStats
from panoptic_ros.runtime.worker import WARM_UP_WAIT_S, Worker

NODE_NAME = "panoptic"


class PanopticNode(LifecycleNode):
    """The lifecycle node; see the module docstring."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        check_overrides(self)  # one line naming a refused start-up value, not rclpy's traceback
        declare_all(self)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._slots: LatestFrameSlots[tuple[Any, int]] = LatestFrameSlots()
        self.stats = NodeStats()
        self.config: NodeConfig | None = None  # in force
        self._changes = ParameterChanges(self)
        self.engine: FrameEngine | None = None
        self._cameras: dict[str, CameraIO] = {}
        self.inputs: CameraInputs | None = None
        self._worker: Worker | None = None
        self.in_flight: dict[str, int] = {}
        self.fault = ""  # why the worker stopped for good; the executables then exit non-zero
        self.error = ""  # why the last configure failed
        self._max_pixels = 0  # the image size limit in force (set at configure and by a change)
        self.shutdown_requested = threading.Event()
        self._reporter: Reporter | None = None
        self.active = False

    # --------------------------------------------------------------------------------------------
    # parameters (see ParameterChanges: each change is parsed and validated once)

    def _check_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        engine = self.engine
        return self._changes.check(
            params, configured=self.config is not None, fusion=engine.fusion_params if engine else None
        )

    def _apply_parameters(self, params: Sequence[Parameter]) -> None:
        accepted = self._changes.accept(params, configured=self.config is not None)
        if accepted is not None:
            self._max_pixels = accepted.max_input_pixels  # the callbacks check with it at once

    def _take_pending_config(self) -> None:
        config = self._changes.take()
        if config is None or self.engine is None:
            return
        fusion_changed = self.config is None or config.engine.fusion != self.config.engine.fusion
        self.engine.apply(config.engine)
        self.config = config
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
            engine = FrameEngine.open(model, **config.engine_options())
        except (PanopticRosError, OSError) as err:
            return self._configure_failed(str(err))
        try:
            declare_all(self, model_fusion=dict(engine.spec.fusion))
            config = NodeConfig.from_values(current_values(self), fusion=engine.fusion_params)
            engine.apply(config.engine)
        except (ConfigError, ParameterException) as err:
            engine.close()
            return self._configure_failed(str(err))
        try:
            engine.warm_up(config.warmup_frames, cameras=len(config.cameras))
        except Exception as err:  # blank frames through the frame path: real ones would fail the same
            engine.close()
            return self._configure_failed(f"the warm-up frames failed: {type(err).__name__}: {err}")
        self.engine, self.config = engine, config
        self._max_pixels = config.max_input_pixels
        self._create_publishers(config)
        freeze_long_lived()  # no full collection walks the model and the modules between frames
        log.info(
            f"configured: {engine.label_set.name} model on {engine.describe()}, "
            f"{len(config.cameras)} camera(s): {', '.join(c.image for c in config.cameras)}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        """Log why configure failed, in one line, and keep it for the executable's exit message."""
        self.error = reason
        self.get_logger().error(f"configure failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self.config
        if config is None or self.engine is None:
            return TransitionCallbackReturn.FAILURE
        self._slots.clear()
        self.engine.reset()
        note = self._start_worker(config)  # its threads warmed up before the first camera frame comes
        self._create_subscriptions(config)
        result = super().on_activate(state)
        self.active = True
        self._publish_camera_outputs()
        (self.get_logger().warning if note else self.get_logger().info)(f"active{note}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._destroy_subscriptions()
        self._stop_worker()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._destroy_subscriptions()
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self.on_shutdown(state)  # SUCCESS: the node can be configured again

    def _release(self) -> None:
        for camera in self._cameras.values():
            for pub in camera.publishers.values():
                self.destroy_publisher(pub)
        self._cameras.clear()
        if self._reporter is not None:
            self._reporter.destroy()
            self._reporter = None
        if self.engine is not None:
            device = self.engine.device
            self.engine.close()
            self.engine = None
            thaw_long_lived()  # the engine's objects may be collected again; collects
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
        self.config = None
        self.stats.reset()

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
        self._reporter = Reporter(self, config.diagnostics_period)

    def _create_subscriptions(self, config: NodeConfig) -> None:
        received = self.stats.received_count
        self.inputs = CameraInputs(self, config, self._cameras, self._image_callback, received)

    def _destroy_subscriptions(self) -> None:
        if self.inputs is not None:
            self.inputs.destroy()
            self.inputs = None

    def _image_callback(self, key: str) -> Any:
        compressed = self._cameras[key].topics.compressed

        def store(msg: Image | CompressedImage, info: dict[str, Any]) -> None:
            """Count, check the cheap fields (a malformed message never displaces a waiting good
            frame) and store; the worker does the rest."""
            publisher = (info.get("publisher_gid") or {}).get("data", b"")
            if not self.stats.arrived(key, bytes(publisher), info.get("publication_sequence_number")):
                return  # delivered twice while the subscription's QoS changed: taken once
            try:
                check_message(msg, compressed=compressed, max_pixels=self._max_pixels)
            except ImageDecodeError as err:
                self._refused(key, compressed, err)
                return
            self._slots.put(key, (msg, time.monotonic_ns()))

        return store

    # --------------------------------------------------------------------------------------------
    # the worker

    def _start_worker(self, config: NodeConfig) -> str:  # "" or why it serves without its warm-up
        self._worker = Worker(
            self._slots,
            self.engine,
            decode=self._decode,
            publish=self._publish,
            trouble=self._trouble,
            before_batch=self._take_pending_config,
            on_fault=self._on_fault,
            overlap=config.overlap_network,
            warmup_frames=config.warmup_frames,  # again, on the threads that serve
            cameras=len(config.cameras),
        )
        if self._worker.start(wait_warm=WARM_UP_WAIT_S) and not self._worker.warm_up_error:
            return ""
        reason = self._worker.warm_up_error or f"not done within {WARM_UP_WAIT_S:.0f} s"
        return f" (the warm-up on the worker's threads: {reason}; the first frames may be slow)"

    def _stop_worker(self) -> None:
        if self._worker is not None:
            for camera, count in self._worker.stop().items():
                self.in_flight[camera] = self.in_flight.get(camera, 0) + count
            self._worker = None

    def _on_fault(self, reason: str) -> None:
        """The worker cannot go on: say so (ERROR diagnostics) and ask the executable to exit non-zero."""
        self.fault = reason
        self.get_logger().fatal(f"the worker stopped: {reason}; no frame can be served, shutting down")
        self._publish_diagnostics()
        self.shutdown_requested.set()

    def _trouble(self, camera: str, kind: str, text: str, *, error: bool = False) -> None:
        self.stats.count(camera, kind)
        period = self.config.log_throttle if self.config is not None else 5.0
        log_now, suppressed = self.stats.should_log(camera, kind, period)
        if log_now:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            line = f"{camera}: {kind.replace('_', ' ')}: {text}{more}"
            (self.get_logger().error if error else self.get_logger().warning)(line)

    def _refused(self, key: str, compressed: bool, err: ImageDecodeError) -> None:
        """Count a refused frame by the kind of its fault."""
        self._trouble(key, refusal_kind(err, compressed=compressed), str(err))

    def _decode(self, key: str, item: tuple[Any, int]) -> InputFrame | None:
        msg, received_ns = item
        camera = self._cameras.get(key)
        if camera is None:
            return None
        compressed = camera.topics.compressed
        try:
            # in the camera's own channel order (bgr8 and JPEG stay BGR): the engine takes either
            pixels, order = camera_frame(msg, compressed=compressed, max_pixels=self._max_pixels)
        except ImageDecodeError as err:
            self._refused(key, compressed, err)
            return None
        stamp = stamps.stamp_ns(msg)
        side = None
        if camera.topics.depth and camera.topics.camera_info:
            try:
                side = camera.side.match(stamp, pixels.shape[:2], round(self.config.sync_tolerance * 1e9))
            except (ConfigError, ImageDecodeError) as err:
                self._trouble(key, "depth_error", str(err))
        return InputFrame(
            camera=key,
            image=pixels,
            stamp_ns=stamp,
            frame_id=str(msg.header.frame_id),
            received_ns=received_ns,
            depth=side[0] if side else None,
            camera_model=side[1] if side else None,
            overlay=camera.wanted("overlay"),
            points=side is not None and camera.wanted("points"),
            semantic_image=any(camera.wanted(name) for name in SEMANTIC_IMAGE_OUTPUTS),
            instance_image=any(camera.wanted(name) for name in INSTANCE_IMAGE_OUTPUTS),
            order=order,
            positions=side is not None and any(camera.wanted(name) for name in POSITION_OUTPUTS),
        )

    def _output_context(self, camera: str = "") -> OutputContext:
        engine = self.engine
        return OutputContext(
            engine.label_set,
            engine.label_divisor,
            engine.score_threshold(),
            self._reporter.status_lines.get(camera, "") if self._reporter is not None else "",
        )

    def _publish(self, result: FrameResult, started_ns: int, decoded_ns: int) -> None:
        camera = self._cameras.get(result.camera)
        if camera is None:
            return
        for event in result.events:
            self._trouble(result.camera, event, f"tracker reset at stamp {result.stamp_ns / 1e9:.3f} s")
        if result.dropped_centers:
            self._trouble(
                result.camera,
                "center_overflow",
                f"{result.dropped_centers} instance centers left out (more than the fusion's "
                f"{DEFAULT_MAX_CENTERS} slots); set fusion.top_k to keep the best ones on purpose",
            )
        begin = time.monotonic_ns()
        config = self.config
        enabled = {"markers": config.publish_markers, "detections": config.publish_vision_msgs}
        camera.publish(result, self._output_context(result.camera), enabled)  # the worker counts a failure
        end = time.monotonic_ns()
        latencies = {k: 1000 * v for k, v in result.times.items()}
        latencies["queue"] = (started_ns - result.received_ns) / 1e6
        latencies["decode"] = (decoded_ns - started_ns) / 1e6
        latencies["publish"] = (end - begin) / 1e6
        latencies["total"] = (end - result.received_ns) / 1e6
        self.stats.frame(result.camera, latencies)

    def _publish_camera_outputs(self) -> None:
        """The latched outputs of every camera: the label set, and LabelInfo with the threshold in force."""
        if self.engine is None:
            return
        header = header_message(self.get_clock().now().nanoseconds, "")
        context = self._output_context()
        for camera in self._cameras.values():
            camera.publish_latched(header, context)

    # --------------------------------------------------------------------------------------------
    # what the reporter (/diagnostics) reads

    def slot_stats(self) -> dict[str, SlotStats]:
        return self._slots.stats()

    def camera_keys(self) -> list[str]:
        return list(self._cameras)

    def _publish_diagnostics(self) -> None:
        if self._reporter is not None:
            self._reporter.publish()

    def finish(self) -> dict[str, dict[str, object]]:
        """Stop serving and publish the final counts (``/diagnostics`` with ``final: true`` and the
        frames in flight); returns the counts per camera, also printed one line each."""
        self.active = False
        self._destroy_subscriptions()
        self._stop_worker()
        return self._reporter.final() if self._reporter is not None and self.engine is not None else {}
