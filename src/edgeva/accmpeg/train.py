"""Training the quality selector on ground-truth AccGrad masks (AccMPEG ch. 5).

The final DNN is taken out of the training loop: AccGrad maps are generated once per frame
(cached on disk), thresholded into ground-truth masks, and the selector is trained as a
per-macroblock binary segmenter with cross-entropy weighting the high-quality class 4x,
keeping the checkpoint with the lowest validation loss.

The pretrained backbone stays frozen and its features are computed once per frame, for the
frame as is, mirrored and downscaled (augmentation: each epoch sees one random variant of
each frame); only the three-layer head is trained. On a 2-core CPU this turns 15 epochs over
~1000 frames from hours into minutes; the backbone's COCO-detection features are what the
selector carries over to unseen videos.

Two options (docs/accmpeg-selector.md, "Fine-tuning the backbone, degraded inputs"):
``finetune_stages`` also trains the backbone's last stages (as the paper fine-tunes its
extractor), caching the outputs of the frozen part instead of the head's input;
``degrade_variants`` adds copies of each training frame degraded as a camera's input can be
(:mod:`edgeva.accmpeg.degrade`), with the clean frame's mask.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeva import assets
from edgeva.accmpeg.accgrad import compute_accgrad
from edgeva.accmpeg.degrade import degrade
from edgeva.accmpeg.selector import QualitySelector, SelectorMeta
from edgeva.errors import ConfigError, EdgevaError
from edgeva.executor import Executor, SerialExecutor, TaskFailure
from edgeva.models import create_detector, frames_to_tensor
from edgeva.video import grid_shape, open_video, resize_even

__all__ = ["TrainConfig", "train_selector", "epoch_batches", "head_step", "frame_features", "degraded_frames", "selector_scores", "block_precision_recall", "own_scale", "evaluate_selector", "sample_indices", "ground_truth_masks"]


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
    scale_per_video: bool = False  # True: each video's masks use its own percentile (every scene's top blocks count)
    pos_weight: float = 4.0  # cross-entropy weight of the high-quality class
    alpha: float = 0.2  # decision threshold for the reported recall/precision
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    backbone: str = "yolox-nano-fpn"  # see edgeva.accmpeg.selector.BACKBONES
    input_scale: float = 1.0  # the selector runs on frames resized by this
    scales: tuple[float, ...] = (0.75, 0.5)  # also train on frames resized by these (masks max-pooled)
    accgrad_batch: int = 2
    finetune_stages: int = 0  # also train the backbone's last N stages (the neck counts as one); 0: the head only
    finetune_lr: float = 2e-4  # learning rate of the unfrozen backbone stages
    degrade_variants: int = 0  # per training frame, this many degraded copies (edgeva.accmpeg.degrade), clean mask
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


Feats = torch.Tensor | tuple[torch.Tensor, ...]  # the head's input, or the frozen trunk's outputs when fine-tuning


@torch.inference_mode()
def frame_features(model: QualitySelector, frames: Sequence[np.ndarray], batch: int = 8, stages: int = 0) -> Feats:
    """float16 features of ``frames``, batched: the head's input (``stages`` 0) or the outputs
    of the backbone's frozen part when its last ``stages`` stages are fine-tuned."""
    out = []
    for i in range(0, len(frames), batch):
        x = model.prepare(frames_to_tensor(frames[i : i + batch]))
        out.append(model.features(x).to(torch.float16) if stages == 0 else [t.to(torch.float16) for t in model.trunk(x, stages)])
    return torch.cat(out) if stages == 0 else tuple(torch.cat(parts) for parts in zip(*out, strict=True))


def _take(feats: Feats, i: int) -> Feats:
    return feats[i : i + 1] if isinstance(feats, torch.Tensor) else tuple(t[i : i + 1] for t in feats)


def _shape(feats: Feats) -> tuple:
    return tuple(feats.shape) if isinstance(feats, torch.Tensor) else tuple(tuple(t.shape) for t in feats)


def _stack(feats: Sequence[Feats]) -> Feats:
    if isinstance(feats[0], torch.Tensor):
        return torch.cat(feats).float()
    return tuple(torch.cat(parts).float() for parts in zip(*feats, strict=True))


def _logits(model: QualitySelector, feats: Feats, stages: int) -> torch.Tensor:
    if stages == 0:
        return model.head(feats).squeeze(1)
    return model.head(model.pyramid_features(*model.tail(feats, stages))).squeeze(1)


def degraded_frames(frames: Sequence[np.ndarray], video: str, seed: int, variant: int) -> list[np.ndarray]:
    """``frames`` degraded as a camera's input can be (:func:`edgeva.accmpeg.degrade.degrade`),
    the random choices seeded by (seed, video name, variant): reproducible per video."""
    rng = np.random.default_rng([seed, zlib.crc32(Path(video).name.encode()), variant])
    return [degrade(f, rng) for f in frames]


@dataclass
class _Features:
    """A video's frozen-backbone features: ``as_is`` for every sampled frame; for the training
    frames ``mirrored`` (None when the padded grid would shift) and, per downscale factor, the
    features and the smaller block grid."""

    size: tuple[int, int]  # (height, width) of the frames
    as_is: Feats
    mirrored: Feats | None
    scaled: list[tuple[Feats, tuple[int, int]]]
    degraded: list[Feats] = field(default_factory=list)  # one per degraded copy of the training frames


_feature_cache: dict[tuple, _Features] = {}  # per process: leave-one-out selectors share most frames


def _video_features(model: QualitySelector, path: str, indices: Sequence[int], split: int, cfg: TrainConfig) -> _Features:
    """Features of a video's sampled frames (the first ``split`` are training frames), kept
    for the process keyed by everything they depend on, so selectors trained on overlapping
    sets of videos compute them once."""
    key = (assets.file_identity(path) or path, tuple(indices), split, cfg.backbone, cfg.input_scale, tuple(cfg.scales), cfg.finetune_stages,
           cfg.degrade_variants, cfg.seed if cfg.degrade_variants else None)
    if key not in _feature_cache:
        frames = _read(path, indices)
        stages = cfg.finetune_stages
        as_is = frame_features(model, frames, stages=stages)
        # A mirrored frame's blocks line up with the mirrored mask only when the padded width
        # (stride 16 of the padded input) is the frame width; otherwise the grid shifts.
        w = model.prepare(frames_to_tensor(frames[:1])).shape[3]
        aligned = split and w // 16 * (2 if cfg.input_scale == 0.5 else 1) == grid_shape(*frames[0].shape[:2])[1]
        mirrored = frame_features(model, [f[:, ::-1].copy() for f in frames[:split]], stages=stages) if aligned else None
        scaled = []
        for factor in cfg.scales if split else ():
            small = [resize_even(f, factor) for f in frames[:split]]
            scaled.append((frame_features(model, small, stages=stages), grid_shape(*small[0].shape[:2])))
        degraded = [frame_features(model, degraded_frames(frames[:split], path, cfg.seed, v), stages=stages) for v in range(cfg.degrade_variants if split else 0)]
        _feature_cache[key] = _Features(frames[0].shape[:2], as_is, mirrored, scaled, degraded)
        if len(_feature_cache) > 16:
            _feature_cache.pop(next(iter(_feature_cache)))
    return _feature_cache[key]


def _variants(feats: _Features, masks: torch.Tensor, split: int) -> list[list[tuple[Feats, torch.Tensor]]]:
    """Per training frame, its (features, mask) variants: as is, mirrored, downscaled (the
    mask max-pooled to the smaller grid), degraded (the clean frame's mask)."""
    variants = [[(_take(feats.as_is, i), masks[i : i + 1])] for i in range(split)]
    if feats.mirrored is not None:
        for i in range(split):
            variants[i].append((_take(feats.mirrored, i), masks[i : i + 1].flip(2)))
    for small, grid in feats.scaled:
        pooled = F.adaptive_max_pool2d(masks[:split, None], grid)[:, 0]
        for i in range(split):
            variants[i].append((_take(small, i), pooled[i : i + 1]))
    for degraded in feats.degraded:
        for i in range(split):
            variants[i].append((_take(degraded, i), masks[i : i + 1]))
    return variants

def epoch_batches(train: Sequence[Sequence[tuple[Feats, torch.Tensor]]], batch_size: int, rng: random.Random) -> list[list[tuple[Feats, torch.Tensor]]]:
    """One epoch's batches: a random variant of each training frame, grouped so that a batch
    holds one feature shape *and* one mask shape. Frames of different sizes can share a
    padded feature shape (a 360x202 and a 384x216 frame both pad to 384x224) while their
    block grids differ (23x13 and 24x14 blocks), so grouping by features alone is not enough."""
    by_shape: dict[tuple, list[tuple[Feats, torch.Tensor]]] = {}
    for variants in train:
        feat, mask = rng.choice(variants)
        by_shape.setdefault((_shape(feat), tuple(mask.shape)), []).append((feat, mask))
    batches = []
    for members in by_shape.values():
        rng.shuffle(members)
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return batches


def head_step(model: QualitySelector, batch: Sequence[tuple[Feats, torch.Tensor]], optimizer: torch.optim.Optimizer, pos_weight: torch.Tensor,
              stages: int = 0) -> float:
    """One optimisation step of the head on a batch of (frozen-backbone features, ground-truth
    mask) pairs of one shape (cross-entropy, high-quality class weighted ``pos_weight``); the
    mean loss. Training and online adaptation (:mod:`edgeva.accmpeg.adapt`) share it. With
    ``stages`` > 0 the features are the frozen trunk's outputs and the gradient also reaches
    the backbone's last ``stages`` stages (what ``optimizer`` holds of them is trained)."""
    masks = torch.cat([m for _, m in batch])
    logits = _logits(model, _stack([f for f, _ in batch]), stages)[:, : masks.shape[1], : masks.shape[2]]
    loss = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=pos_weight)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _evaluate(model: QualitySelector, feats: list[Feats], masks: list[torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    model.eval()
    loss_sum = n = tp = fp = fn = 0.0
    with torch.no_grad():
        for f, m in zip(feats, masks, strict=True):
            logits = _logits(model, _stack([f]), cfg.finetune_stages)[:, : m.shape[1], : m.shape[2]]
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


def _accgrad_on(executor: Executor, plan: list[tuple[str, list[int]]], cfg: TrainConfig, step: Callable[[], None]) -> None:
    """Fill the AccGrad cache for ``plan`` with tasks on ``executor`` (groups of whole chunks);
    every task runs, then a failed one is raised naming its video and frames."""
    from edgeva.accmpeg.parallel import AccGradWorker, task_groups, uncached

    calls, cached = [], 0
    with executor as ex, ex.pool(AccGradWorker, cfg.model, torch.get_num_threads()) as pool:
        for path, indices in plan:
            todo = uncached(path, cfg.model, cfg.crf_low, indices)
            cached += len(set(indices)) - len(todo)
            groups = task_groups(todo, chunk=10, batch_size=cfg.accgrad_batch, tasks=4 * max(pool.size, 1))
            calls += [(path, group, cfg.crf_low, cfg.accgrad_batch) for group in groups]
        for _ in range(cached):
            step()
        results = pool.map("maps", calls, on_done=lambda i, _r: [step() for _ in calls[i][1]])
    failed = [(call, r) for call, r in zip(calls, results, strict=True) if isinstance(r, TaskFailure)]
    if failed:
        (path, group, *_), failure = failed[0]
        raise EdgevaError(f"AccGrad of {Path(path).name} frames {group[0]}-{group[-1]} failed ({len(failed)} of {len(calls)} tasks): {failure.error}")


def train_selector(cfg: TrainConfig, *, on_stage: Callable[[str, int], Callable[[], None]] | None = None,
                   executor: Executor | None = None) -> QualitySelector:
    """Generate (or reuse) AccGrad masks for the videos and train a selector on them.

    Args:
        cfg: what to train on and how.
        on_stage: optional progress hook: called with (description, total) at the start of
            each long stage, it returns a callable to invoke once per unit of work.
        executor: where AccGrad generation runs (default: this process, one frame batch after
            another); e.g. Ray workers, each loading the final DNN once.

    Returns:
        The best selector (lowest validation loss), with ``meta`` filled in.
    """
    if not cfg.videos:
        raise ConfigError("selector training needs at least one video")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {cfg.val_fraction}: must be in [0, 1)")
    if cfg.degrade_variants < 0:
        raise ConfigError(f"--degrade {cfg.degrade_variants}: must be >= 0")
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
    if executor is not None and not isinstance(executor, SerialExecutor):
        _accgrad_on(executor, plan, cfg, step)  # then the loop below reads every map from the cache
        step = lambda: None  # noqa: E731
    for path, indices in plan:
        maps = compute_accgrad(path, detector, indices, crf_low=cfg.crf_low, batch_size=cfg.accgrad_batch, on_frame=lambda _i: step())
        per_video.append((path, indices, np.stack([maps[i] for i in indices])))
    scale = float(np.percentile(np.concatenate([m.ravel() for _, _, m in per_video]), cfg.accgrad_quantile))
    cfg.log(f"AccGrad for {sum(len(i) for _, i, _ in per_video)} frames in {time.perf_counter() - start:.0f} s; scale (p{cfg.accgrad_quantile:g}) = {scale:.4g}")

    # 2. Frozen-backbone features of every training frame in several variants (as is,
    #    mirrored, downscaled): one random variant per frame and epoch is the augmentation.
    model = QualitySelector(cfg.backbone, input_scale=cfg.input_scale).load_pretrained()
    model.backbone.eval().to(memory_format=torch.channels_last)
    if not 0 <= cfg.finetune_stages <= model.max_finetune_stages():
        raise ConfigError(f"--finetune-stages {cfg.finetune_stages}: backbone {cfg.backbone} has 0 to {model.max_finetune_stages()} stages to fine-tune")
    train: list[list[tuple[Feats, torch.Tensor]]] = []
    val_f, val_m = [], []
    sizes: set[tuple[int, int]] = set()
    step = tick("features", sum(len(i) for _, i, _ in per_video))
    for path, indices, maps in per_video:
        own = float(np.percentile(maps, cfg.accgrad_quantile)) if cfg.scale_per_video else scale
        masks = torch.from_numpy(ground_truth_masks(maps, own, cfg.accgrad_threshold).astype(np.float32))
        split = len(indices) - int(round(len(indices) * cfg.val_fraction))
        feats = _video_features(model, path, indices, split, cfg)
        sizes.add(feats.size)
        val_f += [_take(feats.as_is, i) for i in range(split, len(indices))]
        val_m += [masks[i : i + 1] for i in range(split, len(indices))]
        train += _variants(feats, masks, split)
        for _ in indices:
            step()
    # 3. Train the head (and the unfrozen stages, BatchNorm statistics kept); keep the best epoch on validation loss.
    groups = [{"params": list(model.head.parameters()), "lr": cfg.lr}]
    if cfg.finetune_stages:
        groups.append({"params": model.tail_parameters(cfg.finetune_stages), "lr": cfg.finetune_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    pos_weight = torch.tensor(cfg.pos_weight)
    best, best_state, best_epoch, best_val = float("inf"), None, 0, {}
    rng = random.Random(cfg.seed)
    step = tick("epochs", cfg.epochs)
    for epoch in range(1, cfg.epochs + 1):
        model.head.train()
        total = 0.0
        for batch in epoch_batches(train, cfg.batch_size, rng):
            total += head_step(model, batch, optimizer, pos_weight, cfg.finetune_stages) * len(batch)
        scheduler.step()
        val = _evaluate(model, val_f or [v[0][0] for v in train], val_m or [v[0][1] for v in train], cfg)
        cfg.log(
            f"epoch {epoch:2d}  train loss {total / len(train):.4f}  val loss {val['loss']:.4f}  "
            f"val recall {val['recall']:.3f}  precision {val['precision']:.3f}  (high {100 * val['high_fraction']:.1f}% of blocks at alpha {cfg.alpha})"
        )
        if val["loss"] < best:
            best, best_epoch, best_val = val["loss"], epoch, val
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
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
        finetune_stages=cfg.finetune_stages,
        degrade_variants=cfg.degrade_variants,
    )
    cfg.log(f"best epoch {best_epoch} (val loss {best:.4f}); total {time.perf_counter() - start:.0f} s")
    return model.eval().to(memory_format=torch.channels_last)


def own_scale(video: str, *, frames: int = 60, model: str = "yolox-nano", crf_low: int = 40, quantile: float = 99.0) -> float:
    """The ``quantile`` of a video's own AccGrad over ``frames`` frames spread over it: a
    ground-truth scale that depends on no selector (compare selectors on one truth)."""
    path = assets.resolve_video(video)
    indices = sample_indices(path, frames)
    maps = compute_accgrad(path, create_detector(model), indices, crf_low=crf_low)
    return float(np.percentile(np.stack([maps[i] for i in indices]), quantile))


def selector_scores(selector: QualitySelector, video: str, *, frames: int = 60, model: str | None = None, scale: float | None = None,
                    on_frame: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The selector's probabilities and the ground-truth masks, (N, rows, cols) each, on
    ``frames`` frames spread evenly over a video.

    Args:
        scale: the AccGrad scale of the ground truth (normalised AccGrad >= the selector's
            threshold); None: the selector's own (the p99 of its training AccGrad). To compare
            selectors on one truth, pass the same scale to each.
        model: final DNN for the ground truth (default: the one the selector was trained for).
    """
    meta = selector.meta
    path = assets.resolve_video(video)
    indices = sample_indices(path, frames)
    detector = create_detector(model or meta.final_dnn)
    maps = compute_accgrad(path, detector, indices, crf_low=meta.crf_low, on_frame=on_frame)
    truth = ground_truth_masks(np.stack([maps[i] for i in indices]), meta.accgrad_scale if scale is None else scale, meta.accgrad_threshold)
    probabilities = np.concatenate([selector.predict(chunk) for chunk in _batches(_read(path, indices), 8)])
    return probabilities, truth


def block_precision_recall(probabilities: np.ndarray, truth: np.ndarray, *, alpha: float | None = None, fraction: float | None = None,
                           recall: float | None = None) -> dict[str, float]:
    """Precision and recall of the highest-probability blocks against the truth, the blocks
    chosen by exactly one of: probability >= ``alpha``; the top ``fraction`` of all blocks
    (selectors compared at the same selected fraction); the fewest top blocks reaching
    ``recall`` (compared at the same recall)."""
    if sum(x is not None for x in (alpha, fraction, recall)) != 1:
        raise ValueError("give exactly one of alpha, fraction, recall")
    p, t = probabilities.ravel(), truth.ravel().astype(bool)
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(t[order])
    if alpha is not None:
        k = int((p >= alpha).sum())
    elif fraction is not None:
        k = int(round(fraction * p.size))
    else:
        k = int(np.searchsorted(hits, recall * t.sum() - 1e-9) + 1) if t.any() else 0
    k = min(max(k, 0), p.size)
    tp = int(hits[k - 1]) if k else 0
    return {
        "truth_fraction": float(t.mean()), "selected_fraction": k / max(p.size, 1),
        "recall": tp / max(int(t.sum()), 1), "precision": tp / max(k, 1),
    }


def evaluate_selector(
    selector: QualitySelector, video: str, *, frames: int = 60, alpha: float = 0.2, fraction: float | None = None, model: str | None = None,
    scale: float | None = None, on_frame: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Recall and precision of a selector's high-quality blocks against the ground-truth
    AccGrad masks of a video (same final DNN, CRF and threshold as it was trained with), at
    decision threshold ``alpha`` or, if given, at the top ``fraction`` of blocks (see
    :func:`selector_scores` for ``frames``, ``model``, ``scale``)."""
    probabilities, truth = selector_scores(selector, video, frames=frames, model=model, scale=scale, on_frame=on_frame)
    chosen = {"fraction": fraction} if fraction is not None else {"alpha": alpha}
    return {"frames": len(truth), **block_precision_recall(probabilities, truth, **chosen)}


def _batches(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
