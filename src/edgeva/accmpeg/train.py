"""Training the quality selector on ground-truth AccGrad masks (AccMPEG ch. 5).

The final DNN is taken out of the training loop: AccGrad maps are generated once per frame
(cached on disk), thresholded into ground-truth masks, and the selector is trained as a
per-macroblock binary segmenter with cross-entropy weighting the high-quality class 4x,
keeping the checkpoint with the lowest validation loss.

The ImageNet backbone stays frozen and its features are computed once per frame (and for
the mirrored frame, as augmentation); only the three-layer head is trained. On a 2-core CPU
this turns 15 epochs over ~1000 frames from tens of minutes into seconds; the backbone's
ImageNet features are what the selector transfers to unseen videos.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeva import assets
from edgeva.accmpeg.accgrad import compute_accgrad
from edgeva.accmpeg.selector import QualitySelector, SelectorMeta
from edgeva.errors import ConfigError
from edgeva.models import create_detector, frames_to_tensor
from edgeva.video import grid_shape, open_video, resize_even

__all__ = ["TrainConfig", "train_selector", "sample_indices", "ground_truth_masks"]


@dataclass
class TrainConfig:
    videos: Sequence[str]  # paths or sample names
    model: str = "yolox-nano"  # final DNN whose AccGrad the selector learns
    frames_per_video: int = 500
    epochs: int = 15
    val_fraction: float = 0.1  # the last part of each video's frames (a temporal split)
    crf_high: int = 30
    crf_low: int = 40
    accgrad_threshold: float = 0.4  # of the AccGrad scale (below)
    accgrad_quantile: float = 99.0  # scale = this percentile of all training blocks' AccGrad
    pos_weight: float = 4.0  # cross-entropy weight of the high-quality class
    alpha: float = 0.2  # decision threshold for the reported recall/precision
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    backbone: str = "yolox-nano-fpn"  # see edgeva.accmpeg.selector.BACKBONES
    input_scale: float = 1.0  # the selector runs on frames resized by this
    noise_sigma: float = 0.0  # > 0: also train on copies with pixel noise of this std (same masks)
    scales: tuple[float, ...] = (0.75, 0.5)  # also train on frames resized by these (masks max-pooled)
    accgrad_batch: int = 2
    log: Callable[[str], None] = field(default=print, repr=False)


def sample_indices(video: str, count: int) -> list[int]:
    """``count`` frame indices evenly spread over the video (all frames if it is shorter)."""
    source = open_video(video)
    total = source.info.frame_count or sum(1 for _ in open_video(video))
    step = max(1, total // max(count, 1))
    return list(range(0, total, step))[:count]


def ground_truth_masks(maps: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """Blocks whose normalised AccGrad (AccGrad / scale) is at least ``threshold``."""
    return maps / max(scale, 1e-12) >= threshold


def _read(video: str, indices: Sequence[int]) -> list[np.ndarray]:
    wanted, frames = set(indices), {}
    for frame in open_video(video, limit=max(indices) + 1):
        if frame.index in wanted:
            frames[frame.index] = frame.image
    return [frames[i] for i in indices]


@torch.inference_mode()
def _features(model: QualitySelector, frames: Sequence[np.ndarray], batch: int = 8) -> torch.Tensor:
    out = []
    for i in range(0, len(frames), batch):
        x = model.prepare(frames_to_tensor(frames[i : i + batch]))
        out.append(model.features(x).to(torch.float16))
    return torch.cat(out)


def _evaluate(model: QualitySelector, feats: list[torch.Tensor], masks: list[torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    model.eval()
    loss_sum = n = tp = fp = fn = 0.0
    with torch.no_grad():
        for f, m in zip(feats, masks, strict=True):
            logits = model.head(f.float()).squeeze(1)[:, : m.shape[1], : m.shape[2]]
            loss_sum += F.binary_cross_entropy_with_logits(logits, m, pos_weight=torch.tensor(cfg.pos_weight), reduction="sum").item()
            n += m.numel()
            pred = torch.sigmoid(logits) >= cfg.alpha
            truth = m > 0.5
            tp += (pred & truth).sum().item()
            fp += (pred & ~truth).sum().item()
            fn += (~pred & truth).sum().item()
    return {
        "loss": loss_sum / max(n, 1),
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "high_fraction": (tp + fp) / max(n, 1),
    }


def train_selector(cfg: TrainConfig, *, on_stage: Callable[[str, int], Callable[[], None]] | None = None) -> QualitySelector:
    """Generate (or reuse) AccGrad masks for the videos and train a selector on them.

    Args:
        cfg: what to train on and how.
        on_stage: optional progress hook: called with (description, total) at the start of
            each long stage, it returns a callable to invoke once per unit of work.

    Returns:
        The best selector (lowest validation loss), with ``meta`` filled in.
    """
    if not cfg.videos:
        raise ConfigError("selector training needs at least one video")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {cfg.val_fraction}: must be in [0, 1)")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    tick = on_stage or (lambda _d, _n: (lambda: None))
    paths = [assets.resolve_video(v) for v in cfg.videos]
    detector = create_detector(cfg.model)
    start = time.perf_counter()

    # 1. Ground-truth AccGrad maps (cached per frame).
    per_video: list[tuple[str, list[int], np.ndarray]] = []
    plan = [(p, sample_indices(p, cfg.frames_per_video)) for p in paths]
    step = tick("AccGrad", sum(len(i) for _, i in plan))
    for path, indices in plan:
        maps = compute_accgrad(path, detector, indices, crf_low=cfg.crf_low, batch_size=cfg.accgrad_batch, on_frame=lambda _i: step())
        per_video.append((path, indices, np.stack([maps[i] for i in indices])))
    scale = float(np.percentile(np.concatenate([m.ravel() for _, _, m in per_video]), cfg.accgrad_quantile))
    cfg.log(f"AccGrad for {sum(len(i) for _, i, _ in per_video)} frames in {time.perf_counter() - start:.0f} s; scale (p{cfg.accgrad_quantile:g}) = {scale:.4g}")

    # 2. Frozen-backbone features, plus mirrored frames as augmentation.
    model = QualitySelector(cfg.backbone, input_scale=cfg.input_scale).load_pretrained()
    model.backbone.eval().to(memory_format=torch.channels_last)
    train_f, train_m, val_f, val_m = [], [], [], []
    sizes: set[tuple[int, int]] = set()
    step = tick("features", sum(len(i) for _, i, _ in per_video))
    for path, indices, maps in per_video:
        frames = _read(path, indices)
        sizes.add(frames[0].shape[:2])
        masks = torch.from_numpy(ground_truth_masks(maps, scale, cfg.accgrad_threshold).astype(np.float32))
        n_val = int(round(len(indices) * cfg.val_fraction))
        split = len(indices) - n_val
        feats = _features(model, frames)
        mirrored = _features(model, [f[:, ::-1].copy() for f in frames])
        for _ in frames:
            step()
        rows, cols = masks.shape[1:]
        # A mirrored frame's blocks line up with the mirrored mask only when the padded width
        # is the frame width; otherwise the padding moves to the left and the grid shifts.
        mirror_ok = feats.shape[3] == cols
        if cfg.noise_sigma > 0:
            rng_np = np.random.default_rng(cfg.seed)
            noisy = _features(model, [np.clip(f + rng_np.normal(0, cfg.noise_sigma, f.shape), 0, 255).astype(np.uint8) for f in frames[:split]])
            for i in range(split):
                train_f.append(noisy[i : i + 1])
                train_m.append(masks[i : i + 1])
        for factor in cfg.scales:
            small = [resize_even(f, factor) for f in frames[:split]]
            grid = grid_shape(*small[0].shape[:2])
            pooled = F.adaptive_max_pool2d(masks[:split, None], grid)[:, 0]
            feats_small = _features(model, small)
            for i in range(split):
                train_f.append(feats_small[i : i + 1])
                train_m.append(pooled[i : i + 1])
        for i in range(len(indices)):
            target_f, target_m = (train_f, train_m) if i < split else (val_f, val_m)
            target_f.append(feats[i : i + 1])
            target_m.append(masks[i : i + 1])
            if i < split and mirror_ok:
                train_f.append(mirrored[i : i + 1])
                train_m.append(masks[i : i + 1].flip(2))
    if not train_f:
        raise ConfigError("no training frames: lower --val-fraction or raise --frames-per-video")
    cfg.log(f"{len(train_f)} training maps (with mirrored), {len(val_f)} validation frames; "
            f"{100 * torch.cat([m.flatten() for m in train_m]).mean():.1f}% of training blocks are high quality")

    # 3. Train the head; keep the best epoch on validation loss.
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    pos_weight = torch.tensor(cfg.pos_weight)
    best, best_state, best_epoch = float("inf"), None, 0
    by_shape: dict[tuple, list[int]] = {}
    for i, f in enumerate(train_f):
        by_shape.setdefault(tuple(f.shape), []).append(i)
    rng = random.Random(cfg.seed)
    step = tick("epochs", cfg.epochs)
    for epoch in range(1, cfg.epochs + 1):
        model.head.train()
        batches = []
        for members in by_shape.values():
            members = members[:]
            rng.shuffle(members)
            batches += [members[i : i + cfg.batch_size] for i in range(0, len(members), cfg.batch_size)]
        rng.shuffle(batches)
        total = 0.0
        for batch in batches:
            feats = torch.cat([train_f[i] for i in batch]).float()
            masks = torch.cat([train_m[i] for i in batch])
            logits = model.head(feats).squeeze(1)[:, : masks.shape[1], : masks.shape[2]]
            loss = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=pos_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        scheduler.step()
        val = _evaluate(model, val_f or train_f, val_m or train_m, cfg)
        cfg.log(
            f"epoch {epoch:2d}  train loss {total / len(train_f):.4f}  val loss {val['loss']:.4f}  "
            f"val recall {val['recall']:.3f}  precision {val['precision']:.3f}  (high {100 * val['high_fraction']:.1f}% of blocks at alpha {cfg.alpha})"
        )
        if val["loss"] < best:
            best, best_epoch = val["loss"], epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            best_val = val
        step()
    model.load_state_dict(best_state)
    model.meta = SelectorMeta(
        final_dnn=cfg.model,
        crf_high=cfg.crf_high,
        crf_low=cfg.crf_low,
        accgrad_scale=scale,
        accgrad_threshold=cfg.accgrad_threshold,
        train_videos=[Path(p).name for p in paths],
        frame_sizes=sorted(sizes),
        frames_per_video=cfg.frames_per_video,
        epochs=cfg.epochs,
        best_epoch=best_epoch,
        val_loss=best,
        val_recall=best_val["recall"],
        val_precision=best_val["precision"],
        seed=cfg.seed,
        backbone=cfg.backbone,
        input_scale=cfg.input_scale,
    )
    cfg.log(f"best epoch {best_epoch} (val loss {best:.4f}); total {time.perf_counter() - start:.0f} s")
    return model.eval().to(memory_format=torch.channels_last)
