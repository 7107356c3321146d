"""Crucio (Wu et al., INFOCOM 2024) as a streaming scheme: per chunk, a GRU picks keyframes,
a learned 3D-convolutional autoencoder codes them as one clip into range-coded bytes, the
server decodes them and runs the final DNN; every other frame takes the result of its
nearest keyframe (the frame it is most like, which Crucio's representativeness objective
trains the selector for). The trained codec is a ``crucio`` checkpoint
(``edgeva crucio train``; ``edgeva eval --crucio PATH``).

The sweep tries the quantisation step (1: as trained; 4: a quarter as many levels, fewer
bytes) with the GRU's selection, and step 1 with every frame sent (the selector off), as
Crucio's evaluation separates its codec from its filter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgeva.crucio.codec import CrucioCodec, load_crucio
from edgeva.net import Exchange
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import load_once

__all__ = ["Crucio", "cached_codec", "nearest_keyframe"]

_loaded: dict[str, CrucioCodec] = {}


def cached_codec(path: str) -> CrucioCodec:
    """The codec at ``path``, loaded once per version of the file."""
    return load_once(path, load_crucio, _loaded)


def nearest_keyframe(count: int, keyframes: list[int]) -> list[int]:
    """For each of ``count`` frames, the keyframe closest in time (the earlier one on a tie)."""
    keys = np.asarray(keyframes)
    return [int(keys[np.argmin(np.abs(keys - i))]) for i in range(count)]


@register_scheme
class Crucio(Scheme):
    name = "crucio"
    description = "Crucio: GRU keyframe filter + learned 3D-conv autoencoder codec with range-coded latent"
    checkpoints = ("crucio",)

    def __init__(self, ctx: SchemeContext, *, step: float = 1.0, keyframes: str = "gru"):
        if keyframes not in ("gru", "all"):
            raise ValueError(f"keyframes={keyframes!r}: choose gru or all")
        super().__init__(ctx, step=step, keyframes=keyframes)
        self.codec = cached_codec(ctx.checkpoint("crucio", self.name))
        self.step, self.threshold = step, (0.5 if keyframes == "gru" else None)  # 0.5: the release rounds normalised scores

    @classmethod
    def check_checkpoints(cls, checkpoints: dict[str, str], *, model: str, log: Callable[[str], None]) -> None:
        cached_codec(checkpoints["crucio"])  # a missing, damaged or foreign file fails before any work

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"step": 1.0, "keyframes": "gru"}, {"step": 4.0, "keyframes": "gru"}, {"step": 1.0, "keyframes": "all"}]

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        sent = self.codec.camera(frames, step=self.step, threshold=self.threshold)
        start = time.perf_counter()
        header, decoded = self.codec.server(sent.data)
        results, _ = self.ctx.server.infer(decoded)
        server_s = time.perf_counter() - start
        by_key = dict(zip(header.keyframes, results, strict=True))
        detections = [by_key[k] for k in nearest_keyframe(len(frames), list(header.keyframes))]
        exchange = Exchange(sent.select_s + sent.encode_s, len(sent.data), server_s)
        return ChunkOutcome(first_frame, len(frames), [exchange], detections, len(header.keyframes))
