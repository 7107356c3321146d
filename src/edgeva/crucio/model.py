"""Crucio's networks, sized for a CPU: a 3D-convolutional clip autoencoder with a quantised
latent and a learned entropy model, and a GRU keyframe selector.

Crucio (Wu et al., INFOCOM 2024) encodes a batch of keyframes as one clip with a 3D CNN
(``autoencoder/network3d.py`` of its release: four levels of 3x3x3 convolution + ReLU +
max-pool (2,2,2) stride (1,2,2), so each level halves the frame size and shortens the clip
by one frame; 12 latent channels; transposed 3D convolutions mirror it), trained on YCbCr
frames (SSIM loss by default), and picks the keyframes with a bidirectional GRU over per-frame
CNN features (``batch_handler/gru_filter.py``). The release stores the encoder's float
output with pickle + LZMA; it has no quantiser and no entropy model.

edgeva's small version keeps the structure and changes what a CPU and real bitstreams need:

* each level is one strided 3D convolution, kernel (2, 4, 4), stride (1, 2, 2), no temporal
  padding: the same halving and one-frame shortening as conv + max-pool, at a quarter of
  the cost; widths 16/32/48 instead of 64-256;
* the latent (32 channels, no ReLU on the last level) is divided by a quantisation step
  and rounded; a per-channel logistic entropy model (learned location and scale) gives
  each integer's probability, trained with the usual additive-uniform-noise proxy and a
  rate term; the camera range-codes the integers with these probabilities
  (:mod:`edgeva.crucio.bitstream`). With a rate term, channels that do not pay are
  driven to zero bits, so 32 channels cost no more than they earn;
* the keyframe selector's features are the ImageNet ShuffleNetV2 0.5x backbone edgeva
  already ships (the release uses SqueezeNet from torchvision, which does not install here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CodecSpec",
    "ClipAutoencoder",
    "LogisticEntropyModel",
    "KeyframeGRU",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "select_keyframes",
]

# PIL's "YCbCr" (JPEG, full range), as the release converts its frames.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCBCR_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, T, H, W) RGB in [0, 1] -> YCbCr in [0, 1] (channel dimension 1 of a clip batch)."""
    return torch.einsum("ij,bj...->bi...", _RGB_TO_YCBCR, x) + _YCBCR_OFFSET.view(1, 3, *([1] * (x.dim() - 2)))


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    inverse = torch.linalg.inv(_RGB_TO_YCBCR)
    return torch.einsum("ij,bj...->bi...", inverse, x - _YCBCR_OFFSET.view(1, 3, *([1] * (x.dim() - 2))))


@dataclass(frozen=True)
class CodecSpec:
    """Shape of the autoencoder; stored in checkpoints."""

    widths: tuple[int, ...] = (16, 32, 48)  # channels of the hidden levels
    latent_channels: int = 32

    @property
    def depth(self) -> int:
        """Levels: each halves height and width and shortens the clip by one frame."""
        return len(self.widths) + 1

    @property
    def min_frames(self) -> int:
        """Shortest clip the network can encode (Crucio's MIN_FRAME_NUM)."""
        return self.depth + 1

    @property
    def stride(self) -> int:
        return 2 ** self.depth


def _level(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=(2, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1))


def _level_up(cin: int, cout: int) -> nn.ConvTranspose3d:
    return nn.ConvTranspose3d(cin, cout, kernel_size=(2, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1))


class LogisticEntropyModel(nn.Module):
    """Per-channel logistic density of the latent; probabilities of integer bins.

    ``likelihood(y, step)`` is P(round(y / step) = k) for the bin holding ``y / step``:
    sigmoid((k + 0.5 - mu) / s) - sigmoid((k - 0.5 - mu) / s), with mu and s the channel's
    location and scale measured in quantisation steps.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def params(self, step: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(location, scale) per channel, in units of the quantisation step."""
        return self.loc / step, torch.exp(self.log_scale).clamp_min(0.05) / step

    def likelihood(self, q: torch.Tensor, step: float) -> torch.Tensor:
        """Probabilities of ``q`` (latent / step, rounded or noisy), shape of ``q`` (B, C, ...)."""
        loc, scale = (p.view(1, -1, *([1] * (q.dim() - 2))) for p in self.params(step))
        upper = torch.sigmoid((q + 0.5 - loc) / scale)
        lower = torch.sigmoid((q - 0.5 - loc) / scale)
        return (upper - lower).clamp_min(1e-9)


class ClipAutoencoder(nn.Module):
    """3D-convolutional clip codec: (B, 3, T, H, W) YCbCr in [0, 1] with H, W multiples of
    ``spec.stride`` and T >= ``spec.min_frames`` -> latent (B, C, T - depth, H / s, W / s)."""

    def __init__(self, spec: CodecSpec = CodecSpec()):
        super().__init__()
        self.spec = spec
        widths = (3, *spec.widths, spec.latent_channels)
        self.encoder = nn.ModuleList([_level(a, b) for a, b in zip(widths, widths[1:], strict=False)])
        self.decoder = nn.ModuleList([_level_up(b, a) for a, b in reversed(list(zip(widths, widths[1:], strict=False)))])
        self.entropy = LogisticEntropyModel(spec.latent_channels)
        for conv in (*self.encoder, *self.decoder):  # He init: PyTorch's default shrinks the signal
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")  # level by level, and the latent
            nn.init.zeros_(conv.bias)  # would drown in the quantiser's noise for many steps
        with torch.no_grad():  # latent std about 3 quantisation steps at the start
            self.encoder[-1].weight.mul_(4.0)
            self.decoder[0].weight.mul_(0.25)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.encoder):
            x = conv(x)
            if i < len(self.encoder) - 1:
                x = F.relu(x)
        return x

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.decoder):
            y = conv(y)
            y = F.relu(y) if i < len(self.decoder) - 1 else torch.sigmoid(y)
        return y

    def forward(self, x: torch.Tensor, step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, bits) with additive uniform noise as the quantiser."""
        y = self.encode(x) / step
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bits = -torch.log2(self.entropy.likelihood(noisy, step)).sum()
        return self.decode(noisy * step), bits

    def quantise(self, x: torch.Tensor, step: float) -> torch.Tensor:
        """Integer symbols of a clip (what the camera sends)."""
        return torch.round(self.encode(x) / step).to(torch.int32)

    def reconstruct(self, symbols: torch.Tensor, step: float) -> torch.Tensor:
        return self.decode(symbols.to(torch.float32) * step)


class KeyframeGRU(nn.Module):
    """Crucio's keyframe filter: a bidirectional GRU over per-frame features -> one score per
    frame in (0, 1) (``features``: (B, T, D))."""

    def __init__(self, features: int, hidden: int = 64):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(features)
        return torch.sigmoid(self.fc(out).squeeze(-1))


def normalised_scores(scores: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation per clip, as the release does before rounding (B, T)."""
    low, high = scores.min(dim=1, keepdim=True).values, scores.max(dim=1, keepdim=True).values
    return (scores - low) / (high - low).clamp_min(1e-6)


def select_keyframes(scores: np.ndarray, min_frames: int, threshold: float = 0.5) -> np.ndarray:
    """Indices of the frames to send: normalised score >= ``threshold`` (the release rounds,
    i.e. 0.5), topped up with the next best frames to at least ``min_frames``."""
    scores = np.asarray(scores, np.float64)
    if len(scores) <= min_frames:
        return np.arange(len(scores))
    span = scores.max() - scores.min()
    norm = (scores - scores.min()) / span if span > 1e-6 else np.ones_like(scores)
    chosen = set(np.flatnonzero(norm >= threshold).tolist())
    for i in np.argsort(-norm, kind="stable"):
        if len(chosen) >= min_frames:
            break
        chosen.add(int(i))
    return np.array(sorted(chosen))
