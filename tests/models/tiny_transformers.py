"""Tiny randomly initialized Mask2Former / MaskFormer / OneFormer checkpoints (no download).

A Swin backbone with ``embed_dim=32`` and one block per stage keeps each model at a few MB; each
checkpoint folder holds the config, the weights, an image processor config and (OneFormer) a
tokenizer and a ``class_info_file``, like a checkpoint from the hub.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

NUM_LABELS = 5
NUM_QUERIES = 10
#: class indices of the tiny models that are things (the rest are stuff)
THING_IDS = (0, 1)
TASK_WORDS = ("the", "task", "is", "panoptic", "semantic", "instance")


def _swin() -> dict[str, object]:
    return {
        "model_type": "swin",
        "embed_dim": 32,
        "depths": [1, 1, 1, 1],
        "num_heads": [1, 2, 4, 8],
        "window_size": 7,
        "image_size": 224,
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
    }


def _labels() -> dict[str, object]:
    names = ["person", "car", "road", "sky", "building"][:NUM_LABELS]
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


#: Standard deviation of the random weights: the default (0.02) makes near-identical queries with
#: near-uniform class scores and mask logits near 0; larger, the random model makes confident,
#: distinct segments (what the fusion needs to have something to do).
INIT_STD = float(os.environ.get("TINY_INIT_STD", "1.0"))


def build_model(model_type: str, seed: int = 0) -> torch.nn.Module:
    """A tiny randomly initialized model of ``model_type`` (mask2former, maskformer, oneformer)."""
    return _build(model_type, seed).eval()


def _build(model_type: str, seed: int) -> torch.nn.Module:
    import transformers

    torch.manual_seed(seed)
    if model_type == "mask2former":
        config = transformers.Mask2FormerConfig(
            backbone_config=_swin(),
            num_queries=NUM_QUERIES,
            hidden_dim=32,
            mask_feature_size=32,
            feature_size=32,
            encoder_feedforward_dim=64,
            dim_feedforward=64,
            decoder_layers=2,
            encoder_layers=1,
            num_attention_heads=2,
            init_std=INIT_STD,
            **_labels(),
        )
        return transformers.Mask2FormerForUniversalSegmentation(config).eval()
    if model_type == "maskformer":
        config = transformers.MaskFormerConfig(
            backbone_config=_swin(),
            num_queries=NUM_QUERIES,
            fpn_feature_size=32,
            mask_feature_size=32,
            decoder_config={
                "model_type": "detr",
                "d_model": 32,
                "encoder_layers": 1,
                "decoder_layers": 2,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "decoder_ffn_dim": 64,
                "num_queries": NUM_QUERIES,
                "init_std": INIT_STD,
            },
            init_std=INIT_STD,
            **_labels(),
        )
        return transformers.MaskFormerForInstanceSegmentation(config).eval()
    if model_type == "oneformer":
        config = transformers.OneFormerConfig(
            backbone_config=_swin(),
            num_queries=NUM_QUERIES,
            hidden_dim=32,
            mask_dim=32,
            conv_dim=32,
            encoder_feedforward_dim=64,
            dim_feedforward=64,
            decoder_layers=2,
            encoder_layers=1,
            num_attention_heads=2,
            text_encoder_width=32,
            text_encoder_num_layers=1,
            text_encoder_context_length=16,
            text_encoder_vocab_size=64,
            text_encoder_proj_layers=1,
            text_encoder_n_ctx=4,
            task_seq_len=16,
            max_seq_len=16,
            is_training=False,
            init_std=INIT_STD,
            **_labels(),
        )
        return transformers.OneFormerForUniversalSegmentation(config).eval()
    raise ValueError(model_type)


def _tokenizer(folder: Path) -> None:
    """A CLIP tokenizer that knows just the task prompt's words."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    merges: list[str] = []
    for word in TASK_WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        for piece in pieces:
            vocab.setdefault(piece, len(vocab))
        current = pieces[0]
        for piece in pieces[1:]:
            merges.append(f"{current} {piece}")
            current += piece
            vocab.setdefault(current, len(vocab))
    raw = folder / "raw"
    raw.mkdir()
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt")).save_pretrained(folder)


def save_checkpoint(model_type: str, folder: Path, *, with_metadata: bool = True) -> Path:
    """Save a tiny model with its processor (and OneFormer's tokenizer) like a hub checkpoint."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    build_model(model_type).save_pretrained(folder)
    if model_type == "mask2former":
        transformers.Mask2FormerImageProcessor(size={"height": 64, "width": 96}).save_pretrained(folder)
    elif model_type == "maskformer":
        transformers.MaskFormerImageProcessor(size={"height": 64, "width": 96}).save_pretrained(folder)
    else:
        info = {
            str(i): {"name": name, "isthing": int(i in THING_IDS)}
            for i, name in _labels()["id2label"].items()  # type: ignore[union-attr]
        }
        (folder / "class_info.json").write_text(json.dumps(info))
        processor = transformers.OneFormerImageProcessor(
            size={"height": 64, "width": 96},
            class_info_file="class_info.json",
            repo_path=str(folder),
            num_text=NUM_QUERIES,
        )
        processor.save_pretrained(folder)
        if not with_metadata:
            (folder / "class_info.json").unlink()
        _tokenizer(folder)
    return folder


class Exported(NamedTuple):
    """A tiny checkpoint folder, its exported ONNX file and the export report."""

    checkpoint: Path
    onnx: Path
    report: Any


@functools.cache
def exported(model_type: str) -> Exported:
    """Save and export a tiny model once per test process (exports take seconds to tens of seconds).

    Mask2Former goes through the default exporter choice (torch.export); MaskFormer and OneFormer
    use the TorchScript exporter directly (OneFormer cannot be traced by torch.export; its fallback
    is tested on a small module), which keeps the test time down.
    """
    from panoptic_ros.models.hf_export import export_transformers

    root = Path(tempfile.mkdtemp(prefix=f"panoptic_tiny_{model_type}_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = save_checkpoint(model_type, root / "checkpoint")
    report = export_transformers(
        str(folder),
        root / f"{model_type}.onnx",
        max_batch=2,
        thing_ids=None if model_type == "oneformer" else THING_IDS,
        exporter="auto" if model_type == "mask2former" else "torchscript",
    )
    return Exported(folder, report.path, report)
