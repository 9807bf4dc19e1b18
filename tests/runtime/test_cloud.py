"""The panoptic point cloud with the shipped model: every point's labels agree with the label images
at the pixel it projects to, instances sit where the instance table puts them, invalid depth is left
out, decimation keeps every n-th pixel, and nothing is computed unless asked for."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.core.geometry import CameraModel
from panoptic_ros.data.synthetic import generate
from panoptic_ros.runtime import EngineParams, FrameEngine, InputFrame
from panoptic_ros.runtime.cloud import POINT_DTYPE
from panoptic_ros.runtime.outputs import OutputContext, points
from panoptic_ros.runtime.pipeline import PanopticPipeline
from tests.conftest import REPO


@pytest.fixture(scope="module")
def engine() -> FrameEngine:
    pipeline = PanopticPipeline(
        REPO / "engines" / "panoptic_synthetic.onnx", backend="onnxruntime", device="cpu"
    )
    return FrameEngine(pipeline)


@pytest.fixture(scope="module")
def frame() -> InputFrame:
    image = next(generate(1, seed=33)).image
    h, w = image.shape[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = 4.0 + 0.01 * cols + 0.02 * rows  # a tilted plane, meters
    depth[::7, ::5] = np.nan  # holes
    depth[: h // 8] = 0.0  # no return at the top
    camera = CameraModel.from_k([180.0, 0, w / 2 - 3, 0, 170.0, h / 2 + 2, 0, 0, 1], w, h)
    return InputFrame("cam", image, 0, depth=depth, camera_model=camera, points=True)


def _project(cloud: np.ndarray, camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    u = np.rint(cloud["x"] * camera.fx / cloud["z"] + camera.cx).astype(np.int64)
    v = np.rint(cloud["y"] * camera.fy / cloud["z"] + camera.cy).astype(np.int64)
    return u, v


def test_labels_agree_with_the_label_images_at_the_projected_pixels(
    engine: FrameEngine, frame: InputFrame
) -> None:
    engine.reset()
    (result,) = engine.process([frame])
    cloud = result.cloud
    assert cloud is not None and cloud.dtype == POINT_DTYPE
    camera = frame.camera_model
    u, v = _project(cloud, camera)
    valid = np.isfinite(frame.depth) & (frame.depth > 0)
    assert cloud.size == int(valid.sum())  # every pixel with depth, no other
    assert valid[v, u].all()
    assert np.allclose(cloud["z"], frame.depth[v, u])
    label = cloud["label"]
    assert np.array_equal(label >> 16, result.semantic[v, u].astype(np.uint32))
    assert np.array_equal(label & 0xFFFF, result.instance_ids[v, u].astype(np.uint32))
    colors = {c.id: (c.color[0] << 16) | (c.color[1] << 8) | c.color[2] for c in engine.label_set.categories}
    rgb = cloud["rgb"].view(np.uint32)
    for category in np.unique(label >> 16):
        if int(category) in colors:
            assert (rgb[(label >> 16) == category] == colors[int(category)]).all()
    assert (label & 0xFFFF).any(), "the frame has things"


def test_instances_sit_where_the_instance_table_puts_them(engine: FrameEngine, frame: InputFrame) -> None:
    engine.reset()
    (result,) = engine.process([frame])
    table, cloud = result.instances, result.cloud
    assert cloud is not None
    checked = 0
    for k in np.flatnonzero(table.is_thing & table.position_valid):
        mine = cloud[(cloud["label"] & 0xFFFF) == table.ids[k]]
        assert mine.size >= 10
        # the table's depth is the median of the same pixels (lower median), through the centroid
        z = np.sort(mine["z"])[(mine.size - 1) // 2]
        assert table.positions[k, 2] == pytest.approx(z, rel=1e-5)
        assert mine["x"].min() <= table.positions[k, 0] <= mine["x"].max()
        assert mine["y"].min() <= table.positions[k, 1] <= mine["y"].max()
        checked += 1
    assert checked >= 1


def test_stride_decimates_and_the_cloud_is_only_made_when_asked(
    engine: FrameEngine, frame: InputFrame
) -> None:
    engine.reset()
    engine.apply(EngineParams(points_stride=3))
    try:
        (result,) = engine.process([frame])
    finally:
        engine.apply(EngineParams())
    cloud = result.cloud
    assert cloud is not None
    u, v = _project(cloud, frame.camera_model)
    assert (u % 3 == 0).all() and (v % 3 == 0).all()
    valid = np.isfinite(frame.depth) & (frame.depth > 0)
    assert cloud.size == int(valid[::3, ::3].sum())
    (plain,) = engine.process([frame._replace(points=False)])
    assert plain.cloud is None
    (no_depth,) = engine.process([frame._replace(depth=None)])
    assert no_depth.cloud is None


def test_point_cloud2_message_describes_the_records(engine: FrameEngine, frame: InputFrame) -> None:
    engine.reset()
    (result,) = engine.process([frame])
    message = points(result, OutputContext(engine.label_set, engine.label_divisor))
    assert message is not None
    fields = {f.fields["name"]: (f.fields["offset"], f.fields["datatype"]) for f in message.fields["fields"]}
    assert fields == {"x": (0, 7), "y": (4, 7), "z": (8, 7), "rgb": (12, 7), "label": (16, 6)}
    assert message.fields["point_step"] == 20 and message.fields["height"] == 1
    assert message.fields["width"] * 20 == message.fields["row_step"] == message.fields["data"].size
    back = message.fields["data"].view(POINT_DTYPE)
    assert np.array_equal(back, result.cloud)
    assert message.get("header", "frame_id") == frame.frame_id
    assert points(result._replace(cloud=None), OutputContext(engine.label_set, engine.label_divisor)) is None
