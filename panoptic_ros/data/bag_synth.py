"""``panoptic-ros bag synth``: a multi-camera rosbag2 file of synthetic driving sequences with ground truth.

Per camera ``k`` (namespace ``/camK``), at 10 Hz, every message of a frame with the same header stamp:

- ``/camK/image_raw`` (``sensor_msgs/Image`` ``rgb8``) or ``/camK/image_raw/compressed`` (JPEG);
- ``/camK/camera_info``: a pinhole camera, ``fx = fy = 0.9 * width``, principal point at the center;
- ``/camK/depth/image_raw`` (``32FC1``, meters, aligned with the image), see :func:`synthetic_depth`;
- ``/camK/ground_truth/semantic`` (``mono8`` category ids of the ``synthetic`` label set, 255 void);
- ``/camK/ground_truth/instance_ids`` (``32SC1`` thing ids, 0 for stuff and void).

Each camera plays ``sequences`` sequences of :func:`panoptic_ros.data.synthetic.generate` one after
another (seed ``seed + k``), with stamps increasing across sequences; all cameras share the stamps, as
a hardware-synchronized rig does. **Thing ids are unique per camera across sequences**: the ids of a
sequence are offset by the largest id of the camera's earlier sequences, so a tracker keeping an id
across a sequence boundary (where the scene changes completely) is an identity error for STQ, as it
should be. The ground truth needs no separate record of the boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.core.image_encode import array_to_compressed, array_to_image
from panoptic_ros.core.labels import load_label_set
from panoptic_ros.core.messages import Message, compressed_message, header_message, image_message
from panoptic_ros.core.topics import camera_info_topic, depth_topic, ground_truth_topic
from panoptic_ros.data.bag_io import BagWriter
from panoptic_ros.data.bag_types import OutputMessage, Storage, to_rosbags
from panoptic_ros.data.synthetic import Sample, generate
from panoptic_ros.data.synthetic_scene import BUILDING, ROAD, SIDEWALK, SKY, VEGETATION
from panoptic_ros.errors import ConfigError

#: Height of the synthetic camera above the ground plane (m).
CAMERA_HEIGHT_M = 1.5
#: Focal length as a fraction of the image width (about 58 degrees horizontal field of view).
FOCAL_PER_WIDTH = 0.9
#: Buildings and vegetation above the horizon stand this far away (m).
BACKDROP_M = 40.0
#: Depth beyond this range is invalid (NaN), as on a real depth camera (m).
MAX_RANGE_M = 80.0
#: First stamp of a synthetic bag (ns since the epoch, November 2023) and the frame period (10 Hz).
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 100_000_000
#: Spacing of the bag (log) times of the messages of one frame, so every storage keeps their order.
LOG_STEP_NS = 1_000


@dataclass(frozen=True)
class SynthBagConfig:
    """What ``bag synth`` writes.

    Attributes:
        cameras: number of cameras (``/cam0`` ...).
        sequences: sequences per camera, played one after another.
        frames: frames per sequence.
        size: ``(height, width)`` of the images.
        compressed: JPEG ``CompressedImage`` instead of raw ``rgb8``.
        storage: ``sqlite3`` or ``mcap``.
        seed: world seed of camera 0 (camera ``k`` uses ``seed + k``); the shipped model was trained
            on seed 0, so the default is unseen data.
        start_ns, period_ns: first stamp and frame period.
    """

    cameras: int = 2
    sequences: int = 1
    frames: int = 12
    size: tuple[int, int] = (192, 384)
    compressed: bool = False
    storage: Storage = "sqlite3"
    seed: int = 1000
    start_ns: int = START_NS
    period_ns: int = PERIOD_NS

    def __post_init__(self) -> None:
        for name in ("cameras", "sequences", "frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if min(self.size) < 16:
            raise ConfigError(f"size={self.size[0]}x{self.size[1]}: images must be at least 16 x 16")
        if self.period_ns <= LOG_STEP_NS * 8 * self.cameras:
            raise ConfigError(f"period_ns={self.period_ns} is too short for {self.cameras} cameras")

    def image_topic(self, camera: int) -> str:
        return f"/cam{camera}/image_raw" + ("/compressed" if self.compressed else "")


@dataclass(frozen=True)
class SynthBagReport:
    """What :func:`write_synthetic_bag` wrote: the bag, its camera topics and messages per topic."""

    path: Path
    image_topics: tuple[str, ...]
    counts: dict[str, int]

    @property
    def messages(self) -> int:
        return sum(self.counts.values())


def camera_model(height: int, width: int) -> CameraModel:
    """The synthetic pinhole camera of an image size."""
    focal = FOCAL_PER_WIDTH * width
    return CameraModel(focal, focal, width / 2.0, height / 2.0, width, height)


def synthetic_depth(semantic: np.ndarray, instance: np.ndarray, camera: CameraModel) -> np.ndarray:
    """A plausible, simple depth image (``float32`` meters, NaN invalid) for a synthetic frame.

    The model: a flat ground plane seen by a level camera :data:`CAMERA_HEIGHT_M` above it, with the
    horizon at the first row holding road or sidewalk (the image center when there is none). Row
    ``v`` below the horizon lies at ``z = fy * height / (v - horizon)``. Road and sidewalk take the
    depth of their row; every thing stands upright at the depth of its ground-contact row (its
    lowest pixel); buildings and vegetation form a backdrop at :data:`BACKDROP_M` (nearer where they
    reach down onto closer ground); sky and anything beyond :data:`MAX_RANGE_M` are NaN.

    Args:
        semantic: ``H x W`` class indices of :mod:`panoptic_ros.data.synthetic`.
        instance: ``H x W`` thing ids, 0 on stuff.
        camera: the camera of this image size.
    """
    h, w = semantic.shape
    ground_rows = np.flatnonzero(np.isin(semantic, (ROAD, SIDEWALK)).any(axis=1))
    horizon = float(ground_rows[0]) - 1.0 if ground_rows.size else camera.cy
    rows = np.arange(h, dtype=np.float64)
    below = rows - horizon
    with np.errstate(divide="ignore"):
        ground = np.where(below > 0, camera.fy * CAMERA_HEIGHT_M / below, np.inf)
    depth = np.broadcast_to(ground[:, None], (h, w)).copy()
    backdrop = np.isin(semantic, (BUILDING, VEGETATION))
    depth[backdrop] = np.minimum(depth[backdrop], BACKDROP_M)
    ys, xs = np.nonzero(instance > 0)
    if ys.size:
        ids = instance[ys, xs]
        contact = np.zeros(int(ids.max()) + 1, dtype=np.int64)
        np.maximum.at(contact, ids, ys)
        thing_depth = np.minimum(ground[contact], BACKDROP_M)
        depth[ys, xs] = thing_depth[ids]
    depth[semantic == SKY] = np.nan
    depth[~(depth <= MAX_RANGE_M)] = np.nan
    return depth.astype(np.float32)


def _camera_info(model: CameraModel, header: Message) -> Message:
    k = np.array([model.fx, 0.0, model.cx, 0.0, model.fy, model.cy, 0.0, 0.0, 1.0])
    p = np.array([model.fx, 0.0, model.cx, 0.0, 0.0, model.fy, model.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    return Message(
        "sensor_msgs/msg/CameraInfo",
        {
            "header": header,
            "height": model.height,
            "width": model.width,
            "distortion_model": "plumb_bob",
            "d": np.zeros(5),
            "k": k,
            "r": np.eye(3).reshape(-1),
            "p": p,
        },
    )


def _frame_messages(
    config: SynthBagConfig,
    camera: int,
    sample: Sample,
    *,
    stamp_ns: int,
    id_offset: int,
    class_to_id: np.ndarray,
) -> list[OutputMessage]:
    height, width = config.size
    header = header_message(stamp_ns, f"cam{camera}_optical_frame")
    image_topic = config.image_topic(camera)
    model = camera_model(height, width)
    if config.compressed:
        image = compressed_message(
            array_to_compressed(sample.image, codec="jpeg", quality=90, order="rgb"), header
        )
    else:
        image = image_message(array_to_image(sample.image, "rgb8"), header)
    depth = synthetic_depth(sample.semantic, sample.instance, model)
    semantic = class_to_id[sample.semantic].astype(np.uint8)
    instance = np.where(sample.instance > 0, sample.instance + id_offset, 0).astype(np.int32)
    messages = [
        (camera_info_topic(image_topic), _camera_info(model, header)),
        (depth_topic(image_topic), image_message(array_to_image(depth, "32FC1"), header)),
        (image_topic, image),
        (
            ground_truth_topic(image_topic, "semantic"),
            image_message(array_to_image(semantic, "mono8"), header),
        ),
        (
            ground_truth_topic(image_topic, "instance_ids"),
            image_message(array_to_image(instance, "32SC1"), header),
        ),
    ]
    return [OutputMessage(topic, message.type, to_rosbags(message)) for topic, message in messages]


def synthetic_messages(config: SynthBagConfig) -> Iterator[tuple[int, OutputMessage]]:
    """``(log time, message)`` of a synthetic bag in recording order (see the module docstring)."""
    height, width = config.size
    class_to_id = load_label_set("synthetic").class_to_id
    streams = [
        generate(
            config.sequences, seed=config.seed + k, height=height, width=width, sequence_length=config.frames
        )
        for k in range(config.cameras)
    ]
    largest = [0] * config.cameras  # the largest thing id written so far per camera
    offsets = [0] * config.cameras
    for index, samples in enumerate(zip(*streams, strict=True)):
        stamp = config.start_ns + index * config.period_ns
        log_time = stamp
        for camera, sample in enumerate(samples):
            if sample.frame == 0:
                offsets[camera] = largest[camera]
            if sample.instance.size:
                largest[camera] = max(largest[camera], int(sample.instance.max()) + offsets[camera])
            for message in _frame_messages(
                config, camera, sample, stamp_ns=stamp, id_offset=offsets[camera], class_to_id=class_to_id
            ):
                yield log_time, message
                log_time += LOG_STEP_NS


def write_synthetic_bag(path: str | Path, config: SynthBagConfig | None = None) -> SynthBagReport:
    """Write a synthetic camera bag with ground truth at ``path`` (a new folder).

    Raises:
        BagError: ``path`` exists or cannot be written.
    """
    config = config or SynthBagConfig()
    path = Path(path)
    total = config.cameras * config.sequences * config.frames * 5
    with BagWriter(path, config.storage) as writer:
        for log_time, message in tqdm(
            synthetic_messages(config), total=total, desc=f"writing {path.name}", unit="msg", leave=False
        ):
            writer.write(message.topic, message.msgtype, message.msg, log_time)
        counts = dict(writer.counts)
    return SynthBagReport(path, tuple(config.image_topic(k) for k in range(config.cameras)), counts)
