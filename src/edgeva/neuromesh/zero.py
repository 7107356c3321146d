"""NeuroMesh's zero decoding: detect straight from the MAE encoder's latent tokens, without
painting pixels back and without the final DNN.

The paper's server can skip reconstruction and infer on the latent space; its release does
not ship that head. edgeva's: the frozen MAE encodes the received (visible) tubelets as in
reconstruction; a small head (``LatentHead``) projects their latent tokens, puts a learned
mask token at every dropped position (plus the fixed position codes), mixes them with one
transformer block, and predicts, per tubelet token and per frame of the tubelet, a grid cell
of an anchor-free detector at stride 16 of the MAE's input (YOLOX / CenterNet style):
objectness, 80 COCO class logits and a box (centre offset in the cell, log width and height
in cells). Decoding: score = sigmoid(objectness) x max class probability, then the final
DNN's own post-processing (threshold, class-aware NMS, back to frame pixels).

It is distilled from YOLOX-Nano: the targets are YOLOX-Nano's detections (score >= 0.4, the
F1 metric's threshold) on the original training frames, each assigned to the cell holding
its centre (``head_targets``); loss = objectness BCE on every cell + class cross-entropy and
box L1 on the assigned cells, normalised by their number (``head_loss``). Training lives in
:mod:`edgeva.neuromesh.train` (``train_head``).

A head is tied to the MAE it was trained on: its checkpoint stores a fingerprint of the MAE's
weights, and pairing it with another MAE is one error line.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeva.checkpoints import read_checkpoint
from edgeva.errors import CodecError, ModelError
from edgeva.models import COCO_NAMES, Detections, Letterbox, finish_detections
from edgeva.neuromesh.codec import NeuroMeshCodec, unpack_mask
from edgeva.neuromesh.model import MaeSpec, VideoMAE, position_codes, transformer_blocks
from edgeva.video import EncodedChunk, decode_chunk

__all__ = ["HeadSpec", "HeadMeta", "LatentHead", "ZeroDecoder", "head_targets", "head_loss", "mae_fingerprint", "save_head",
           "load_head", "HeadCheckpoint", "latent_raw"]

FORMAT = "edgeva-neuromesh-head"
BOX = 5  # objectness, dx, dy, log w, log h


@dataclass(frozen=True)
class HeadSpec:
    """Shape of the zero-decoding head; stored in checkpoints."""

    width: int = 96  # token width inside the head
    heads: int = 4
    depth: int = 1  # transformer blocks mixing visible latents and mask tokens
    classes: int = 80  # COCO, as YOLOX-Nano
    score_threshold: float = 0.1  # decoded candidates kept (the server's detector keeps 0.1 too; F1 counts >= 0.4)
    nms_threshold: float = 0.45  # YOLOX-Nano's


@dataclass
class HeadMeta:
    """What a head was distilled on and how well; stored inside its checkpoint."""

    train_videos: list[str] = field(default_factory=list)
    frames_per_video: int = 0
    steps: int = 0
    best_step: int = 0
    mask_ratios: list[float] = field(default_factory=list)
    untrained_val_loss: float = float("nan")  # held-out distillation loss before training
    val_loss: float = float("nan")  # best held-out distillation loss (mask ratio 0.5)
    val_f1: float = float("nan")  # held-out F1 against YOLOX-Nano on the original frames (mask ratio 0.5)
    seed: int = 0
    seconds: float = 0.0
    version: int = 1


class LatentHead(nn.Module):
    """Per-tubelet detection outputs from the encoder's visible latent tokens."""

    def __init__(self, mae: MaeSpec, spec: HeadSpec = HeadSpec()):
        super().__init__()
        self.mae, self.spec = mae, spec
        self.project = nn.Linear(mae.width, spec.width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.blocks = transformer_blocks(spec.width, spec.heads, spec.depth)
        self.norm = nn.LayerNorm(spec.width)
        self.out = nn.Linear(spec.width, mae.tubelet_frames * (BOX + spec.classes))

    def forward(self, latent: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """latent (B, K, mae width) of the ``visible`` (B, K) tubelets of a ``grid`` clip ->
        raw (B, N, tubelet_frames, 5 + classes)."""
        b, n = latent.shape[0], math.prod(grid)
        tokens = self.project(latent)
        full = self.mask_token.expand(b, n, -1).clone()
        full.scatter_(1, visible[..., None].expand(-1, -1, tokens.shape[-1]), tokens)
        hidden = self.norm(self.blocks(full + position_codes(grid, self.spec.width)))
        return self.out(hidden).reshape(b, n, self.mae.tubelet_frames, BOX + self.spec.classes)


def latent_raw(mae: VideoMAE, head: LatentHead, clips: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The head's raw output for clips (B, 3, T, h, w) with ``visible`` (B, K) tubelets: the
    MAE's embedding and encoder only (no decoder, no pixels)."""
    return head(mae.encode(mae.tokens(clips), visible), visible, mae.grid(clips))


def head_targets(frames: list[Detections], grid: tuple[int, int, int], spec: MaeSpec) -> dict[str, torch.Tensor]:
    """Targets of one clip from per-frame detections in MAE-input pixels: each box goes to the
    cell holding its centre (higher scores win a shared cell). Returns ``obj`` (N, tf) float,
    ``cls`` (N, tf) long and ``box`` (N, tf, 4): centre offset in the cell (0..1) and log size in cells."""
    slots, rows, cols = grid
    tf, p = spec.tubelet_frames, spec.patch
    obj, cls, box = torch.zeros(slots * rows * cols, tf), torch.zeros(slots * rows * cols, tf, dtype=torch.long), torch.zeros(slots * rows * cols, tf, 4)
    for f, dets in enumerate(frames):
        for i in np.argsort(dets.scores, kind="stable"):
            x1, y1, x2, y2 = (float(v) / p for v in dets.boxes[i])
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            r, c = min(rows - 1, max(0, int(cy))), min(cols - 1, max(0, int(cx)))
            n = (f // tf) * rows * cols + r * cols + c
            obj[n, f % tf], cls[n, f % tf] = 1.0, int(dets.class_ids[i])
            box[n, f % tf] = torch.tensor([cx - c, cy - r, math.log(max(x2 - x1, 1e-2)), math.log(max(y2 - y1, 1e-2))])
    return {"obj": obj, "cls": cls, "box": box}


def head_loss(raw: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Distillation loss of raw (B, N, tf, 5 + classes) against stacked :func:`head_targets`:
    objectness BCE on every cell, class cross-entropy and box L1 on the assigned ones, per
    clip normalised by its assigned cells (at least 1), averaged over the batch."""
    positive = targets["obj"] > 0.5
    obj = F.binary_cross_entropy_with_logits(raw[..., 0], targets["obj"], reduction="none").sum((1, 2))
    cls = F.cross_entropy(raw[..., BOX:][positive], targets["cls"][positive], reduction="none")
    pred_box = torch.cat([torch.sigmoid(raw[..., 1:3]), raw[..., 3:5]], dim=-1)[positive]
    box = (pred_box - targets["box"][positive]).abs().sum(-1)
    clip_of = positive.nonzero()[:, 0]
    per_clip = obj + torch.zeros_like(obj).index_add(0, clip_of, cls + box)
    return (per_clip / positive.sum((1, 2)).clamp_min(1)).mean()


def decode_frames(raw: torch.Tensor, grid: tuple[int, int, int], mae: MaeSpec, head: HeadSpec, frame_size: tuple[int, int],
                  input_size: tuple[int, int]) -> list[Detections]:
    """One clip's raw (N, tf, 5 + classes) -> Detections per frame in original frame pixels
    (``frame_size``; ``input_size`` is the MAE's (h, w))."""
    slots, rows, cols = grid
    p = mae.patch
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32), indexing="ij")
    cells = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
    letterbox = Letterbox(frame_size, input_size, (input_size[0] / frame_size[0], input_size[1] / frame_size[1]))
    frames = raw.reshape(slots, rows * cols, mae.tubelet_frames, -1).permute(0, 2, 1, 3).reshape(slots * mae.tubelet_frames, rows * cols, -1)
    out = []
    for cell_raw in frames:
        centre = (cells + torch.sigmoid(cell_raw[:, 1:3])) * p
        size = torch.exp(cell_raw[:, 3:5].clamp(max=6.0)) * p
        probs, classes = torch.softmax(cell_raw[:, BOX:], -1).max(-1)
        scores = torch.sigmoid(cell_raw[:, 0]) * probs
        out.append(finish_detections(torch.cat([centre - size / 2, centre + size / 2], -1), scores, classes, letterbox,
                                     score_threshold=head.score_threshold, nms_threshold=head.nms_threshold, names=COCO_NAMES))
    return out


def mae_fingerprint(model: VideoMAE) -> str:
    """16 hex digits of SHA-256 over the MAE's weights (names and bytes, in order)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class HeadCheckpoint:
    head: LatentHead
    meta: HeadMeta
    mae: str  # fingerprint of the MAE it was trained on
    path: str = ""


class ZeroDecoder:
    """The server of zero decoding: decoded chunk + tubelet bitmap -> detections per frame."""

    def __init__(self, codec: NeuroMeshCodec, checkpoint: HeadCheckpoint):
        found = mae_fingerprint(codec.model)
        if checkpoint.mae != found:
            raise ModelError(f"{checkpoint.path}: head trained on another MAE (fingerprint {checkpoint.mae}, this MAE {found})")
        if checkpoint.head.mae != codec.spec:
            raise ModelError(f"{checkpoint.path}: head built for another MAE shape")
        self.codec, self.head, self.meta = codec, checkpoint.head.eval(), checkpoint.meta

    def detect_frames(self, frames: list[np.ndarray], mask: np.ndarray) -> list[Detections]:
        """Detections for frames whose kept tubelets are ``mask`` (real slots, rows, cols)."""
        clips, _ = self.codec.clips(frames)
        visible = self.codec.visible_slots(mask, clips.shape[0])
        input_size = tuple(clips.shape[3:])
        out: list[Detections] = []
        with torch.inference_mode():
            for c in range(clips.shape[0]):
                idx = torch.from_numpy(np.flatnonzero(visible[c])).unsqueeze(0)
                raw = latent_raw(self.codec.model, self.head, clips[c : c + 1], idx)
                out += decode_frames(raw[0], self.codec.model.grid(clips[c : c + 1]), self.codec.spec, self.head.spec,
                                     frames[0].shape[:2], input_size)
        return out[: len(frames)]

    def server(self, chunk: EncodedChunk, mask_data: bytes) -> list[Detections]:
        """Decode the chunk and detect from the latent tokens of its kept tubelets."""
        decoded = decode_chunk(chunk)
        mask = unpack_mask(mask_data)
        if len(mask) != math.ceil(len(decoded) / self.codec.spec.tubelet_frames):
            raise CodecError(f"neuromesh mask has {len(mask)} tubelet slots for {len(decoded)} frames")
        return self.detect_frames(decoded, mask)


def save_head(checkpoint: HeadCheckpoint, path: str | Path) -> None:
    torch.save({"format": FORMAT, "mae_spec": asdict(checkpoint.head.mae), "spec": asdict(checkpoint.head.spec),
                "mae": checkpoint.mae, "meta": asdict(checkpoint.meta), "model": checkpoint.head.state_dict()}, path)


def load_head(path: str | Path) -> HeadCheckpoint:
    """Load a checkpoint written by :func:`save_head` (pair it with its MAE through :class:`ZeroDecoder`).

    Raises:
        ModelError: missing, unreadable, foreign or damaged file.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, "neuromesh head", FORMAT)
    try:
        head = LatentHead(MaeSpec(**checkpoint["mae_spec"]), HeadSpec(**checkpoint["spec"]))
        head.load_state_dict(checkpoint["model"])
        return HeadCheckpoint(head.eval(), HeadMeta(**checkpoint["meta"]), str(checkpoint["mae"]), str(path))
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: neuromesh head checkpoint is damaged ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120]})") from None
