"""The frame engine (ROS-free): what turns decoded camera frames into results, for every front-end.

:class:`FrameEngine` (``engine.py``) over :class:`~panoptic_ros.runtime.pipeline.PanopticPipeline`
(``pipeline.py``: upload, preprocess, inference, fusion, label maps); the instance table
(``instances.py``); the description of every output message (``outputs.py``); the node's parameter
table and validated settings (``config.py``); newest-frame slots (``slots.py``) and statistics
(``stats.py``). The node (``panoptic_ros.ros``), the bag tools and the command line
(``panoptic_ros.apps``, ``panoptic_ros.cli``) sit on top.
"""

from __future__ import annotations

from panoptic_ros.runtime.engine import EngineParams, FrameEngine
from panoptic_ros.runtime.records import FrameResult, InputFrame, InstanceTable
from panoptic_ros.runtime.slots import LatestFrameSlots, SlotStats

__all__ = [
    "EngineParams",
    "FrameEngine",
    "FrameResult",
    "InputFrame",
    "InstanceTable",
    "LatestFrameSlots",
    "SlotStats",
]
