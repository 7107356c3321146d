"""NeuroMesh's masked auto-encoder, sized for a CPU: a VideoMAE over tubelets with an
AdaMAE-style learned sampler.

NeuroMesh (its release: ``vitransformer/pretrain.py``) builds on VideoMAE (Tong et al.,
NeurIPS 2022): a clip of T frames is cut into tubelets of 2 frames x 16 x 16 pixels, each
tubelet is one token; the encoder (a ViT) sees only the visible tokens, a light decoder
fills mask tokens in at the dropped positions and regresses every tubelet's pixels. The
sampler is AdaMAE's (Bandara et al., CVPR 2023): one transformer block + linear + softmax
over all tubelet tokens gives a keep-probability per tubelet; the visible set is drawn by
multinomial sampling without replacement in training, and is the top-k at deployment.

edgeva's small version:

* tokens are embedded by one linear layer over the flattened tubelet (VideoMAE's Conv3d with
  kernel = stride = tubelet is the same map), with fixed sinusoidal position codes that are
  separable in (time, row, column), so one model runs on any even clip length and any frame
  size that is a multiple of 16 (VideoMAE's table is sinusoidal too, but flat);
* blocks are PyTorch's ``nn.TransformerEncoderLayer`` (pre-norm, GELU), widths 128-192;
* the loss is VideoMAE's MSE on per-patch-normalised pixels (mean and standard deviation per
  tubelet and channel), over every tubelet. A normalised prediction alone cannot be put back
  on screen (the dropped tubelet's mean and spread are unknown at the server), so a second
  linear head predicts each tubelet's per-channel mean and standard deviation, trained with
  MSE beside it; pixels = normalised x std + mean;
* the sampler is trained by REINFORCE (weight 1e-4 in the loss): -mean(log p_i x r_i) with
  r_i the tubelet's reconstruction error, detached. The reward is measured on pixels, not on
  normalised pixels: normalisation blows a flat tubelet's sensor noise up to unit variance,
  so the normalised error would steer the sampler towards flat, static areas, the opposite of
  dynamics-aware. The sampler's parameters get gradient only from this term, and Adam
  rescales per parameter, so its 1e-4 weight sets its share of the total loss, not its speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = [
    "MaeSpec", "MaeOutput", "VideoMAE", "TubeletSampler", "to_tubelets", "from_tubelets", "position_codes", "patch_targets", "mae_loss",
]


@dataclass(frozen=True)
class MaeSpec:
    """Shape of the MAE; stored in checkpoints."""

    clip_frames: int = 8  # frames per clip (training and deployment)
    tubelet_frames: int = 2  # frames per tubelet
    patch: int = 16  # tubelet side in pixels (of the MAE's input frame)
    frame_width: int = 256  # frames are resized to this width (height keeps the aspect, multiple of patch)
    width: int = 128  # encoder token width
    depth: int = 4  # encoder blocks
    decoder_width: int = 128
    decoder_depth: int = 2
    heads: int = 4
    sampler_heads: int = 4
    # The sampler's tokens carry the position codes (AdaMAE's); False: content only, so it
    # cannot learn where the training scenes' objects were (docs/neuromesh.md, "In the demo").
    sampler_positions: bool = True

    @property
    def tubelet_dim(self) -> int:
        return self.tubelet_frames * self.patch * self.patch * 3

    def check(self) -> None:
        if self.clip_frames % self.tubelet_frames:
            raise ValueError(f"clip_frames={self.clip_frames} is not a multiple of tubelet_frames={self.tubelet_frames}")
        if self.frame_width % self.patch:
            raise ValueError(f"frame_width={self.frame_width} is not a multiple of patch={self.patch}")
        if self.width % self.heads or self.decoder_width % self.heads:
            raise ValueError(f"widths {self.width}/{self.decoder_width} are not multiples of heads={self.heads}")

    def frame_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the MAE's input for an original frame of ``height`` x ``width``:
        at most ``frame_width`` wide, both multiples of ``patch``."""
        out_w = min(self.frame_width, max(self.patch, width // self.patch * self.patch))
        out_h = max(self.patch, int(round(height * out_w / width / self.patch)) * self.patch)
        return out_h, out_w


def to_tubelets(clip: torch.Tensor, spec: MaeSpec) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, N, tubelet_dim), N = (T / 2) x (H / 16) x (W / 16) in (t, row, col) order."""
    return rearrange(clip, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)",
                     pt=spec.tubelet_frames, ph=spec.patch, pw=spec.patch)


def from_tubelets(tokens: torch.Tensor, spec: MaeSpec, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`to_tubelets` for a (slots, rows, cols) grid."""
    t, h, w = grid
    return rearrange(tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
                     t=t, h=h, w=w, pt=spec.tubelet_frames, ph=spec.patch, pw=spec.patch, c=3)


def _sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = positions.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def position_codes(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """(N, dim) fixed sinusoidal codes, separable in time, row and column (a quarter of the
    dimensions for time, the rest split between row and column)."""
    t, h, w = grid
    d_t = dim // 4 // 2 * 2
    d_y = (dim - d_t) // 2 // 2 * 2
    d_x = dim - d_t - d_y
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([_sinusoid(tt.reshape(-1), d_t), _sinusoid(yy.reshape(-1), d_y), _sinusoid(xx.reshape(-1), d_x)], dim=1)


def transformer_blocks(width: int, heads: int, depth: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TubeletSampler(nn.Module):
    """AdaMAE's sampling network: one transformer block + linear + softmax over tubelet tokens."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.block = transformer_blocks(width, heads, 1)
        self.norm = nn.LayerNorm(width)
        self.score = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, width) embedded tokens -> (B, N) keep-probabilities (softmax over N)."""
        return torch.softmax(self.score(self.norm(self.block(tokens))).squeeze(-1), dim=-1)


@dataclass
class MaeOutput:
    normalised: torch.Tensor  # (B, N, tubelet_dim) predicted per-patch-normalised pixels
    stats: torch.Tensor  # (B, N, 6) predicted per-channel mean and standard deviation
    probs: torch.Tensor | None  # (B, N) the sampler's keep-probabilities; None when the visible set was given
    visible: torch.Tensor  # (B, K) indices of the visible tubelets

    def pixels(self) -> torch.Tensor:
        """(B, N, tubelet_dim) predicted pixels in [0, 1]."""
        mean, std = self.stats[..., :3], self.stats[..., 3:]
        normalised = rearrange(self.normalised, "b n (p c) -> b n p c", c=3)
        return rearrange(normalised * std[:, :, None] + mean[:, :, None], "b n p c -> b n (p c)").clamp(0, 1)


class VideoMAE(nn.Module):
    """Tubelet MAE with a learned sampler over (B, 3, T, H, W) clips in [0, 1]."""

    def __init__(self, spec: MaeSpec = MaeSpec()):
        super().__init__()
        spec.check()
        self.spec = spec
        self.embed = nn.Linear(spec.tubelet_dim, spec.width)
        self.sampler = TubeletSampler(spec.width, spec.sampler_heads)
        self.encoder = transformer_blocks(spec.width, spec.heads, spec.depth)
        self.encoder_norm = nn.LayerNorm(spec.width)
        self.to_decoder = nn.Linear(spec.width, spec.decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.decoder_width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = transformer_blocks(spec.decoder_width, spec.heads, spec.decoder_depth)
        self.decoder_norm = nn.LayerNorm(spec.decoder_width)
        self.head = nn.Linear(spec.decoder_width, spec.tubelet_dim)
        self.stats_head = nn.Linear(spec.decoder_width, 6)

    def grid(self, clip: torch.Tensor) -> tuple[int, int, int]:
        _, _, t, h, w = clip.shape
        s = self.spec
        if t % s.tubelet_frames or h % s.patch or w % s.patch:
            raise ValueError(f"clip {t}x{h}x{w} is not a whole number of {s.tubelet_frames}x{s.patch}x{s.patch} tubelets")
        return t // s.tubelet_frames, h // s.patch, w // s.patch

    def tokens(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, N, width) embedded tubelets with position codes."""
        return self._embedded(clip)[1]

    def _embedded(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the sampler reads, the tokens): the embedded tubelets with position codes for
        both, or without them for the sampler when ``spec.sampler_positions`` is False."""
        embedded = self.embed(to_tubelets(clip, self.spec))
        tokens = embedded + position_codes(self.grid(clip), self.spec.width)
        return (tokens if self.spec.sampler_positions else embedded), tokens

    def keep_probabilities(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, N) the sampler's probabilities (the camera's only network)."""
        return self.sampler(self._embedded(clip)[0])

    def choose(self, probs: torch.Tensor, keep: int, *, sample: bool) -> torch.Tensor:
        """(B, keep) visible indices: multinomial without replacement (training) or top-k, sorted."""
        if sample:
            idx = torch.multinomial(probs, keep, replacement=False)
        else:
            idx = torch.topk(probs, keep, dim=1, sorted=False).indices
        return torch.sort(idx, dim=1).values

    def encode(self, tokens: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(B, K, width) the encoder's latent tokens of the ``visible`` (B, K) tubelets of
        embedded ``tokens`` (B, N, width): what the decoder, or the zero-decoding head, reads."""
        gathered = torch.gather(tokens, 1, visible[..., None].expand(-1, -1, tokens.shape[-1]))
        return self.encoder_norm(self.encoder(gathered))

    def forward(self, clip: torch.Tensor, *, keep: int | None = None, visible: torch.Tensor | None = None,
                sample: bool = True) -> MaeOutput:
        """Encode the visible tubelets (given, or chosen by the sampler: ``keep`` of them) and
        predict every tubelet. With ``visible`` given (the server) the sampler does not run: a
        third of the MAE's time on the server's clips."""
        sampled, tokens = self._embedded(clip)
        probs = None
        if visible is None:
            if keep is None:
                raise ValueError("forward needs keep or visible")
            probs = self.sampler(sampled.detach())
            visible = self.choose(probs.detach(), keep, sample=sample)
        b, n, _ = tokens.shape
        latent = self.to_decoder(self.encode(tokens, visible))
        full = self.mask_token.expand(b, n, -1).clone()
        full.scatter_(1, visible[..., None].expand(-1, -1, latent.shape[-1]), latent)
        full = full + position_codes(self.grid(clip), self.spec.decoder_width)
        hidden = self.decoder_norm(self.decoder(full))
        stats = self.stats_head(hidden)
        stats = torch.cat([torch.sigmoid(stats[..., :3]), F.softplus(stats[..., 3:]) + 1e-3], dim=-1)
        return MaeOutput(self.head(hidden), stats, probs, visible)


def patch_targets(clip: torch.Tensor, spec: MaeSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised pixels (B, N, tubelet_dim), stats (B, N, 6)) of a clip's tubelets, as
    VideoMAE normalises: per tubelet and channel, (x - mean) / sqrt(var + 1e-6)."""
    pixels = rearrange(to_tubelets(clip, spec), "b n (p c) -> b n p c", c=3)
    mean, var = pixels.mean(2, keepdim=True), pixels.var(2, unbiased=True, keepdim=True)
    std = (var + 1e-6).sqrt()
    normalised = rearrange((pixels - mean) / std, "b n p c -> b n (p c)")
    return normalised, torch.cat([mean.squeeze(2), std.squeeze(2)], dim=-1)


def mae_loss(model: VideoMAE, clip: torch.Tensor, out: MaeOutput, *, sampler_weight: float = 1e-4, pixel_weight: float = 10.0,
             extra_reward: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The training loss and its parts (see the module docstring). ``extra_reward`` (B, N),
    detached, is added to the sampler's pixel reward (the detection-aware variant's term)."""
    normalised, stats = patch_targets(clip, model.spec)
    reconstruction = F.mse_loss(out.normalised, normalised)
    stats_loss = F.mse_loss(out.stats, stats) * 10.0  # pixel-scale stats: ~10x smaller than unit-variance pixels
    error = (out.pixels() - to_tubelets(clip, model.spec)).pow(2).mean(-1)  # (B, N) per-tubelet pixel error
    painted = error.mean() * pixel_weight
    reward = error.detach() / error.detach().mean(1, keepdim=True).clamp_min(1e-8)
    if extra_reward is not None:
        reward = reward + extra_reward
    sampling = -(torch.log(out.probs.clamp_min(1e-12)) * reward).mean()
    loss = reconstruction + stats_loss + painted + sampler_weight * sampling
    return loss, {"reconstruction": reconstruction.item(), "stats": stats_loss.item(), "pixels": painted.item(), "sampling": sampling.item()}
