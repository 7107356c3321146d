"""The trained Crucio codec: camera side (keyframes -> bytes), server side (bytes -> frames),
and its checkpoint file.

Camera: per chunk, ShuffleNetV2 features of every frame -> the GRU's scores -> keyframes
(:func:`~edgeva.crucio.model.select_keyframes`) -> the keyframes as one clip (YCbCr, padded
to the network's stride) -> integer latent -> range-coded bytes. Server: bytes -> latent ->
decoder -> RGB keyframes at the original size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeva.checkpoints import read_checkpoint
from edgeva.crucio.bitstream import ChunkHeader, pack_chunk, unpack_chunk
from edgeva.crucio.model import (
    ClipAutoencoder,
    CodecSpec,
    KeyframeGRU,
    rgb_to_ycbcr,
    select_keyframes,
    ycbcr_to_rgb,
)
from edgeva.errors import ModelError

__all__ = ["CrucioMeta", "CrucioCodec", "CameraChunk", "save_crucio", "load_crucio", "frame_features", "FEATURES"]

FORMAT = "edgeva-crucio"
FEATURES = 192  # ShuffleNetV2 0.5x stage-4 channels, average-pooled: the GRU's input per frame


@dataclass
class CrucioMeta:
    """What a Crucio checkpoint was trained on and how well; stored inside it."""

    train_videos: list[str] = field(default_factory=list)
    frames_per_video: int = 0
    clip_frames: int = 6
    crop: int = 96
    steps: int = 0
    best_step: int = 0
    rate_weight: float = 0.0
    val_loss: float = float("nan")  # MSE + rate_weight x bits per pixel, held-out clips, step 1
    val_psnr: float = float("nan")  # dB, YCbCr
    val_bpp: float = float("nan")
    gru_steps: int = 0
    gru_val_loss: float = float("nan")
    seed: int = 0
    seconds: float = 0.0
    version: int = 1


@dataclass
class CameraChunk:
    data: bytes  # what goes over the link
    keyframes: np.ndarray  # indices within the chunk
    select_s: float  # features + GRU
    encode_s: float  # autoencoder + range coder


_backbone = None


def frame_features(frames: list[np.ndarray]) -> torch.Tensor:
    """(T, FEATURES) average-pooled ImageNet ShuffleNetV2 0.5x features of RGB frames."""
    global _backbone
    from edgeva.mainstream.base import load_base, preprocess

    if _backbone is None:
        _backbone = load_base()
    with torch.no_grad():  # not inference mode: training feeds these to the GRU
        return _backbone.run(preprocess(frames), 0, 6).mean((2, 3))


class CrucioCodec:
    """A trained autoencoder + keyframe GRU."""

    def __init__(self, autoencoder: ClipAutoencoder, gru: KeyframeGRU, meta: CrucioMeta):
        self.autoencoder, self.gru, self.meta = autoencoder.eval(), gru.eval(), meta

    @property
    def spec(self) -> CodecSpec:
        return self.autoencoder.spec

    def to_clip(self, frames: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 frames -> (1, 3, T, H', W') YCbCr in [0, 1], padded to the stride."""
        x = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0
        height, width = frames[0].shape[:2]
        s = self.spec.stride
        pad_h, pad_w = -height % s, -width % s
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h, 0, 0), mode="replicate")
        return rgb_to_ycbcr(x)

    def latent_shape(self, keyframes: int, height: int, width: int) -> tuple[int, int, int, int]:
        s = self.spec.stride
        return (self.spec.latent_channels, keyframes - self.spec.depth, -(-height // s), -(-width // s))

    def keyframes(self, frames: list[np.ndarray], threshold: float | None) -> np.ndarray:
        """Indices the GRU keeps (``threshold`` None: every frame)."""
        if threshold is None or len(frames) <= self.spec.min_frames:
            return np.arange(len(frames))
        with torch.inference_mode():
            scores = self.gru(frame_features(frames).unsqueeze(0))[0].numpy()
        return select_keyframes(scores, self.spec.min_frames, threshold)

    def clip_length(self, keyframes: int) -> int:
        """Frames in the encoded clip: the keyframes, the last repeated up to the network's minimum."""
        return max(keyframes, self.spec.min_frames)

    def camera(self, frames: list[np.ndarray], *, step: float, threshold: float | None) -> CameraChunk:
        """Choose keyframes and encode them into bytes."""
        if not frames or len(frames) > 255:
            raise ValueError(f"a Crucio chunk holds 1 to 255 frames, got {len(frames)}")
        start = time.perf_counter()
        keep = self.keyframes(frames, threshold)
        select_s = time.perf_counter() - start
        start = time.perf_counter()
        clip = [frames[i] for i in keep]
        clip += [clip[-1]] * (self.clip_length(len(clip)) - len(clip))
        with torch.inference_mode():
            symbols = self.autoencoder.quantise(self.to_clip(clip), step)[0].numpy()
        header = ChunkHeader(len(frames), tuple(keep.tolist()), *frames[0].shape[:2], step)
        data = pack_chunk(symbols, header, *self.entropy_params(step))
        return CameraChunk(data, keep, select_s, time.perf_counter() - start)

    def server(self, data: bytes) -> tuple[ChunkHeader, list[np.ndarray]]:
        """Decode a chunk's bytes into its keyframes (RGB uint8 at the original size)."""
        symbols, header = unpack_chunk(
            data, lambda h: self.latent_shape(self.clip_length(len(h.keyframes)), h.height, h.width), self.entropy_params
        )
        return header, self.reconstruct(torch.from_numpy(symbols).unsqueeze(0), header)

    def entropy_params(self, step: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (location, scale) of the entropy model in units of ``step``."""
        return tuple(p.detach().numpy() for p in self.autoencoder.entropy.params(step))  # type: ignore[return-value]

    def reconstruct(self, symbols: torch.Tensor, header: ChunkHeader) -> list[np.ndarray]:
        with torch.inference_mode():
            clip = ycbcr_to_rgb(self.autoencoder.reconstruct(symbols, header.step))[0]
        clip = clip[:, :, : header.height, : header.width].clamp(0, 1)
        frames = (clip * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 3, 0).numpy()
        return [np.ascontiguousarray(f) for f in frames[: len(header.keyframes)]]


def save_crucio(codec: CrucioCodec, path: str | Path) -> None:
    torch.save({
        "format": FORMAT, "spec": asdict(codec.spec), "meta": asdict(codec.meta), "features": FEATURES,
        "gru_hidden": codec.gru.gru.hidden_size,
        "autoencoder": codec.autoencoder.state_dict(), "gru": codec.gru.state_dict(),
    }, path)


def load_crucio(path: str | Path, *, log: Callable[[str], None] | None = None) -> CrucioCodec:
    """Load a checkpoint written by :func:`save_crucio`.

    Raises:
        ModelError: missing, unreadable, foreign or damaged file.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, "crucio", FORMAT)
    try:
        spec = CodecSpec(**{**checkpoint["spec"], "widths": tuple(checkpoint["spec"]["widths"])})
        autoencoder = ClipAutoencoder(spec)
        autoencoder.load_state_dict(checkpoint["autoencoder"])
        gru = KeyframeGRU(checkpoint["features"], checkpoint["gru_hidden"])
        gru.load_state_dict(checkpoint["gru"])
        meta = CrucioMeta(**checkpoint["meta"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: crucio checkpoint is damaged ({exc.__class__.__name__})") from None
    if checkpoint["features"] != FEATURES:
        raise ModelError(f"{path}: crucio checkpoint expects {checkpoint['features']} features per frame, edgeva gives {FEATURES}")
    return CrucioCodec(autoencoder, gru, meta)
