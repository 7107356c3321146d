"""Train NeuroMesh's MAE and its sampler on frames of sample videos.

Frames are resized to the MAE's input (``frame_width`` wide); training clips are
``clip_frames`` consecutive frames, cropped at random to ``crop_width`` (the full height),
flipped at random. Each step draws the visible tubelets by multinomial sampling without
replacement from the sampler at the training mask ratio (0.8, as the release) and minimises
:func:`~edgeva.neuromesh.model.mae_loss`. Every ``eval_every`` steps the model is scored on
fixed held-out clips (the last ``val_fraction`` of each video, full frame width) with top-k
selection, as deployed; the best state is kept. Deterministic for a seed (one thread).

With ``reward="detection"`` (beyond the paper) the sampler's reward adds the final DNN's
AccGrad of the reconstruction per tubelet (:func:`detection_reward`), so the sampler learns to
keep what YOLOX-Nano needs, not only what is hard to paint.
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
from edgeva.models import Detector, create_detector
from edgeva.neuromesh.codec import NeuroMeshCodec, NeuroMeshMeta, check_mask_ratio
from edgeva.neuromesh.model import (
    MaeOutput,
    MaeSpec,
    VideoMAE,
    from_tubelets,
    mae_loss,
    patch_targets,
    to_tubelets,
)
from edgeva.video import read_frames

__all__ = ["NeuroMeshTrainConfig", "train_mae", "dropped_psnr", "detection_reward", "reward_detector", "uint8_frames", "REWARDS"]

Stage = Callable[[str, int], Callable[[], None]]
REWARDS = ("pixel", "detection")


@dataclass
class NeuroMeshTrainConfig:
    videos: list[str]
    frames_per_video: int = 150  # consecutive frames from the start of each video
    steps: int = 300  # optimiser steps
    batch: int = 2  # clips per step
    crop_width: int = 256  # training crops (pixels of the MAE's input, a multiple of the patch; position codes start at
    # the crop's left edge, so crops narrower than the frame leave the right columns' codes untrained)
    mask_ratio: float = 0.8  # share of tubelets dropped in training
    lr: float = 1e-3
    # The sampler learns only from the REINFORCE term, a noisy signal; at the network's rate it
    # barely moves from uniform in a few hundred steps, so it learns this many times faster.
    sampler_lr_scale: float = 10.0
    # The sampler's reward: "pixel" (each tubelet's reconstruction error, the paper's) or
    # "detection" (that plus detection_weight x the final DNN's AccGrad of the reconstruction
    # per tubelet, see detection_reward: keep what the detector needs, not what is hard to paint).
    reward: str = "pixel"
    detection_weight: float = 1.0
    eval_every: int = 25
    val_fraction: float = 0.2  # last part of each video, held out
    seed: int = 0
    spec: MaeSpec = field(default_factory=MaeSpec)
    log: Callable[[str], None] = print

    def check(self) -> None:
        if not self.videos:
            raise ConfigError("neuromesh training needs at least one video")
        check_mask_ratio(self.mask_ratio)
        if self.reward not in REWARDS:
            raise ConfigError(f"reward {self.reward!r}: choose from {', '.join(REWARDS)}")
        if not self.detection_weight >= 0:
            raise ConfigError(f"detection_weight={self.detection_weight}: must be at least 0")
        if not self.sampler_lr_scale > 0:
            raise ConfigError(f"sampler_lr_scale={self.sampler_lr_scale}: must be positive")
        if self.steps < 1 or self.batch < 1:
            raise ConfigError(f"steps={self.steps}, batch={self.batch}: both must be at least 1")
        if self.crop_width % self.spec.patch or not 0 < self.crop_width <= self.spec.frame_width:
            raise ConfigError(f"crop_width={self.crop_width}: a multiple of {self.spec.patch} up to {self.spec.frame_width}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in (0, 1)")


def _to_clip(frames: np.ndarray) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 4, 1, 2, 3).float() / 255.0


class _Clips:
    def __init__(self, videos: list[np.ndarray], cfg: NeuroMeshTrainConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.train = [v[: int(len(v) * (1 - cfg.val_fraction))] for v in videos]
        self.held_out = [v[int(len(v) * (1 - cfg.val_fraction)) :] for v in videos]

    def batch(self) -> torch.Tensor:
        length, crop = self.cfg.spec.clip_frames, self.cfg.crop_width
        out = []
        for _ in range(self.cfg.batch):
            video = self.train[self.rng.integers(len(self.train))]
            start = self.rng.integers(len(video) - length + 1)
            x = self.rng.integers(video.shape[2] - crop + 1)
            clip = video[start : start + length, :, x : x + crop]
            out.append(clip[:, :, ::-1] if self.rng.random() < 0.5 else clip)
        return _to_clip(np.stack(out))

    def validation(self, per_video: int = 3) -> torch.Tensor:
        length = self.cfg.spec.clip_frames
        out = []
        for video in self.held_out:
            for k in range(per_video):
                start = (len(video) - length) * k // max(1, per_video - 1)
                out.append(video[start : start + length])
        return _to_clip(np.stack(out))


def uint8_frames(clip: torch.Tensor) -> np.ndarray:
    """(B, 3, T, h, w) in [0, 1] -> (B * T, h, w, 3) RGB uint8."""
    frames = clip.detach().permute(0, 2, 3, 4, 1).reshape(-1, *clip.shape[3:], 3)
    return (frames * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def reward_detector(frame_size: tuple[int, int]) -> Detector:
    """YOLOX-Nano (the final DNN) for MAE-sized frames of ``frame_size`` (h, w): its input is
    twice that (multiples of 32), nearer the resolution the server runs it at."""
    h, w = (int(np.ceil(2 * v / 32) * 32) for v in frame_size)
    return create_detector("yolox-nano", input_size=(h, w))


def detection_reward(detector: Detector, clip: torch.Tensor, out: MaeOutput, spec: MaeSpec) -> torch.Tensor:
    """(B, N) the detection-aware reward: per tubelet, the final DNN's AccGrad of the MAE's
    reconstruction (:func:`edgeva.accmpeg.accgrad.accgrad` with the original clip as H and the
    painted clip as L: |d loss / d painted pixel| x |original - painted| summed over the
    tubelet's 2 x 16 x 16 pixels, the loss being YOLOX's own against its detections on the
    original), divided by the clip's mean like the pixel reward. Detached, no gradient to the MAE."""
    from edgeva.accmpeg.accgrad import accgrad

    b, _, t, h, w = clip.shape
    grid = (t // spec.tubelet_frames, h // spec.patch, w // spec.patch)
    painted = from_tubelets(out.pixels().detach(), spec, grid)
    blocks = torch.from_numpy(accgrad(detector, uint8_frames(clip), uint8_frames(painted)))  # (B * T, rows, cols): 16x16 blocks = tubelet cells
    per_tubelet = blocks.reshape(b, grid[0], spec.tubelet_frames, grid[1], grid[2]).sum(2).reshape(b, -1)
    return per_tubelet / per_tubelet.mean(1, keepdim=True).clamp_min(1e-12)


def dropped_psnr(model: VideoMAE, clips: torch.Tensor, mask_ratio: float) -> tuple[float, float, float]:
    """(loss, PSNR of the MAE on dropped tubelets, PSNR of flat grey on them) in dB with the
    sampler's top-k visible set, as deployed."""
    n = to_tubelets(clips[:1], model.spec).shape[1]
    keep = max(1, int(round((1 - mask_ratio) * n)))
    with torch.inference_mode():
        out = model(clips, keep=keep, sample=False)
        normalised, stats = patch_targets(clips, model.spec)
        loss = torch.nn.functional.mse_loss(out.normalised, normalised) + 10 * torch.nn.functional.mse_loss(out.stats, stats)
        truth = to_tubelets(clips, model.spec)
        dropped = torch.ones(truth.shape[:2], dtype=torch.bool)
        dropped.scatter_(1, out.visible, False)
        mse = (out.pixels() - truth)[dropped].pow(2).mean().item()
        flat = (truth[dropped] - 128 / 255).pow(2).mean().item()
    return loss.item(), 10 * float(np.log10(1 / max(mse, 1e-10))), 10 * float(np.log10(1 / max(flat, 1e-10)))


def _read(cfg: NeuroMeshTrainConfig, stage: Stage) -> tuple[list[np.ndarray], list[str]]:
    paths = [assets.resolve_video(v) for v in cfg.videos]
    tick = stage("reading frames", len(paths))
    need = int(np.ceil(cfg.spec.clip_frames / min(cfg.val_fraction, 1 - cfg.val_fraction)))
    videos = []
    for path in paths:
        frames = read_frames(path, cfg.frames_per_video)
        if len(frames) < need:
            raise ConfigError(f"{Path(path).name}: {len(frames)} frames, too few for training and held-out clips (need {need})")
        h, w = cfg.spec.frame_size(*frames[0].shape[:2])
        if w < cfg.crop_width:
            raise ConfigError(f"{Path(path).name}: {w} pixels wide at the MAE's size, narrower than crop_width={cfg.crop_width}")
        videos.append(np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]))
        tick()
    return videos, [Path(p).name for p in paths]


def train_mae(cfg: NeuroMeshTrainConfig, *, on_stage: Stage | None = None) -> NeuroMeshCodec:
    """Train the MAE and its sampler; deterministic for a seed.

    Raises:
        ConfigError: bad settings or too few frames.
        AssetError, VideoError: a video is missing or unreadable.
    """
    cfg.check()
    start = time.perf_counter()
    stage = on_stage or (lambda _d, _n: lambda: None)
    videos, names = _read(cfg, stage)
    # Built before seeding (its layers draw initial weights): both rewards see the same random stream.
    detector = reward_detector((videos[0].shape[1], cfg.crop_width)) if cfg.reward == "detection" else None
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    clips = _Clips(videos, cfg, rng)
    validation = clips.validation()
    model = VideoMAE(cfg.spec)
    sampler = list(model.sampler.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in sampler)]
    optimiser = torch.optim.AdamW([{"params": rest}, {"params": sampler, "lr": cfg.lr * cfg.sampler_lr_scale}],
                                  lr=cfg.lr, weight_decay=0.05, betas=(0.9, 0.95))
    warmup = max(1, cfg.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    meta = NeuroMeshMeta(train_videos=names, frames_per_video=cfg.frames_per_video, steps=cfg.steps,
                         mask_ratio=cfg.mask_ratio, seed=cfg.seed, reward=cfg.reward)
    best_state = None
    tick = stage("MAE + sampler", cfg.steps)
    n = (cfg.spec.clip_frames // cfg.spec.tubelet_frames) * (videos[0].shape[1] // cfg.spec.patch) * (cfg.crop_width // cfg.spec.patch)
    keep = max(1, int(round((1 - cfg.mask_ratio) * n)))
    for step in range(1, cfg.steps + 1):
        model.train()
        x = clips.batch()
        out = model(x, keep=keep, sample=True)
        extra = cfg.detection_weight * detection_reward(detector, x, out, cfg.spec) if detector else None
        loss, _ = mae_loss(model, x, out, extra_reward=extra)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            val, psnr, flat = dropped_psnr(model, validation, cfg.mask_ratio)
            if val < meta.val_loss or best_state is None:
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
                meta.best_step, meta.val_loss, meta.val_psnr, meta.val_flat_psnr = step, val, psnr, flat
        tick()
    model.load_state_dict(best_state)
    meta.seconds = time.perf_counter() - start
    cfg.log(f"MAE: held-out dropped tubelets {meta.val_psnr:.2f} dB (flat grey {meta.val_flat_psnr:.2f} dB), step {meta.best_step}")
    return NeuroMeshCodec(model.eval(), meta)
