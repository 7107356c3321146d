"""Distil the zero-decoding head (:mod:`edgeva.neuromesh.zero`) from YOLOX-Nano.

The MAE is frozen. Targets: YOLOX-Nano's detections (score >= ``target_score``) on the
original training frames (the first ``frames_per_video`` of each video), scaled to the MAE's
input. Each step takes ``batch`` clips of ``clip_frames`` consecutive frames at the full MAE
width (the head's position codes cover the whole frame), flipped at random, picks the visible
tubelets as the camera does (the sampler's top-k) at a mask ratio drawn from ``mask_ratios``,
runs the MAE's encoder without gradient and trains the head on :func:`head_loss`. Every
``eval_every`` steps the head is scored on fixed held-out clips (the last ``val_fraction`` of
each video) at mask ratio 0.5; the best state is kept. Deterministic for a seed (one thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from edgeva import assets
from edgeva.errors import ConfigError
from edgeva.metrics import DetectionF1
from edgeva.models import Detections, create_detector
from edgeva.neuromesh.codec import NeuroMeshCodec, check_mask_ratio
from edgeva.neuromesh.zero import (
    HeadCheckpoint,
    HeadMeta,
    HeadSpec,
    LatentHead,
    decode_frames,
    head_loss,
    head_targets,
    latent_raw,
    mae_fingerprint,
)
from edgeva.video import read_frames

__all__ = ["HeadTrainConfig", "train_head", "HeadData", "read_head_data", "visible_top_k"]

Stage = Callable[[str, int], Callable[[], None]]
VAL_MASK_RATIO = 0.5


@dataclass
class HeadTrainConfig:
    videos: list[str]
    frames_per_video: int = 150  # consecutive frames from the start of each video
    steps: int = 300
    batch: int = 2  # clips per step
    lr: float = 1e-3
    mask_ratios: tuple[float, ...] = (0.3, 0.5, 0.7)  # drawn per step (the scheme's sweep)
    target_score: float = 0.4  # YOLOX-Nano detections at or above this score are the targets (the F1 threshold)
    eval_every: int = 25
    val_fraction: float = 0.2
    seed: int = 0
    spec: HeadSpec = field(default_factory=HeadSpec)
    log: Callable[[str], None] = print

    def check(self) -> None:
        if not self.videos:
            raise ConfigError("head training needs at least one video")
        if self.steps < 1 or self.batch < 1:
            raise ConfigError(f"steps={self.steps}, batch={self.batch}: both must be at least 1")
        if not self.mask_ratios:
            raise ConfigError("head training needs at least one mask ratio")
        for ratio in self.mask_ratios:
            check_mask_ratio(ratio)
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in (0, 1)")


@dataclass
class HeadData:
    """One video's frames at the MAE's input and YOLOX-Nano's targets on the originals."""

    name: str
    frames: np.ndarray  # (T, h, w, 3) uint8 at the MAE's input size
    targets: list[Detections]  # per frame, boxes in MAE-input pixels
    frame_size: tuple[int, int]  # (height, width) of the originals


def read_head_data(codec: NeuroMeshCodec, video: str, count: int, target_score: float, *, start: int = 0) -> HeadData:
    """Frames ``start`` to ``start + count`` of ``video`` resized to the MAE's input, with YOLOX-Nano's
    detections on the originals as targets."""
    path = assets.resolve_video(video)
    originals = read_frames(path, count, start=start)
    if not originals:
        raise ConfigError(f"{Path(path).name}: no frames")
    detector = create_detector("yolox-nano", score_threshold=target_score)
    height, width = originals[0].shape[:2]
    h, w = codec.spec.frame_size(height, width)
    targets = [d.scaled(w / width, h / height) for d in detector.detect(originals)]
    small = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in originals])
    return HeadData(Path(path).name, small, targets, (height, width))


def visible_top_k(codec: NeuroMeshCodec, clips: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """(B, K) the sampler's top-k tubelets of each clip, sorted, as the camera keeps them."""
    with torch.inference_mode():
        probs = codec.model.keep_probabilities(clips)
    keep = max(1, int(round((1 - mask_ratio) * probs.shape[1])))
    return codec.model.choose(probs, keep, sample=False)


def _flip(dets: Detections, width: int) -> Detections:
    boxes = dets.boxes.copy()
    boxes[:, [0, 2]] = width - dets.boxes[:, [2, 0]]
    return Detections(boxes, dets.scores, dets.class_ids, dets.names)


class _HeadClips:
    def __init__(self, data: list[HeadData], cfg: HeadTrainConfig, codec: NeuroMeshCodec, rng: np.random.Generator):
        self.cfg, self.codec, self.rng, self.length = cfg, codec, rng, codec.spec.clip_frames
        cut = [int(len(d.frames) * (1 - cfg.val_fraction)) for d in data]
        self.train = [(d.frames[:c], d.targets[:c]) for d, c in zip(data, cut, strict=True)]
        self.held_out = [(d.frames[c:], d.targets[c:]) for d, c in zip(data, cut, strict=True)]

    def _stack(self, parts: list[tuple[np.ndarray, list[Detections]]]) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[list[Detections]]]:
        clips = torch.from_numpy(np.ascontiguousarray(np.stack([p[0] for p in parts]))).permute(0, 4, 1, 2, 3).float() / 255.0
        grid = self.codec.model.grid(clips)
        targets = [head_targets(p[1], grid, self.codec.spec) for p in parts]
        return clips, {k: torch.stack([t[k] for t in targets]) for k in targets[0]}, [p[1] for p in parts]

    def batch(self):
        out = []
        for _ in range(self.cfg.batch):
            frames, dets = self.train[self.rng.integers(len(self.train))]
            start = int(self.rng.integers(len(frames) - self.length + 1))
            clip, clip_dets = frames[start : start + self.length], dets[start : start + self.length]
            if self.rng.random() < 0.5:
                clip, clip_dets = clip[:, :, ::-1], [_flip(d, clip.shape[2]) for d in clip_dets]
            out.append((clip, clip_dets))
        return self._stack(out)

    def validation(self, per_video: int = 3):
        out = []
        for frames, dets in self.held_out:
            for k in range(per_video):
                start = (len(frames) - self.length) * k // max(1, per_video - 1)
                out.append((frames[start : start + self.length], dets[start : start + self.length]))
        return self._stack(out)


def _score(codec: NeuroMeshCodec, head: LatentHead, val, visible: torch.Tensor) -> tuple[float, float]:
    """(held-out loss, held-out F1 against the targets) of the head."""
    clips, targets, dets = val
    head.eval()
    with torch.inference_mode():
        raw = latent_raw(codec.model, head, clips, visible)
        loss = head_loss(raw, targets).item()
        size = tuple(clips.shape[3:])
        f1 = DetectionF1()
        for c in range(clips.shape[0]):
            f1.process(decode_frames(raw[c], codec.model.grid(clips[c : c + 1]), codec.spec, head.spec, size, size), dets[c])
    return loss, f1.evaluate()["f1"]


def train_head(cfg: HeadTrainConfig, codec: NeuroMeshCodec, *, on_stage: Stage | None = None) -> HeadCheckpoint:
    """Distil the head for ``codec``'s MAE (frozen); deterministic for a seed.

    Raises:
        ConfigError: bad settings or too few frames.
        AssetError, VideoError: a video is missing or unreadable.
    """
    cfg.check()
    start = time.perf_counter()
    stage = on_stage or (lambda _d, _n: lambda: None)
    tick = stage("YOLOX-Nano targets", len(cfg.videos))
    data = []
    for video in cfg.videos:
        data.append(read_head_data(codec, video, cfg.frames_per_video, cfg.target_score))
        if len(data[-1].frames) * min(cfg.val_fraction, 1 - cfg.val_fraction) < codec.spec.clip_frames:
            raise ConfigError(f"{data[-1].name}: {len(data[-1].frames)} frames, too few for training and held-out clips")
        tick()
    if len({d.frames.shape[1:] for d in data}) > 1:
        raise ConfigError("head training videos must share one frame size at the MAE's input")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clips = _HeadClips(data, cfg, codec, rng)
    val = clips.validation()
    val_visible = visible_top_k(codec, val[0], VAL_MASK_RATIO)
    head = LatentHead(codec.spec, cfg.spec)
    optimiser = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    meta = HeadMeta(train_videos=[d.name for d in data], frames_per_video=cfg.frames_per_video, steps=cfg.steps,
                    mask_ratios=list(cfg.mask_ratios), seed=cfg.seed)
    meta.untrained_val_loss, _ = _score(codec, head, val, val_visible)
    best_state, tick = None, stage("zero-decoding head", cfg.steps)
    for step in range(1, cfg.steps + 1):
        x, targets, _ = clips.batch()
        visible = visible_top_k(codec, x, float(cfg.mask_ratios[rng.integers(len(cfg.mask_ratios))]))
        with torch.no_grad():
            latent = codec.model.encode(codec.model.tokens(x), visible)
        head.train()
        loss = head_loss(head(latent, visible, codec.model.grid(x)), targets)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val_loss, f1 = _score(codec, head, val, val_visible)
            if best_state is None or val_loss < meta.val_loss:
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
                meta.best_step, meta.val_loss, meta.val_f1 = step, val_loss, f1
        tick()
    head.load_state_dict(best_state)
    meta.seconds = time.perf_counter() - start
    cfg.log(f"head: held-out distillation loss {meta.untrained_val_loss:.3f} untrained -> {meta.val_loss:.3f}, "
            f"F1 {meta.val_f1:.3f} against YOLOX-Nano at mask ratio {VAL_MASK_RATIO} (step {meta.best_step})")
    return HeadCheckpoint(head.eval(), meta, mae_fingerprint(codec.model))
