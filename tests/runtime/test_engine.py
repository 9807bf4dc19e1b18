"""The frame engine with the shipped model: batched cameras, per-camera tracking, stream events
(detected once, with tracking on or off), instance tables consistent with the label maps, ids unique
within a frame, 3D positions from depth, boxes clipped, validated parameters applied as they are."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from panoptic_ros.core.geometry import CameraModel, segment_positions
from panoptic_ros.data.synthetic import generate
from panoptic_ros.errors import ConfigError
from panoptic_ros.runtime import EngineParams, FrameEngine, InputFrame
from panoptic_ros.runtime.download import tracker_input
from panoptic_ros.runtime.pipeline import PanopticPipeline
from panoptic_ros.runtime.records import clip_boxes
from panoptic_ros.tracking import Tracker, TrackerParams, TrackState
from tests.conftest import REPO

PERIOD = 100_000_000


@pytest.fixture(scope="module")
def pipeline() -> PanopticPipeline:
    return PanopticPipeline(REPO / "engines" / "panoptic_synthetic.onnx", backend="onnxruntime", device="cpu")


@pytest.fixture(scope="module")
def sequence() -> list:
    return list(generate(1, seed=21, sequence_length=6))


def test_two_cameras_one_batch_separate_tracks(pipeline: PanopticPipeline, sequence: list) -> None:
    engine = FrameEngine(pipeline, EngineParams(tracker=TrackerParams(min_hits=1)))
    for k, sample in enumerate(sequence):
        a, b = engine.process(
            [
                InputFrame("a", sample.image, k * PERIOD),
                InputFrame("b", sample.image[:, ::-1].copy(), k * PERIOD),
            ]
        )
        for result in (a, b):
            assert result.semantic.dtype == np.uint8 and result.semantic.shape == sample.image.shape[:2]
            ids = result.instance_ids
            table = result.instances
            present = table.is_thing & (table.areas > 0)
            values, counts = np.unique(ids[ids > 0], return_counts=True)
            assert sorted(values.tolist()) == sorted(table.ids[present].tolist())
            area = dict(zip(table.ids[present].tolist(), table.areas[present].tolist(), strict=True))
            assert all(area[v] == c for v, c in zip(values.tolist(), counts.tolist(), strict=True))
            assert len(set(table.ids.tolist())) == table.size  # stuff ids never collide with track ids
        # the mirrored camera sees the same objects: same number of thing tracks, independent ids
        assert (
            abs(
                int((a.instances.is_thing & (a.instances.areas > 0)).sum())
                - int((b.instances.is_thing & (b.instances.areas > 0)).sum())
            )
            <= 2
        )
    assert a.instances.ages.max() == len(sequence)  # tracks lived through the sequence


def test_resolution_change_and_time_jump_are_reported(pipeline: PanopticPipeline, sequence: list) -> None:
    engine = FrameEngine(pipeline)
    image = sequence[0].image
    (first,) = engine.process([InputFrame("a", image, 10 * PERIOD)])
    assert first.events == ()
    (small,) = engine.process([InputFrame("a", image[::2, ::2].copy(), 11 * PERIOD)])
    assert small.events == ("resolution_change",) and small.semantic.shape == (96, 192)
    (back,) = engine.process([InputFrame("a", image[::2, ::2].copy(), 3 * PERIOD)])
    assert back.events == ("time_jump_back",)


def test_tracking_off_gives_numbers_unique_within_the_frame(
    pipeline: PanopticPipeline, sequence: list
) -> None:
    engine = FrameEngine(pipeline, EngineParams(tracking=False))
    (result,) = engine.process([InputFrame("a", sequence[0].image, 0)])
    table = result.instances
    things = table.is_thing
    assert things.any() and (table.ages[things] == 1).all()
    assert len(set(table.ids.tolist())) == table.size  # unique across categories and with stuff
    assert len(set(table.category_ids[things].tolist())) > 1, "the test frame needs things of two classes"
    values, counts = np.unique(result.instance_ids[result.instance_ids > 0], return_counts=True)
    assert values.tolist() == sorted(table.ids[things].tolist())
    assert counts.tolist() == [int(table.areas[table.ids == v][0]) for v in values.tolist()]
    # stream events are detected without a tracker too
    (later,) = engine.process([InputFrame("a", sequence[0].image[::2, ::2].copy(), -1)])
    assert later.events == ("resolution_change", "time_jump_back")


def test_tracker_input_takes_the_thing_rows_that_show(pipeline: PanopticPipeline, sequence: list) -> None:
    camera = np.ascontiguousarray(cv2.resize(sequence[0].image, (640, 480)))
    (out,) = pipeline([camera])
    inp = tracker_input(out, 5)
    seg = out.segments
    things = (seg.is_thing & (seg.areas > 0)).nonzero().squeeze(1)
    assert inp.ids.tolist() == (things + 1).tolist()
    assert inp.stamp_ns == 5 and inp.size == (480, 640)
    # the map stays at the model's resolution; each pixel weighs the camera pixels that copy it
    assert tuple(inp.instance_map.shape) == tuple(out.panoptic.shape) == (192, 384)
    assert torch.equal(inp.image, out.model_image.permute(1, 2, 0))
    assert inp.pixel_weights is not None and int(inp.pixel_weights.sum()) == 480 * 640
    in_camera = out.in_camera(out.instance)
    for k, value in enumerate(inp.ids.tolist()):
        mask = in_camera == value
        assert int(mask.sum()) == int(seg.areas[value - 1])
        assert int(inp.pixel_weights[inp.instance_map == value].sum()) == int(mask.sum())
        assert inp.category_ids[k] == seg.category_ids[value - 1]
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert inp.bboxes[k].tolist() == [
            xs.min(),
            ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1,
        ]


def test_tentative_tracks_are_left_out_by_the_tracker_alone(
    pipeline: PanopticPipeline, sequence: list
) -> None:
    hidden = FrameEngine(pipeline, EngineParams(tracker=TrackerParams(min_hits=3, publish_tentative=False)))
    shown = FrameEngine(pipeline, EngineParams(tracker=TrackerParams(min_hits=3, publish_tentative=True)))
    (a,) = hidden.process([InputFrame("a", sequence[0].image, 0)])
    (b,) = shown.process([InputFrame("a", sequence[0].image, 0)])
    assert not a.instances.is_thing.any() and not (a.instance_ids > 0).any()
    assert (b.instances.states[b.instances.is_thing] == TrackState.TENTATIVE).all() and (
        b.instance_ids > 0
    ).any()


def test_apply_takes_validated_fusion_thresholds(pipeline: PanopticPipeline, sequence: list) -> None:
    engine = FrameEngine(pipeline)
    default = engine.fusion_params()
    with pytest.raises(ConfigError, match="nms_kernel"):
        engine.fusion_params({"nms_kernel": 4})
    strict = engine.fusion_params(
        {"center_threshold": 9.0, "mask_threshold": 0.1}
    )  # other family's key ignored
    assert strict.center_threshold == 9.0 and engine.score_threshold() == default.center_threshold
    engine.apply(EngineParams(fusion=strict))
    assert engine.score_threshold() == 9.0
    (result,) = engine.process([InputFrame("a", sequence[0].image, 0)])
    assert not result.instances.is_thing.any()  # no center passes
    engine.apply(EngineParams(fusion=default))


def test_depth_gives_positions_and_overlay_is_bgr(pipeline: PanopticPipeline, sequence: list) -> None:
    engine = FrameEngine(pipeline)
    image = sequence[0].image
    h, w = image.shape[:2]
    depth = np.full((h // 2, w // 2), 12.0, dtype=np.float32)  # another size: resized to the labels
    camera = CameraModel.from_k([100.0, 0, w / 2, 0, 100.0, h / 2, 0, 0, 1], w, h)
    (result,) = engine.process([InputFrame("a", image, 0, depth=depth, camera_model=camera, overlay=True)])
    valid = result.instances.position_valid
    assert valid.any()
    assert np.allclose(result.instances.positions[valid, 2], 12.0)
    k = int(np.flatnonzero(valid)[0])
    cx = result.instances.centroids[k, 0]
    assert result.instances.positions[k, 0] == pytest.approx((cx - w / 2) * 12.0 / 100.0, rel=1e-4)
    assert result.overlay_bgr is not None and result.overlay_bgr.shape == (h, w, 3)


@pytest.mark.parametrize("points", [False, True], ids=["positions", "cloud"])
@pytest.mark.parametrize("shape", ["row", "empty", "three channels"])
def test_a_depth_image_not_one_channel_is_refused(
    pipeline: PanopticPipeline, sequence: list, shape: str, points: bool
) -> None:
    engine = FrameEngine(pipeline)
    image = sequence[0].image
    h, w = image.shape[:2]
    depth = {"row": np.full(w, 3.0), "empty": np.zeros((0, 0)), "three channels": np.full((h, w, 3), 3.0)}
    camera = CameraModel.from_k([100.0, 0, w / 2, 0, 100.0, h / 2, 0, 0, 1], w, h)
    frame = InputFrame(
        "a",
        image,
        0,
        depth=depth[shape].astype(np.float32),
        camera_model=camera,
        positions=not points,
        points=points,
    )
    with pytest.raises(ValueError, match=r"a depth image must be \[H, W\] with pixels"):
        engine.process([frame])


def test_positions_only_when_asked_for(pipeline: PanopticPipeline, sequence: list) -> None:
    """A frame with depth that asks for no positions (the node: nobody subscribes to an output that
    shows them) gets the same table without any position; the point cloud is asked for on its own."""
    image = sequence[0].image
    h, w = image.shape[:2]
    depth = np.full((h, w), 7.0, dtype=np.float32)
    camera = CameraModel.from_k([90.0, 0, w / 2, 0, 90.0, h / 2, 0, 0, 1], w, h)
    results = []
    for positions in (True, False):
        frame = InputFrame("a", image, 0, depth=depth, camera_model=camera, positions=positions, points=True)
        results.append(FrameEngine(pipeline).process([frame])[0])
    placed, unplaced = results
    assert placed.instances.position_valid.any()
    assert not unplaced.instances.position_valid.any() and not unplaced.instances.positions.any()
    assert unplaced.cloud is not None and np.array_equal(unplaced.cloud, placed.cloud)
    for name in ("ids", "category_ids", "areas", "bboxes", "centroids", "scores"):
        assert np.array_equal(getattr(unplaced.instances, name), getattr(placed.instances, name)), name


def test_segment_positions_use_the_median_and_skip_invalid_depth() -> None:
    labels = torch.tensor([[1, 1, 1, 2], [1, 1, 2, 2], [3, 3, 3, 3]])
    depth = torch.tensor(
        [[1.0, 2.0, 100.0, float("nan")], [3.0, 4.0, 5.0, 7.0], [float("nan")] * 4], dtype=torch.float32
    )
    camera = CameraModel(fx=2.0, fy=2.0, cx=0.0, cy=0.0, width=4, height=3)
    ids = torch.tensor([3, 1, 2])
    centroids = torch.tensor([[1.5, 2.0], [1.0, 0.5], [2.5, 1.0]])
    positions, valid = segment_positions(labels, ids, centroids, depth, camera, min_pixels=2)
    assert valid.tolist() == [False, True, True]  # segment 3 has no valid depth
    assert positions[1, 2].item() == 3.0  # median of 1, 2, 3, 4, 100 (robust to the outlier)
    assert positions[2, 2].item() == 5.0  # lower median of 5, 7
    assert positions[1, 0].item() == pytest.approx(1.0 * 3.0 / 2.0)
    assert positions[0].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", range(4))
def test_weighted_positions_equal_those_of_the_map_the_weights_stand_for(seed: int) -> None:
    """A model-resolution map with camera weights per row and column, its depth sampled once per
    model pixel, gives the medians and the validity of the camera-size map its pixels stand for (each
    repeated as many times as its weights say), negative and NaN depths left out."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=(9, 12))
    depth = rng.uniform(1.0, 9.0, size=(9, 12)).astype(np.float32)
    depth[rng.random((9, 12)) < 0.15] = np.nan
    depth[rng.random((9, 12)) < 0.05] = -1.0
    row_weight, col_weight = rng.integers(0, 4, size=9), rng.integers(0, 4, size=12)
    camera = CameraModel(
        fx=5.0, fy=5.0, cx=3.0, cy=2.0, width=int(col_weight.sum()), height=int(row_weight.sum())
    )
    ids = torch.tensor([4, 0, 2, 5, 3, 1])
    centroids = torch.from_numpy(rng.uniform(0, 8, size=(6, 2)).astype(np.float32))
    weights = torch.from_numpy(row_weight[:, None] * col_weight[None, :])

    def repeat(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.repeat(np.repeat(values, row_weight, axis=0), col_weight, axis=1))

    for min_pixels in (1, 6):
        weighted = segment_positions(
            torch.from_numpy(labels), ids, centroids, torch.from_numpy(depth), camera, min_pixels=min_pixels,
            weights=weights,
        )  # fmt: skip
        expanded = segment_positions(
            repeat(labels), ids, centroids, repeat(depth), camera, min_pixels=min_pixels
        )
        assert torch.equal(weighted[1], expanded[1])
        assert torch.equal(weighted[0], expanded[0])


def test_sampling_the_camera_frame_takes_the_middle_pixel_of_each_block() -> None:
    """:meth:`PixelFrame.sample` picks, for each model pixel, the middle camera pixel copying it; for a
    camera smaller than the model every camera pixel is picked once among the model pixels that weigh."""
    from panoptic_ros.core.preprocess import pixel_frame, plan

    for camera_size in ((30, 50), (7, 9)):
        frame = pixel_frame(plan(camera_size, (12, 20), "resize"), (12, 20), torch.device("cpu"))
        image = np.arange(camera_size[0] * camera_size[1]).reshape(camera_size)
        sampled = frame.sample(image)
        assert sampled.shape == (12, 20)
        rows = frame.rows.host_index
        for r in range(12):
            copies = np.flatnonzero(rows == r)
            if copies.size:
                assert sampled[r, 0] // camera_size[1] == copies[(copies.size - 1) // 2]
        weights = frame.weights.numpy() if frame.weights is not None else np.ones((12, 20), dtype=int)
        if camera_size == (7, 9):
            assert sorted(sampled[weights > 0].tolist()) == image.reshape(-1).tolist()
        assert np.array_equal(frame.expand(sampled), image) == (camera_size == (7, 9))


def test_clip_boxes() -> None:
    boxes = clip_boxes(np.array([[-4, 10, 8, 6], [2, 3, 4, 5], [20, 1, 5, 5]]), 16, 12)
    assert boxes.tolist() == [[0, 10, 4, 2], [2, 3, 4, 5], [16, 1, 0, 5]]


@pytest.mark.parametrize("size", [(480, 640), (150, 200)])
def test_tracking_at_model_resolution_equals_tracking_the_camera_map(
    pipeline: PanopticPipeline, sequence: list, size: tuple[int, int]
) -> None:
    """The engine tracks the model-resolution map with camera pixel weights: the same tracks, areas and
    track maps as tracking the camera-size map (the image given in the same frame as the map)."""
    weighted = Tracker(TrackerParams(min_hits=1))
    direct = Tracker(TrackerParams(min_hits=1))
    for k, sample in enumerate(sequence):
        (out,) = pipeline([np.ascontiguousarray(cv2.resize(sample.image, size[::-1]))])
        inp = tracker_input(out, k * PERIOD)
        assert inp.pixel_weights is not None
        a = weighted.update(inp)
        b = direct.update(
            inp._replace(
                instance_map=out.in_camera(inp.instance_map),
                image=out.in_camera(out.model_image).permute(1, 2, 0),
                pixel_weights=None,
                frame_size=None,
            )
        )
        assert torch.equal(out.in_camera(a.track_map), b.track_map)
        assert np.array_equal(a.instance_track_ids, b.instance_track_ids)
        assert np.array_equal(a.tracks.areas, b.tracks.areas) and a.tracks.areas.sum() > 0
        assert np.array_equal(a.tracks.track_ids, b.tracks.track_ids)


def test_fixed_shape_engine_equals_the_data_dependent_one_and_counts_dropped_centers(sequence: list) -> None:
    """The engine with the fixed-shape fusion (CUDA's default) publishes what the CPU's default
    publishes, frame by frame with tracking (the scores to float32 rounding: the CPU's compiled
    softmax has an ``exp`` of its own); without ``top_k`` the centers beyond the slots are counted."""
    model = REPO / "engines" / "panoptic_synthetic.onnx"
    results = {}
    for fixed in (False, True):
        with FrameEngine.open(model, backend="onnxruntime", device="cpu", fixed_shapes=fixed) as engine:
            frames = [InputFrame("a", s.image, k * PERIOD, overlay=True) for k, s in enumerate(sequence)]
            results[fixed] = [engine.process([f])[0] for f in frames]
    for a, b in zip(results[False], results[True], strict=True):
        assert np.array_equal(a.semantic, b.semantic) and np.array_equal(a.instance_ids, b.instance_ids)
        assert np.array_equal(a.overlay_bgr, b.overlay_bgr)
        for name in a.instances._fields:
            ours, theirs = getattr(a.instances, name), getattr(b.instances, name)
            if name == "scores":
                np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0)
            else:
                assert np.array_equal(ours, theirs), name
        assert a.dropped_centers == b.dropped_centers == 0
    with FrameEngine.open(model, backend="onnxruntime", device="cpu", fixed_shapes=True) as engine:
        engine.apply(EngineParams(tracking=False, fusion=engine.fusion_params({"top_k": None})))
        (full,) = engine.process([InputFrame("a", sequence[0].image, 0)])
        things = int(full.instances.is_thing.sum())
        assert things >= 3 and full.dropped_centers == 0
        engine.pipeline.fusion.max_centers = 2  # type: ignore[attr-defined]
        (cut,) = engine.process([InputFrame("a", sequence[0].image, PERIOD)])
        assert int(cut.instances.is_thing.sum()) <= 2
        assert cut.dropped_centers >= things - 2


def test_label_images_only_when_asked_for(pipeline: PanopticPipeline, sequence: list) -> None:
    """A frame that asks for no label image (the node: nobody subscribes to one) gets the same
    instances, overlay and size, and no camera-size label maps; its label image outputs publish
    nothing while its instances still describe the frame. A frame that asks for one of the two maps
    gets that one only."""
    from panoptic_ros.runtime import outputs
    from panoptic_ros.runtime.outputs import LABEL_IMAGE_OUTPUTS, OUTPUTS, OutputContext

    image = cv2.resize(sequence[0].image, (320, 200))
    results = []
    for semantic, instance in ((True, True), (False, False), (True, False), (False, True)):
        engine = FrameEngine(pipeline)
        frame = InputFrame("cam", image, 1, overlay=True, semantic_image=semantic, instance_image=instance)
        results.append(engine.process([frame])[0])
    full, lean, semantic_only, instance_only = results
    assert full.semantic is not None and full.semantic.shape == (200, 320)
    assert full.instance_ids is not None and full.instance_ids.shape == (200, 320)
    assert lean.semantic is None and lean.instance_ids is None
    # each map on its own: the same pixels as with both, the other one not made
    assert np.array_equal(semantic_only.semantic, full.semantic) and semantic_only.instance_ids is None
    assert np.array_equal(instance_only.instance_ids, full.instance_ids) and instance_only.semantic is None
    assert (lean.height, lean.width) == (full.height, full.width) == (200, 320)
    assert np.array_equal(lean.overlay_bgr, full.overlay_bgr)
    for name in lean.instances._fields:
        assert np.array_equal(getattr(lean.instances, name), getattr(full.instances, name)), name
    context = OutputContext(pipeline.label_set, pipeline.params.label_divisor)
    assert [OUTPUTS[name].describe(lean, context) for name in LABEL_IMAGE_OUTPUTS] == [None] * 4
    assert all(OUTPUTS[name].describe(full, context) is not None for name in LABEL_IMAGE_OUTPUTS)
    message = outputs.instances(lean, context)
    assert (message.fields["height"], message.fields["width"]) == (200, 320)


def test_a_bgr_frame_gives_the_results_of_the_same_rgb_frame(
    pipeline: PanopticPipeline, sequence: list
) -> None:
    """A camera's frame in its own BGR order (what the node hands over for a bgr8 or JPEG camera, no
    swap) gives the same label images, instances and overlay as the same frame given as RGB, frame
    after frame with tracking; cameras of both orders share a batch."""
    results = {}
    for order in ("rgb", "bgr"):
        engine = FrameEngine(pipeline)
        out = []
        for k, sample in enumerate(sequence[:4]):
            image = cv2.resize(sample.image, (320, 200))
            given = image if order == "rgb" else np.ascontiguousarray(image[..., ::-1])
            frames = [
                InputFrame("a", given, k * PERIOD, overlay=True, order=order),  # type: ignore[arg-type]
                InputFrame("b", image, k * PERIOD, overlay=True),  # an RGB camera in the same batch
            ]
            out.append(engine.process(frames))
        results[order] = out
    for rgb_batch, bgr_batch in zip(results["rgb"], results["bgr"], strict=True):
        for a, b in zip(rgb_batch, bgr_batch, strict=True):
            assert np.array_equal(a.semantic, b.semantic) and np.array_equal(a.instance_ids, b.instance_ids)
            assert np.array_equal(a.overlay_bgr, b.overlay_bgr)
            for name in a.instances._fields:
                assert np.array_equal(getattr(a.instances, name), getattr(b.instances, name)), name
    assert results["bgr"][-1][0].instances.is_thing.any(), "the frames show things"


def test_warm_up_runs_the_whole_frame_path_and_leaves_nothing_behind(
    pipeline: PanopticPipeline, sequence: list
) -> None:
    """The warm-up takes blank frames through tracking and the overlay too (its palette is made there,
    not on the first camera frame), batched as the cameras will be, and leaves no stream, no timing
    and no effect on the results of the frames that follow."""
    from panoptic_ros.core.overlay import palette

    results = []
    for warm in (False, True):
        engine = FrameEngine(pipeline)
        if warm:
            palette.cache_clear()
            engine.warm_up(2, cameras=3)
            assert palette.cache_info().currsize == 1, "the warm-up drew no overlay"
            assert engine._streams == {} and engine.stage_times() == {}
        results.append(
            [
                engine.process([InputFrame("a", s.image, k * PERIOD, overlay=True)])[0]
                for k, s in enumerate(sequence)
            ]
        )
    for cold, warmed in zip(*results, strict=True):
        assert np.array_equal(cold.semantic, warmed.semantic) and np.array_equal(
            cold.overlay_bgr, warmed.overlay_bgr
        )
        for name in cold.instances._fields:
            assert np.array_equal(getattr(cold.instances, name), getattr(warmed.instances, name)), name
    assert results[1][-1].instances.is_thing.any(), "the frames show things"
