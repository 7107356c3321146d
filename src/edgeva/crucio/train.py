"""Train Crucio's autoencoder and keyframe GRU on frames of sample videos.

The autoencoder learns on random crops of consecutive frames (flipped at random) with mean
squared error plus a rate term (bits per pixel from the entropy model, with additive uniform
noise standing in for rounding); every ``eval_every`` steps it is scored on fixed held-out
clips (the last ``val_fraction`` of each video) with real rounding, and the best state is
kept. The release's default loss is 1 - SSIM (its MSE loss is option 2): on these crops the
SSIM loss drove the decoder to a flat grey within 30 steps (SSIM 0.94 on a training batch
with output standard deviation 0.002: low-contrast YCbCr crops score well when flat), so
edgeva trains on MSE and reports PSNR.

The GRU learns Crucio's two objectives on chunks of consecutive frames: *diversity* (a DPP:
the selected frames' feature kernel should have a large determinant) and
*representativeness* (every frame should look like, in SSIM, some selected frame),
weighted 0.5 / 0.5 as in the release. The release's version of both losses picks the
selected rows with ``torch.nonzero``, which cuts the gradient to the scores; here the
binary selection (normalised scores rounded, straight-through) enters both losses
multiplicatively, so gradients reach the GRU: the DPP term is det(I + diag(b)(L - I)diag(b)),
equal to det(L_S) for a binary b, and each frame's nearest selected frame is a softmin
weighted by b. Best state on held-out chunks, checked after every step (measured on the
demo's training videos: the held-out loss fell from 4.73 to 1.74 within 50 steps, then the
objective swung to selecting every frame, 6.34).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from edgeva import assets
from edgeva.crucio.codec import FEATURES, CrucioCodec, CrucioMeta, frame_features
from edgeva.crucio.model import (
    ClipAutoencoder,
    CodecSpec,
    KeyframeGRU,
    normalised_scores,
    rgb_to_ycbcr,
)
from edgeva.errors import ConfigError
from edgeva.video import read_frames

__all__ = ["CrucioTrainConfig", "train_crucio"]

Stage = Callable[[str, int], Callable[[], None]]


@dataclass
class CrucioTrainConfig:
    videos: list[str]
    frames_per_video: int = 150  # consecutive frames from the start of each video
    steps: int = 250  # autoencoder optimiser steps
    batch: int = 4
    clip_frames: int = 6  # frames per training clip (>= the network's minimum, 5)
    crop: int = 96  # square crops, a multiple of the network's stride (16)
    lr: float = 1e-3
    rate_weight: float = 0.002  # loss = MSE + rate_weight x bits per pixel
    eval_every: int = 25
    gru_steps: int = 100
    chunk: int = 10  # the GRU's clips: the evaluation's chunk length
    val_fraction: float = 0.2  # last part of each video, held out
    seed: int = 0
    spec: CodecSpec = field(default_factory=CodecSpec)
    log: Callable[[str], None] = print

    def check(self) -> None:
        if not self.videos:
            raise ConfigError("crucio training needs at least one video")
        if self.clip_frames < self.spec.min_frames:
            raise ConfigError(f"clip_frames={self.clip_frames}: the network needs at least {self.spec.min_frames}")
        if self.crop % self.spec.stride:
            raise ConfigError(f"crop={self.crop}: must be a multiple of {self.spec.stride}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in (0, 1)")


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) YCbCr in [0, 1]."""
    return rgb_to_ycbcr(torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 255.0)


class _Clips:
    """Random and fixed crops of consecutive frames from each video's train or held-out part."""

    def __init__(self, videos: list[np.ndarray], cfg: CrucioTrainConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.train = [v[: int(len(v) * (1 - cfg.val_fraction))] for v in videos]
        self.held_out = [v[int(len(v) * (1 - cfg.val_fraction)) :] for v in videos]

    def _crop(self, video: np.ndarray, start: int, y: int, x: int) -> np.ndarray:
        c = self.cfg.crop
        return video[start : start + self.cfg.clip_frames, y : y + c, x : x + c]

    def batch(self) -> torch.Tensor:
        out = []
        for _ in range(self.cfg.batch):
            video = self.train[self.rng.integers(len(self.train))]
            start = self.rng.integers(len(video) - self.cfg.clip_frames + 1)
            y, x = (self.rng.integers(s - self.cfg.crop + 1) for s in video.shape[1:3])
            clip = self._crop(video, start, y, x)
            out.append(clip[:, :, ::-1] if self.rng.random() < 0.5 else clip)
        return _to_tensor(np.ascontiguousarray(np.stack(out)))

    def validation(self, per_video: int = 4) -> torch.Tensor:
        out = []
        for video in self.held_out:
            for k in range(per_video):
                start = (len(video) - self.cfg.clip_frames) * k // max(1, per_video - 1)
                h, w = video.shape[1:3]
                out.append(self._crop(video, start, (h - self.cfg.crop) // 2, (w - self.cfg.crop) * k // max(1, per_video - 1)))
        return _to_tensor(np.ascontiguousarray(np.stack(out)))


def _rd_loss(model: ClipAutoencoder, clips: torch.Tensor, rate_weight: float) -> tuple[float, float, float]:
    """(loss, PSNR in dB, bits per pixel) with real rounding at step 1."""
    with torch.inference_mode():
        symbols = model.quantise(clips, 1.0)
        bits = -torch.log2(model.entropy.likelihood(symbols.float(), 1.0)).sum().item()
        mse = F.mse_loss(model.reconstruct(symbols, 1.0), clips).item()
    bpp = bits / (clips.shape[0] * clips.shape[2] * clips.shape[3] * clips.shape[4])
    return mse + rate_weight * bpp, 10 * float(np.log10(1 / max(mse, 1e-10))), bpp


def _train_autoencoder(clips: _Clips, cfg: CrucioTrainConfig, meta: CrucioMeta, tick: Callable[[], None]) -> ClipAutoencoder:
    model = ClipAutoencoder(cfg.spec)
    # The entropy model's two numbers per channel learn 10x faster: at the network's rate
    # they would still be far from the latent's spread after a few hundred steps.
    optimiser = torch.optim.Adam([
        {"params": [*model.encoder.parameters(), *model.decoder.parameters()]},
        {"params": model.entropy.parameters(), "lr": cfg.lr * 10},
    ], lr=cfg.lr)
    validation = clips.validation()
    best, best_state = float("inf"), None
    pixels = cfg.batch * cfg.clip_frames * cfg.crop * cfg.crop
    for step in range(1, cfg.steps + 1):
        x = clips.batch()
        reconstruction, bits = model(x)
        loss = F.mse_loss(reconstruction, x) + cfg.rate_weight * bits / pixels
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val, psnr, bpp = _rd_loss(model, validation, cfg.rate_weight)
            if val < best:
                best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
                meta.best_step, meta.val_loss, meta.val_psnr, meta.val_bpp = step, val, psnr, bpp
        tick()
    model.load_state_dict(best_state)
    return model.eval()


def _chunks(videos: list[np.ndarray], length: int) -> list[np.ndarray]:
    return [v[i : i + length] for v in videos for i in range(0, len(v) - length + 1, length)]


def _dissimilarity(chunk: np.ndarray) -> torch.Tensor:
    """(T, T) 1 - SSIM between every two frames of a chunk (at quarter size, luma-weighted YCbCr)."""
    small = torch.from_numpy(np.ascontiguousarray(chunk[:, ::4, ::4])).permute(0, 3, 1, 2).float() / 255.0
    t = len(small)
    i, j = np.triu_indices(t, 1)
    values = ssim(small[i], small[j], data_range=1.0, size_average=False, win_size=7)
    out = torch.zeros(t, t)
    out[i, j] = out[j, i] = 1 - values
    return out


def _selector_loss(scores: torch.Tensor, features: torch.Tensor, dissimilarity: torch.Tensor) -> torch.Tensor:
    """0.5 x diversity (DPP) + 0.5 x representativeness for one chunk (see the module docstring)."""
    norm = normalised_scores(scores.unsqueeze(0))[0]
    b = norm + (torch.round(norm) - norm).detach()  # straight-through rounding
    x = F.normalize(features, dim=1)
    kernel = torch.exp(-torch.cdist(x, x) ** 2 / 0.5)
    eye = torch.eye(len(b))
    selected = eye + b[:, None] * (kernel - eye) * b[None, :]
    dpp = (torch.det(selected) + 1e-4) / torch.det(kernel + eye)
    diversity = -torch.log(dpp.clamp_min(1e-12))
    weights = b[:, None] * torch.exp(-dissimilarity / 0.02)
    nearest = (weights * dissimilarity).sum(0) / weights.sum(0).clamp_min(1e-6)
    representativeness = torch.exp(nearest).mean()
    return 0.5 * diversity + 0.5 * representativeness


def _train_gru(videos: list[np.ndarray], cfg: CrucioTrainConfig, meta: CrucioMeta, tick: Callable[[], None]) -> KeyframeGRU:
    split = [int(len(v) * (1 - cfg.val_fraction)) for v in videos]
    sets = []
    for part in ([v[:s] for v, s in zip(videos, split, strict=True)], [v[s:] for v, s in zip(videos, split, strict=True)]):
        chunks = _chunks(part, cfg.chunk)
        sets.append([(frame_features(list(c)), _dissimilarity(c)) for c in chunks])
    train, held_out = sets
    gru = KeyframeGRU(FEATURES)
    optimiser = torch.optim.Adam(gru.parameters(), lr=1e-3)
    rng = np.random.default_rng(cfg.seed + 1)

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(np.mean([_selector_loss(gru(f.unsqueeze(0))[0], f, d).item() for f, d in held_out]))

    best, best_state = held_out_loss(), {k: v.clone() for k, v in gru.state_dict().items()}
    for _ in range(cfg.gru_steps):
        features, dissimilarity = train[rng.integers(len(train))]
        loss = _selector_loss(gru(features.unsqueeze(0))[0], features, dissimilarity)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gru.parameters(), 5.0)  # as the release
        optimiser.step()
        # Checked after every step: the objective swings between "few frames" and "every
        # frame" within tens of steps, and the held-out chunks cost little.
        val = held_out_loss()
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in gru.state_dict().items()}
        tick()
    meta.gru_val_loss = best
    gru.load_state_dict(best_state)
    return gru.eval()


def train_crucio(cfg: CrucioTrainConfig, *, on_stage: Stage | None = None) -> CrucioCodec:
    """Train the autoencoder, then the keyframe GRU; deterministic for a seed.

    Raises:
        ConfigError: bad settings or too few frames.
        AssetError, VideoError: a video is missing or unreadable.
    """
    cfg.check()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    stage = on_stage or (lambda _d, _n: lambda: None)
    paths = [assets.resolve_video(v) for v in cfg.videos]
    tick = stage("reading frames", len(paths))
    videos = []
    need = int(np.ceil(max(cfg.clip_frames, cfg.chunk) / min(cfg.val_fraction, 1 - cfg.val_fraction)))
    for path in paths:
        videos.append(np.stack(read_frames(path, cfg.frames_per_video)))
        if len(videos[-1]) < need:
            raise ConfigError(f"{Path(path).name}: {len(videos[-1])} frames, too few for training and held-out clips (need {need})")
        tick()
    meta = CrucioMeta(
        train_videos=[Path(p).name for p in paths], frames_per_video=cfg.frames_per_video, clip_frames=cfg.clip_frames,
        crop=cfg.crop, steps=cfg.steps, rate_weight=cfg.rate_weight, gru_steps=cfg.gru_steps, seed=cfg.seed,
    )
    clips = _Clips(videos, cfg, rng)
    autoencoder = _train_autoencoder(clips, cfg, meta, stage("autoencoder", cfg.steps))
    cfg.log(f"autoencoder: held-out PSNR {meta.val_psnr:.2f} dB at {meta.val_bpp:.3f} bits per pixel (step {meta.best_step})")
    gru = _train_gru(videos, cfg, meta, stage("keyframe GRU", cfg.gru_steps))
    meta.seconds = time.perf_counter() - start
    return CrucioCodec(autoencoder, gru, meta)
