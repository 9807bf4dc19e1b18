"""The node's work without ROS: newest-frame slots per camera and the frame processor.

``panoptic_ros.ros`` wraps these in a ROS 2 node; ``panoptic-ros bag process`` runs the same
processor over a bag offline, so both produce the same outputs for the same frames.
"""

from __future__ import annotations

from panoptic_ros.runtime.processor import FrameProcessor, ProcessorParams
from panoptic_ros.runtime.records import FrameResult, InputFrame, InstanceTable
from panoptic_ros.runtime.slots import LatestFrameSlots, SlotStats

__all__ = [
    "FrameProcessor",
    "FrameResult",
    "InputFrame",
    "InstanceTable",
    "LatestFrameSlots",
    "ProcessorParams",
    "SlotStats",
]
