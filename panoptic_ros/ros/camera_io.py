"""One camera of the node: its publishers (one per output of :mod:`panoptic_ros.runtime.outputs`), its
subscriptions (image, camera_info, depth) and its side inputs; publishing a result wraps each output's
description into an rclpy message only when someone subscribes to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from panoptic_ros.core.messages import Message
from panoptic_ros.core.topics import join_topic, output_namespace
from panoptic_ros.ros.conversions import message_class, to_ros, type_available
from panoptic_ros.ros.qos import output_qos
from panoptic_ros.runtime.config import CameraTopics
from panoptic_ros.runtime.outputs import CAMERA_OUTPUTS, FRAME_OUTPUTS, Output, OutputContext
from panoptic_ros.runtime.records import FrameResult
from panoptic_ros.runtime.side_inputs import SideInputs


def available_outputs() -> tuple[list[Output], list[str]]:
    """The outputs whose message types are installed, and the names of those left out."""
    outputs = [o for o in (*FRAME_OUTPUTS, *CAMERA_OUTPUTS) if not o.package or type_available(o.type)]
    skipped = [o.name for o in (*FRAME_OUTPUTS, *CAMERA_OUTPUTS) if o not in outputs]
    return outputs, skipped


@dataclass
class CameraIO:
    """One camera's topics, publishers and side inputs (camera_info, recent depth images)."""

    topics: CameraTopics
    publishers: dict[str, Any] = field(default_factory=dict)
    side: SideInputs = field(default_factory=SideInputs)

    def __post_init__(self) -> None:
        self.namespace = output_namespace(self.topics.image)
        self.side = SideInputs(compressed_depth=self.topics.depth.rstrip("/").endswith("/compressed"))

    def topic(self, name: str) -> str:
        return join_topic(self.namespace, "panoptic", name)

    def wanted(self, name: str) -> bool:
        pub = self.publishers.get(name)
        return pub is not None and pub.get_subscription_count() > 0

    def create_publishers(self, node: Any, outputs: list[Output], depth: int) -> None:
        for output in outputs:
            qos = output_qos(latched=output.latched, depth=depth)
            self.publishers[output.name] = node.create_lifecycle_publisher(
                message_class(output.type), self.topic(output.name), qos
            )

    def subscriptions(self, on_image: Callable[[Any], None]) -> list[tuple[type, str, Callable[[Any], None]]]:
        """``(type, topic, callback)`` of the image, camera_info and depth subscriptions."""
        topics = self.topics
        subscribe: list[tuple[type, str, Callable[[Any], None]]] = [
            (CompressedImage if topics.compressed else Image, topics.image, on_image)
        ]
        if topics.camera_info:
            subscribe.append((CameraInfo, topics.camera_info, self.side.put_info))
        if topics.depth:
            depth_type = CompressedImage if self.side.compressed_depth else Image
            subscribe.append((depth_type, topics.depth, self.side.put_depth))
        return subscribe

    def publish(self, result: FrameResult, context: OutputContext, enabled: Mapping[str, bool]) -> None:
        """Each per-frame output someone subscribes to (and that is not switched off in ``enabled``)."""
        for output in FRAME_OUTPUTS:
            if enabled.get(output.name, True) and self.wanted(output.name):
                self._publish(output.name, output.describe(result, context))

    def publish_latched(self, header: Message, context: OutputContext) -> None:
        """The latched outputs (label set, LabelInfo), for late joiners."""
        for output in CAMERA_OUTPUTS:
            if output.name in self.publishers:
                self._publish(output.name, output.describe(header, context))

    def _publish(self, name: str, message: Message | None) -> None:
        if message is not None:
            self.publishers[name].publish(to_ros(message))
