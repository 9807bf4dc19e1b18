"""The node runs a mask-classification model (a tiny random Mask2Former exported from a
transformers checkpoint) end to end over real DDS: label images, instances and its label set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image

from panoptic_ros.core.image_codec import image_to_array
from panoptic_ros.data.synthetic import generate
from panoptic_ros.msg import CategoryArray, PanopticInstanceArray
from panoptic_ros.ros.conversions import array_to_image_msg
from tests.ros.node_harness import LATCHED, RELIABLE, NodeProcess, Peer, header

CAMERA = "/m2f/image_raw"


def test_node_serves_an_exported_mask2former(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="exporting the tiny Mask2Former needs transformers")
    from panoptic_ros.backends.registry import model_spec
    from tests.models.tiny_transformers import exported

    model = exported("mask2former").onnx
    spec = model_spec(model)
    assert spec.family == "mask-classification"
    params = {
        "image_topics": [CAMERA],
        "model": str(model),
        "backend": "onnxruntime",
        "device": "cpu",
        "warmup_frames": 1,
        "qos.mode": "explicit",
        "qos.reliability": "reliable",
        "tracker.min_hits": 1,
    }
    node = NodeProcess(tmp_path, params, name="panoptic_m2f")
    peer = Peer("panoptic_m2f_peer")
    try:
        for name, msg_type in (
            ("semantic", Image),
            ("instance_ids", Image),
            ("instances", PanopticInstanceArray),
        ):
            peer.listen(f"/m2f/panoptic/{name}", msg_type)
        peer.listen("/m2f/panoptic/categories", CategoryArray, LATCHED)
        pub = peer.publisher(CAMERA, Image, RELIABLE)
        peer.wait_for(lambda: pub.get_subscription_count() > 0, "the node's subscription")
        frames = [s.image for s in generate(1, seed=5, height=120, width=160, sequence_length=3)]
        for k, rgb in enumerate(frames):
            stamp = 1_000_000_000 * (k + 1)
            pub.publish(array_to_image_msg(rgb, "rgb8", header(stamp)))
            semantic = peer.wait_stamp("/m2f/panoptic/semantic", stamp)
            instances = peer.wait_stamp("/m2f/panoptic/instances", stamp)
            ids = image_to_array(peer.wait_stamp("/m2f/panoptic/instance_ids", stamp))
            assert (semantic.height, semantic.width) == (120, 160)
            labels = image_to_array(semantic)
            valid = {c.id for c in spec.label_set.categories} | {spec.label_set.void_semantic}
            assert set(np.unique(labels).tolist()) <= valid
            listed = {i.id for i in instances.instances if i.is_thing and i.area > 0}
            assert set(np.unique(ids[ids > 0]).tolist()) == listed
        # the family's own thresholds are node parameters too, validated by its fusion
        (bad,) = peer.set_parameters("panoptic_m2f", {"fusion.mode": "fastest"})
        assert not bad.successful and "mode" in bad.reason
        (good,) = peer.set_parameters("panoptic_m2f", {"fusion.mode": "transformers"})
        assert good.successful, good.reason
        stamp = 1_000_000_000 * (len(frames) + 1)
        pub.publish(array_to_image_msg(frames[0], "rgb8", header(stamp)))
        peer.wait_stamp("/m2f/panoptic/semantic", stamp)  # served in the new mode
        peer.wait_for(lambda: bool(peer.messages("/m2f/panoptic/categories")), "the label set")
        categories = peer.messages("/m2f/panoptic/categories")[0]
        assert [c.name for c in categories.categories] == [c.name for c in spec.label_set.categories]
        assert node.alive()
    finally:
        peer.close()
        code = node.stop()
        print(node.log())
    assert code == 0
