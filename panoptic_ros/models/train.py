"""Training of the compact center-offset network on the synthetic world (``panoptic-ros train``).

Losses as in Panoptic-DeepLab: cross-entropy with hard-pixel mining (the worst ``hard_fraction`` of
pixels, small instances weighted up), MSE on the Gaussian center heatmap, L1 on the offsets of
thing pixels. Augmentation: random scale, crop, horizontal flip, color jitter, noise and blur;
targets are built after the geometric augmentation. The forward pass runs under bfloat16 autocast
where the CPU has native bfloat16 (``TrainConfig.bf16``). Checkpoints let a run resume; the result is
exported to ONNX with its model spec (:mod:`panoptic_ros.models.export`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from panoptic_ros.core.labels import load_label_set
from panoptic_ros.data import synthetic
from panoptic_ros.models.center_offset_net import OUTPUT_NAMES, CompactPanopticNet
from panoptic_ros.models.spec import InputSpec, ModelSpec
from panoptic_ros.models.targets import IGNORE, center_offset_targets

log = logging.getLogger(__name__)

#: Seeds of the synthetic data: training uses TRAIN_SEED; evaluation must use a seed never trained on.
TRAIN_SEED = 0
HELD_OUT_SEED = 1000

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and the model's provenance)."""

    steps: int = 9000
    batch: int = 12
    crop: tuple[int, int] = (128, 256)
    lr: float = 4e-3
    weight_decay: float = 1e-4
    warmup: int = 150
    images: int = 3000
    seed: int = TRAIN_SEED
    width: int = 32
    semantic_stride: int = 2
    scale_range: tuple[float, float] = (0.6, 1.6)
    hard_fraction: float = 0.2
    center_weight: float = 200.0
    offset_weight: float = 0.02
    sigma: float = 3.0
    #: forward pass under bfloat16 autocast (weights, optimizer and losses stay float32) where the
    #: CPU computes bfloat16 natively (AVX-512 BF16 / AMX): a step in about 0.65x the float32 time
    bf16: bool = True
    threads: int = 0  # 0: all cores
    checkpoint_every: int = 500
    extra: dict[str, str] = field(default_factory=dict)


def network(cfg: TrainConfig) -> CompactPanopticNet:
    """The untrained network a run of ``cfg`` trains (the architecture :func:`synthetic_model_spec`
    describes for the same ``cfg``)."""
    return CompactPanopticNet(len(load_label_set("synthetic")), cfg.width, cfg.semantic_stride)


def normalize(images_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """``N x H x W x 3`` uint8 RGB -> ``N x 3 x H x W`` float normalized with the model's mean/std."""
    x = images_uint8_nhwc.permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class SyntheticTrainSet:
    """Pre-rendered synthetic images (uint8) with their label maps, kept in memory."""

    def __init__(self, count: int, seed: int, size: tuple[int, int] = synthetic.DEFAULT_SIZE) -> None:
        h, w = size
        self.images = torch.empty(count, h, w, 3, dtype=torch.uint8)
        self.semantic = torch.empty(count, h, w, dtype=torch.uint8)
        self.instance = torch.empty(count, h, w, dtype=torch.int32)
        samples = synthetic.generate(count, seed=seed, height=h, width=w)
        for i, sample in enumerate(tqdm(samples, total=count, desc="rendering synthetic scenes", unit="img")):
            self.images[i] = torch.from_numpy(sample.image)
            self.semantic[i] = torch.from_numpy(sample.semantic)
            self.instance[i] = torch.from_numpy(sample.instance)

    def __len__(self) -> int:
        return self.images.shape[0]


def augment(
    images: torch.Tensor,
    semantic: torch.Tensor,
    instance: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random scale + crop (padding with IGNORE), flip and photometric jitter, per sample.

    In: ``B x H x W x 3`` uint8, ``B x H x W`` uint8, ``B x H x W`` int32.
    Out: ``B x 3 x h x w`` normalized float, ``B x h x w`` long, ``B x h x w`` long (crop size).
    """
    ch, cw = cfg.crop
    out_img, out_sem, out_ins = [], [], []
    for k in range(images.shape[0]):
        low, high = cfg.scale_range
        scale = math.exp(torch.empty(1).uniform_(math.log(low), math.log(high), generator=gen).item())
        h, w = images.shape[1:3]
        sh, sw = max(round(h * scale), 1), max(round(w * scale), 1)
        img = images[k].permute(2, 0, 1)[None].float()
        img = F.interpolate(img, size=(sh, sw), mode="bilinear", align_corners=False, antialias=scale < 1)[0]
        labels = torch.stack([semantic[k].long(), instance[k].long()])[None].float()
        labels = F.interpolate(labels, size=(sh, sw), mode="nearest")[0].long()
        pad_h, pad_w = max(ch - sh, 0), max(cw - sw, 0)
        if pad_h or pad_w:
            img = F.pad(img, (0, pad_w, 0, pad_h), value=0.0)
            sem_pad = F.pad(labels[0], (0, pad_w, 0, pad_h), value=IGNORE)
            ins_pad = F.pad(labels[1], (0, pad_w, 0, pad_h), value=0)
            labels = torch.stack([sem_pad, ins_pad])
        y0 = int(torch.randint(0, labels.shape[1] - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, labels.shape[2] - cw + 1, (1,), generator=gen))
        img = img[:, y0 : y0 + ch, x0 : x0 + cw]
        labels = labels[:, y0 : y0 + ch, x0 : x0 + cw]
        if torch.rand(1, generator=gen).item() < 0.5:
            img, labels = img.flip(-1), labels.flip(-1)
        # photometric: brightness, contrast, saturation, per-channel gain, noise, occasional blur
        r = torch.rand(6, generator=gen)
        gray = img.mean(0, keepdim=True)
        img = gray + (img - gray) * (0.6 + 0.8 * r[0])
        img = (img - img.mean()) * (0.7 + 0.6 * r[1]) + img.mean() * (0.7 + 0.6 * r[2])
        img = img * (0.9 + 0.2 * torch.rand(3, 1, 1, generator=gen))
        img = img + torch.randn(img.shape, generator=gen) * (6 * r[3])
        if r[4] < 0.25:
            img = F.avg_pool2d(img[None], 3, 1, 1, count_include_pad=False)[0]
        out_img.append(img.clamp(0, 255))
        out_sem.append(labels[0])
        out_ins.append(labels[1])
    x = torch.stack(out_img)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std, torch.stack(out_sem), torch.stack(out_ins)


def panoptic_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    semantic: torch.Tensor,
    instance: torch.Tensor,
    thing_classes: torch.Tensor,
    cfg: TrainConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Panoptic-DeepLab losses; returns the total and its parts (for the progress bar)."""
    sem_logits, center, offset = outputs
    targets = center_offset_targets(semantic, instance, thing_classes, sigma=cfg.sigma)
    pixel_loss = (
        F.cross_entropy(sem_logits, semantic, ignore_index=IGNORE, reduction="none") * targets.pixel_weight
    )
    pixel_loss = pixel_loss.flatten()[(semantic != IGNORE).flatten()]
    k = max(int(cfg.hard_fraction * pixel_loss.numel()), 1)
    sem_loss = pixel_loss.topk(k).values.mean() if pixel_loss.numel() else sem_logits.sum() * 0
    center_loss = F.mse_loss(center, targets.center)
    mask = targets.thing[:, None].float()
    offset_loss = (F.l1_loss(offset, targets.offset, reduction="none") * mask).sum() / mask.sum().clamp(min=1)
    total = sem_loss + cfg.center_weight * center_loss + cfg.offset_weight * offset_loss
    return total, {"sem": sem_loss.item(), "ctr": center_loss.item() * 1e3, "off": offset_loss.item()}


#: Settings that change how a run executes, not what it computes: a checkpoint resumes across them.
_RUN_ONLY = ("threads", "checkpoint_every")


def _run_independent(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _RUN_ONLY}


def bf16_supported() -> bool:
    """Whether oneDNN computes bfloat16 natively on this CPU."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(cfg: TrainConfig, work_dir: Path, *, resume: bool = True) -> CompactPanopticNet:
    """Train (resuming from ``work_dir/checkpoint.pt`` when present) and return the model in eval mode.
    ``cfg.threads`` holds for the run only: the process's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, work_dir, resume=resume)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, work_dir: Path, *, resume: bool) -> CompactPanopticNet:
    torch.manual_seed(cfg.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    label_set = load_label_set("synthetic")
    thing_classes = torch.tensor([c.is_thing for c in label_set.categories])
    model = network(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    checkpoint = work_dir / "checkpoint.pt"
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if _run_independent(state.get("config", {})) == _run_independent(asdict(cfg)):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            step = int(state["step"])
            log.info("resuming from %s at step %d", checkpoint, step)
        else:
            log.warning("ignoring %s: it was made with a different configuration", checkpoint)
    bf16 = cfg.bf16 and bf16_supported()
    if cfg.bf16 and not bf16:
        log.warning("this CPU has no native bfloat16: training in float32 (slower, about 2x)")
    data = SyntheticTrainSet(cfg.images, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    model.train()
    started = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=step, desc="training", unit="step")
    history: list[dict[str, float]] = []
    while step < cfg.steps:
        index = torch.randint(0, len(data), (cfg.batch,), generator=gen)
        x, sem, ins = augment(data.images[index], data.semantic[index], data.instance[index], cfg, gen)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = tuple(o.float() for o in model(x))
        loss, parts = panoptic_loss(outputs, sem, ins, thing_classes, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        history.append({"step": step, "loss": loss.item(), **parts})
        bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "config": asdict(cfg),
                },
                checkpoint,
            )
    bar.close()
    (work_dir / "history.json").write_text(json.dumps(history[-2000:]))
    log.info("trained %d steps in %.0f s", step, time.monotonic() - started)
    return model.eval()


#: Fusion thresholds of the shipped model: Panoptic-DeepLab's defaults, with the stuff-area limit
#: (2048 px at 1024 x 2048) scaled to the model's 192 x 384 input, and the center threshold chosen on
#: validation images (seed 2000, never the held-out seed): 0.3 (0.1, 0.2, 0.4, 0.5 and NMS kernels
#: 5, 9, 11 were lower; docs/BENCHMARKS.md "Shipped model v2").
SYNTHETIC_FUSION = {
    "center_threshold": 0.3,
    "nms_kernel": 7,
    "top_k": 200,
    "stuff_area": 64,
    "label_divisor": 1000,
}


def synthetic_model_spec(cfg: TrainConfig, name: str = "panoptic_synthetic") -> ModelSpec:
    """The spec of a network trained by :func:`train` on the synthetic world."""
    label_set = load_label_set("synthetic")
    height, width = synthetic.DEFAULT_SIZE
    return ModelSpec(
        name=name,
        family="center-offset",
        input=InputSpec(
            name="image", height=height, width=width, color_order="rgb", mean=MEAN, std=STD, max_batch=8
        ),
        outputs={role: role for role in OUTPUT_NAMES},
        label_set=label_set,
        fusion=dict(SYNTHETIC_FUSION),
        architecture={
            "module": "panoptic_ros.models.center_offset_net:CompactPanopticNet",
            "kwargs": {
                "num_classes": len(label_set),
                "width": cfg.width,
                "semantic_stride": cfg.semantic_stride,
            },
            "fused_batchnorm": True,
        },
        provenance={
            "trained_on": f"panoptic_ros synthetic world, seed {cfg.seed}, {cfg.images} images",
            "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
            "command": "make model",
        },
    )
