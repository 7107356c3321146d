"""NeuroMesh (dynamic patching-driven neural compression) as a streaming scheme: per chunk,
the camera's learned sampler keeps the top ``1 - mask_ratio`` of the tubelets, the chunk is
encoded with every other macroblock blanked flat plus the tubelet bitmap, and the server's
masked auto-encoder paints the dropped tubelets back before the final DNN runs on every
frame (see :mod:`edgeva.neuromesh.codec`). The trained MAE is a ``mae`` checkpoint
(``edgeva neuromesh train``; ``edgeva eval --mae PATH``).

The sweep crosses the mask ratio (the release's knob: 0.7 at deployment) with the codec's
CRF on the kept macroblocks.

``neuromesh-zero`` sends the same chunks; its server detects straight from the MAE encoder's
latent tokens with a distilled head (``mae-head`` checkpoint, ``edgeva neuromesh
train-head``; ``edgeva eval --mae-head PATH``): no decoder, no painting, no final DNN
(:mod:`edgeva.neuromesh.zero`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgeva.models import Detections
from edgeva.net import Exchange
from edgeva.neuromesh.codec import (
    CameraChunk,
    NeuroMeshCodec,
    check_mask_ratio,
    load_mae,
    pack_mask,
)
from edgeva.neuromesh.zero import HeadCheckpoint, ZeroDecoder, load_head
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import load_once

__all__ = ["NeuroMesh", "NeuroMeshZero", "cached_mae", "cached_zero", "MASK_RATIOS", "NEUROMESH_CRFS"]

MASK_RATIOS = (0.3, 0.5, 0.7)
NEUROMESH_CRFS = (22, 30, 38)

_loaded: dict[str, NeuroMeshCodec] = {}
_heads: dict[str, HeadCheckpoint] = {}


def cached_mae(path: str) -> NeuroMeshCodec:
    """The MAE at ``path``, loaded once per version of the file; tubelets must be 16 pixels
    wide on the MAE's input (the camera blanks on the codec's macroblock grid)."""
    return load_once(path, lambda p: load_mae(p, patch=16), _loaded)


def cached_zero(mae: str, head: str) -> ZeroDecoder:
    """The zero decoder of the MAE at ``mae`` and the head at ``head`` (each loaded once per
    version of its file); a head trained on another MAE is one error line."""
    return ZeroDecoder(cached_mae(mae), load_once(head, load_head, _heads))


@register_scheme
class NeuroMesh(Scheme):
    name = "neuromesh"
    description = "NeuroMesh: learned tubelet sampler keeps 1 - mask_ratio of the tubelets; server MAE paints the rest"
    checkpoints = ("mae",)

    def __init__(self, ctx: SchemeContext, *, mask_ratio: float = 0.7, crf: int = 30):
        super().__init__(ctx, mask_ratio=mask_ratio, crf=crf)
        self.mask_ratio, self.crf = check_mask_ratio(mask_ratio), crf
        self.codec = cached_mae(ctx.checkpoint("mae", self.name))
        self.kept_shares: list[float] = []  # per chunk, for inspection

    @classmethod
    def check_checkpoints(cls, checkpoints: dict[str, str], *, model: str, log: Callable[[str], None]) -> None:
        cached_mae(checkpoints["mae"])  # a missing, damaged or foreign file fails before any work

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"mask_ratio": r, "crf": crf} for r in MASK_RATIOS for crf in NEUROMESH_CRFS]

    def reset(self) -> None:
        self.kept_shares = []

    def serve(self, sent: CameraChunk) -> list[Detections]:
        """The server: reconstruct, then the final DNN on every frame."""
        results, _ = self.ctx.server.infer(self.codec.server(sent.chunk, pack_mask(sent.mask)))
        return results

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        sent = self.codec.camera(frames, mask_ratio=self.mask_ratio, crf=self.crf, settings=self.ctx.settings, first_frame=first_frame)
        start = time.perf_counter()
        results = self.serve(sent)
        server_s = time.perf_counter() - start
        self.kept_shares.append(float(sent.mask.mean()))
        exchange = Exchange(sent.select_s + sent.encode_s, sent.data_bytes, server_s)
        return ChunkOutcome(first_frame, len(frames), [exchange], results, len(frames), float(sent.mask.mean()))


@register_scheme
class NeuroMeshZero(NeuroMesh):
    name = "neuromesh-zero"
    description = "NeuroMesh with zero decoding: the same chunks; the server detects from the MAE encoder's latent tokens (no painting, no final DNN)"
    checkpoints = ("mae", "mae-head")

    def __init__(self, ctx: SchemeContext, *, mask_ratio: float = 0.7, crf: int = 30):
        super().__init__(ctx, mask_ratio=mask_ratio, crf=crf)
        self.zero = cached_zero(ctx.checkpoint("mae", self.name), ctx.checkpoint("mae-head", self.name))

    @classmethod
    def check_checkpoints(cls, checkpoints: dict[str, str], *, model: str, log: Callable[[str], None]) -> None:
        cached_zero(checkpoints["mae"], checkpoints["mae-head"])
        if model != "yolox-nano":
            log(f"neuromesh-zero: its head was distilled from YOLOX-Nano, not {model}; F1 is against {model}")

    def serve(self, sent: CameraChunk) -> list[Detections]:
        """The server: detections from the latent tokens of the kept tubelets."""
        return self.zero.server(sent.chunk, pack_mask(sent.mask))
