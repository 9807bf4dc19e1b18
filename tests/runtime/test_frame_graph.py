"""Whole-frame CUDA graphs: what is refused (and why), the graph's body against the pipeline's own path,
and on a GPU the captured replay against the eager pipeline with no device sync."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from panoptic_ros.data.synthetic import generate
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion import CenterOffsetParams
from panoptic_ros.resources import default_model
from panoptic_ros.runtime.frame_graph import FrameGraphs, graph_refusal
from panoptic_ros.runtime.pipeline import FrameOutput, PanopticPipeline

CUDA = torch.device("cuda")


def _camera_frames(sizes: list[tuple[int, int]], seed: int = 3) -> list[np.ndarray]:
    scenes = generate(len(sizes), seed=seed)
    return [
        np.ascontiguousarray(cv2.resize(s.image, size[::-1])) for s, size in zip(scenes, sizes, strict=True)
    ]


def _assert_same_output(a: FrameOutput, b: FrameOutput) -> None:
    for name in ("panoptic", "semantic", "instance"):
        assert torch.equal(getattr(a, name).cpu(), getattr(b, name).cpu()), name
    for name in a.segments._fields:
        x, y = getattr(a.segments, name).cpu(), getattr(b.segments, name).cpu()
        if x.is_floating_point():
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(x, y), name


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"device": torch.device("cpu")}, "needs a CUDA device"),
        ({"capturable": False}, "cannot be captured"),
        ({"fixed_shapes": False}, "no fixed-shape fusion"),
        ({"companions": 1}, "companions"),
        ({"center_slots": 1000}, "do not fit label_divisor=1000"),
    ],
)
def test_each_reason_to_refuse_a_graph_is_named(kwargs: dict, reason: str) -> None:
    base = {
        "device": CUDA,
        "capturable": True,
        "fixed_shapes": True,
        "companions": 0,
        "center_slots": 200,
        "label_divisor": 1000,
    }
    assert graph_refusal(**base) is None
    refusal = graph_refusal(**{**base, **kwargs})
    assert refusal is not None and reason in refusal


def test_a_cpu_pipeline_refuses_a_cuda_graph_and_says_why() -> None:
    with pytest.raises(ConfigError, match="cuda_graph: a CUDA graph needs a CUDA device"):
        PanopticPipeline(default_model(), backend="onnxruntime", device="cpu", cuda_graph=True)


def test_graphs_are_kept_per_geometry_least_recently_used_dropped() -> None:
    graphs: FrameGraphs[int] = FrameGraphs(limit=2)
    assert len(graphs) == 0
    # capturing needs CUDA; the cache's bookkeeping is checked through its refusal on the CPU
    with pytest.raises(ValueError, match="CUDA device"):
        graphs.run("a", lambda x: 1, torch.zeros(1))
    assert len(graphs) == 0 and graphs.captures == 0


def test_the_graph_body_gives_the_pipeline_s_outputs() -> None:
    """What a graph captures (normalization, network, fixed-shape fusion, category maps), run eagerly on
    the CPU with the torch backend, equals the pipeline's own stages frame by frame."""
    pipeline = PanopticPipeline(default_model(), backend="torch", device="cpu", fixed_shapes=True)
    images = _camera_frames([(480, 640), (200, 300), (192, 384)])
    (batch,) = pipeline.network(images)
    expected = pipeline.fuse(batch)
    frames = [out.frame for out in expected]
    device_frames = pipeline._device_frames(batch.fitted, frames, pipeline.params)
    replayed = pipeline.fuse(batch._replace(roles={}, fused=device_frames))
    for a, b in zip(replayed, expected, strict=True):
        _assert_same_output(a, b)
        assert a.dropped_centers is not None and int(a.dropped_centers) == 0
    # padding rows of the fixed-shape table are not segments: id -1, area 0
    table = expected[0].segments
    padding = table.areas == 0
    assert bool(padding.any()) and bool((table.ids[padding] == -1).all())
    pipeline.close()


@pytest.mark.gpu
def test_cuda_graph_replays_equal_the_eager_pipeline_without_a_sync() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    eager = PanopticPipeline(default_model(), backend="torch", device="cuda", fixed_shapes=True)
    graphed = PanopticPipeline(default_model(), backend="torch", device="cuda", cuda_graph=True)
    assert graphed.graphs is not None
    geometries = [[(480, 640)], [(1080, 1920)], [(480, 640), (240, 320)]]
    for seed in (1, 2):
        for sizes in geometries:
            images = _camera_frames(sizes, seed=seed)
            (batch,) = graphed.network(images)  # captured on the first batch of each geometry
            torch.cuda.synchronize()
            for a, b in zip(graphed.fuse(batch), eager(images), strict=True):
                _assert_same_output(a, b)
    assert graphed.graphs.captures == len(geometries)
    # a replay makes no device sync
    images = _camera_frames([(480, 640)], seed=4)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        (batch,) = graphed.network(images)
        outputs = graphed.fuse(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    _assert_same_output(outputs[0], eager(images)[0])
    # thresholds that do not fit the graph are refused, the ones in force stay
    with pytest.raises(ConfigError, match="refused with cuda_graph"):
        graphed.set_params(CenterOffsetParams(top_k=None, label_divisor=100))
    assert graphed.params.label_divisor == 1000
    eager.close()
    graphed.close()


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_a_cuda_frame_syncs_twice_tracking_and_overlay_included(cuda_graph: bool) -> None:
    """On CUDA the engine reads the device twice per frame: the frame's download (segment table and
    label maps) and the tracker's statistics; the replayed graph or the fixed-shape fusion add none."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import warnings

    from panoptic_ros.runtime import FrameEngine, InputFrame

    engine = FrameEngine.open(default_model(), backend="torch", device="cuda", cuda_graph=cuda_graph)
    images = _camera_frames([(480, 640)] * 4, seed=5)
    for k, image in enumerate(images[:3]):
        engine.process([InputFrame("cam", image, k * 10**8, overlay=True)])
    torch.cuda.synchronize()
    engine.pipeline.timing = False  # timing synchronizes on purpose around each stage
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine.process([InputFrame("cam", images[3], 3 * 10**8, overlay=True)])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2, syncs
    engine.close()


def test_a_graph_keeps_every_tensor_its_capture_read() -> None:
    """Cached constants read by a captured graph must outlive the caches that made them: the capture
    records every tensor handed to PyTorch (checked here on the CPU, without a capture)."""
    from panoptic_ros.runtime.frame_graph import _TensorsUsed

    constant = torch.arange(5)
    x = torch.ones(5)
    with _TensorsUsed() as used:
        y = (x * constant).sum()
        torch.where(x > 0, constant, 0)
    kept = {id(t) for t in used.tensors.values()}
    assert id(constant) in kept and id(x) in kept
    assert float(y) == 10.0
