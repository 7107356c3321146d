"""The trained NeuroMesh MAE as a codec: camera side (sampler -> kept tubelets -> bytes),
server side (bytes -> frames with the dropped tubelets painted in), its checkpoint file, and
a chunk's content complexity.

Camera, per chunk: frames resized to the MAE's input (at most ``frame_width`` wide) are cut
into clips of ``clip_frames`` frames (the last padded by repeating its last frame); the
sampler scores every tubelet and the top ``1 - mask_ratio`` of each clip's real tubelets are
kept. The original frames are encoded with edgeva's codec, every macroblock that no kept
tubelet covers blanked flat grey (which costs the encoder next to nothing), and the tubelet
mask travels beside the video as a bitmap (1 bit per tubelet). The release pickles float32
latents and patches instead, which is larger than the raw frames.

Server: decode the chunk, resize to the MAE's input, run the MAE with the received tubelets
visible; dropped tubelets take the MAE's prediction, upscaled into the blanked macroblocks of
the decoded full-size frames (kept macroblocks stay as decoded).
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from edgeva.checkpoints import read_checkpoint
from edgeva.errors import CodecError, ConfigError, ModelError
from edgeva.neuromesh.model import MaeSpec, VideoMAE, from_tubelets, to_tubelets
from edgeva.video import MB, EncodedChunk, EncoderSettings, decode_chunk, encode_chunk
from edgeva.video.blocks import grid_shape

__all__ = [
    "NeuroMeshMeta", "NeuroMeshCodec", "CameraChunk", "ContentComplexity", "save_mae", "load_mae", "check_mask_ratio",
    "pack_mask", "unpack_mask",
]

FORMAT = "edgeva-neuromesh-mae"
BLANK = 128


def check_mask_ratio(mask_ratio: float) -> float:
    """``mask_ratio`` if it is in (0, 1), else a one-line ConfigError."""
    if not isinstance(mask_ratio, int | float) or not 0.0 < float(mask_ratio) < 1.0:
        raise ConfigError(f"mask ratio {mask_ratio!r}: must be strictly between 0 and 1")
    return float(mask_ratio)


@dataclass
class NeuroMeshMeta:
    """What a NeuroMesh checkpoint was trained on and how well; stored inside it."""

    train_videos: list[str] = field(default_factory=list)
    frames_per_video: int = 0
    steps: int = 0
    best_step: int = 0
    mask_ratio: float = 0.8  # in training
    val_loss: float = float("nan")  # held-out reconstruction + stats loss at the training mask ratio (top-k)
    val_psnr: float = float("nan")  # dB on held-out dropped tubelets (MAE resolution)
    val_flat_psnr: float = float("nan")  # dB of flat grey on the same tubelets
    seed: int = 0
    seconds: float = 0.0
    reward: str = "pixel"  # the sampler's reward in training: pixel | detection
    version: int = 1


@dataclass
class CameraChunk:
    chunk: EncodedChunk  # the blanked frames, encoded
    mask: np.ndarray  # (slots, rows, cols) bool: kept tubelets on the MAE grid
    select_s: float  # resize + sampler
    encode_s: float  # blanking + encoder

    @property
    def data_bytes(self) -> int:
        """Bytes on the link: the encoded video and the tubelet bitmap (with its 5-byte header)."""
        return self.chunk.nbytes + len(pack_mask(self.mask))


@dataclass(frozen=True)
class ContentComplexity:
    """How hard a chunk is to compress by dropping tubelets (for the cluster balancer)."""

    probability_share: float  # share of tubelets holding 90% of the sampler's probability (low: a few regions matter)
    kept_share: float  # share of tubelets sent at this mask ratio
    dropped_mse: float  # MAE's mean squared error on the dropped tubelets (pixels in [0, 1])


def pack_mask(mask: np.ndarray) -> bytes:
    """(slots, rows, cols) bool -> 5-byte shape header + packed bits."""
    slots, rows, cols = mask.shape
    return struct.pack("<BHH", slots, rows, cols) + np.packbits(mask.reshape(-1)).tobytes()


def unpack_mask(data: bytes) -> np.ndarray:
    if len(data) < 5:
        raise CodecError("neuromesh mask: truncated header")
    slots, rows, cols = struct.unpack("<BHH", data[:5])
    n = slots * rows * cols
    if len(data) != 5 + math.ceil(n / 8):
        raise CodecError(f"neuromesh mask: {len(data) - 5} bytes for {n} tubelets")
    return np.unpackbits(np.frombuffer(data[5:], np.uint8))[:n].astype(bool).reshape(slots, rows, cols)


class NeuroMeshCodec:
    """A trained MAE with its sampler."""

    def __init__(self, model: VideoMAE, meta: NeuroMeshMeta):
        self.model, self.meta = model.eval(), meta

    @property
    def spec(self) -> MaeSpec:
        return self.model.spec

    # -- shared geometry -------------------------------------------------------------
    def clips(self, frames: list[np.ndarray]) -> tuple[torch.Tensor, int]:
        """Frames -> (clips (C, 3, clip_frames, h, w) in [0, 1] at the MAE's size, real tubelet slots)."""
        h, w = self.spec.frame_size(*frames[0].shape[:2])
        small = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
        length = self.spec.clip_frames
        small += [small[-1]] * (-len(small) % length)
        x = torch.from_numpy(np.stack(small)).float().div_(255.0)  # (T, h, w, 3)
        x = x.reshape(-1, length, h, w, 3).permute(0, 4, 1, 2, 3).contiguous()
        return x, math.ceil(len(frames) / self.spec.tubelet_frames)

    def _slot_grid(self, clips: torch.Tensor) -> tuple[int, int, int]:
        return self.model.grid(clips)

    def choose(self, frames: list[np.ndarray], mask_ratio: float) -> tuple[np.ndarray, torch.Tensor]:
        """(kept-tubelet mask (real slots, rows, cols), sampler probabilities (C, N))."""
        mask_ratio = check_mask_ratio(mask_ratio)
        clips, real = self.clips(frames)
        with torch.inference_mode():
            probs = self.model.keep_probabilities(clips)
        slots, rows, cols = self._slot_grid(clips)
        per_slot = rows * cols
        mask = np.zeros((clips.shape[0] * slots, rows, cols), bool)
        for c in range(clips.shape[0]):
            real_here = min(slots, real - c * slots)
            n = real_here * per_slot
            keep = max(1, int(round((1.0 - mask_ratio) * n)))
            idx = torch.topk(probs[c, :n], keep).indices.numpy()
            flat = np.zeros(slots * per_slot, bool)
            flat[idx] = True
            mask[c * slots : (c + 1) * slots] = flat.reshape(slots, rows, cols)
        return mask[:real], probs

    def block_mask(self, tubelets: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """A slot's (rows, cols) tubelet mask -> the macroblocks of the full frame it covers."""
        height, width = frame_size
        pixels = cv2.resize(tubelets.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        rows, cols = grid_shape(height, width)
        padded = np.zeros((rows * MB, cols * MB), np.uint8)
        padded[:height, :width] = pixels
        return padded.reshape(rows, MB, cols, MB).max(axis=(1, 3)).astype(bool)

    # -- camera ----------------------------------------------------------------------
    def camera(self, frames: list[np.ndarray], *, mask_ratio: float, crf: int, settings: EncoderSettings,
               first_frame: int = 0) -> CameraChunk:
        """Choose tubelets and encode the chunk with the rest blanked."""
        if not frames or len(frames) > 2 * 255:
            raise ValueError(f"a NeuroMesh chunk holds 1 to 510 frames, got {len(frames)}")
        start = time.perf_counter()
        mask, _ = self.choose(frames, mask_ratio)
        select_s = time.perf_counter() - start
        start = time.perf_counter()
        blanked = []
        for i, frame in enumerate(frames):
            keep = self.block_mask(mask[i // self.spec.tubelet_frames], frame.shape[:2])
            pixels = np.repeat(np.repeat(keep, MB, 0), MB, 1)[: frame.shape[0], : frame.shape[1]]
            out = np.full_like(frame, BLANK)
            out[pixels] = frame[pixels]
            blanked.append(out)
        chunk = encode_chunk(blanked, crf, settings, first_frame=first_frame)
        return CameraChunk(chunk, mask, select_s, time.perf_counter() - start)

    # -- server ----------------------------------------------------------------------
    def reconstruct_clips(self, clips: torch.Tensor, visible: np.ndarray) -> torch.Tensor:
        """Clips with every tubelet not in ``visible`` ((C, N) bool) replaced by the MAE's prediction."""
        with torch.inference_mode():
            out_clips = []
            for c in range(clips.shape[0]):
                clip = clips[c : c + 1]
                idx = torch.from_numpy(np.flatnonzero(visible[c])).unsqueeze(0)
                pred = self.model(clip, visible=idx).pixels()
                tokens = to_tubelets(clip, self.spec).clone()
                dropped = torch.from_numpy(~visible[c])
                tokens[0, dropped] = pred[0, dropped]
                out_clips.append(from_tubelets(tokens, self.spec, self.model.grid(clip)))
        return torch.cat(out_clips)

    def visible_slots(self, mask: np.ndarray, clips: int) -> np.ndarray:
        """(C, N) visibility of every clip's tubelets: padded slots copy the last real slot."""
        slots = self.spec.clip_frames // self.spec.tubelet_frames
        full = np.concatenate([mask, np.repeat(mask[-1:], clips * slots - len(mask), axis=0)])
        return full.reshape(clips, -1)

    def server(self, chunk: EncodedChunk, mask_data: bytes) -> list[np.ndarray]:
        """Decode and paint in the dropped tubelets: RGB uint8 frames at the original size."""
        decoded = decode_chunk(chunk)
        mask = unpack_mask(mask_data)
        if len(mask) != math.ceil(len(decoded) / self.spec.tubelet_frames):
            raise CodecError(f"neuromesh mask has {len(mask)} tubelet slots for {len(decoded)} frames")
        clips, _ = self.clips(decoded)
        filled = self.reconstruct_clips(clips, self.visible_slots(mask, clips.shape[0]))
        small = (filled.permute(0, 2, 3, 4, 1).reshape(-1, *filled.shape[3:], 3) * 255.0 + 0.5).to(torch.uint8).numpy()
        out = []
        for i, frame in enumerate(decoded):
            height, width = frame.shape[:2]
            keep = self.block_mask(mask[i // self.spec.tubelet_frames], (height, width))
            pixels = np.repeat(np.repeat(keep, MB, 0), MB, 1)[:height, :width]
            painted = cv2.resize(small[i], (width, height), interpolation=cv2.INTER_LINEAR)
            painted[pixels] = frame[pixels]
            out.append(painted)
        return out

    # -- content complexity ------------------------------------------------------------
    def complexity(self, frames: list[np.ndarray], mask_ratio: float = 0.7) -> ContentComplexity:
        """How concentrated the sampler's choice is and how well the MAE paints what is dropped
        (on the original frames, no codec): the figure issue 15's balancer weighs cameras by."""
        mask, probs = self.choose(frames, mask_ratio)
        clips, real = self.clips(frames)
        visible = self.visible_slots(mask, clips.shape[0])
        filled = self.reconstruct_clips(clips, visible)
        per_slot = mask[0].size
        err = (to_tubelets(filled, self.spec) - to_tubelets(clips, self.spec)).pow(2).mean(-1).numpy()
        real_rows = np.arange(visible.size).reshape(visible.shape) < real * per_slot
        shares = []
        for c in range(clips.shape[0]):
            n = int(real_rows[c].sum())
            p = np.sort(probs[c, :n].numpy())[::-1]
            p = np.cumsum(p / p.sum())
            shares.append((int(np.searchsorted(p, 0.9)) + 1) / n)
        dropped = real_rows & ~visible
        return ContentComplexity(float(np.mean(shares)), float(mask.mean()),
                                 float(err[dropped].mean()) if dropped.any() else 0.0)


def save_mae(codec: NeuroMeshCodec, path: str | Path) -> None:
    torch.save({"format": FORMAT, "spec": asdict(codec.spec), "meta": asdict(codec.meta), "model": codec.model.state_dict()}, path)


def load_mae(path: str | Path, *, clip_frames: int | None = None, patch: int | None = None) -> NeuroMeshCodec:
    """Load a checkpoint written by :func:`save_mae`; ``clip_frames`` / ``patch``, when given,
    must match the checkpoint's.

    Raises:
        ModelError: missing, unreadable, foreign, damaged or mismatched file.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, "neuromesh MAE", FORMAT)
    try:
        spec = MaeSpec(**checkpoint["spec"])
        spec.check()
        model = VideoMAE(spec)
        model.load_state_dict(checkpoint["model"])
        meta = NeuroMeshMeta(**checkpoint["meta"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: neuromesh MAE checkpoint is damaged ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
    if clip_frames is not None and spec.clip_frames != clip_frames:
        raise ModelError(f"{path}: MAE trained on {spec.clip_frames}-frame clips, {clip_frames}-frame clips expected")
    if patch is not None and spec.patch != patch:
        raise ModelError(f"{path}: MAE tubelets are {spec.patch}x{spec.patch} pixels, {patch}x{patch} expected")
    if spec.tubelet_frames != 2:
        raise ModelError(f"{path}: MAE tubelets span {spec.tubelet_frames} frames, edgeva's NeuroMesh uses 2")
    return NeuroMeshCodec(model, meta)

