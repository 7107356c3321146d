"""Vigil (Zhang et al., MobiCom 2015): the camera runs a cheap detector on every frame and
sends only its object regions, at high quality, on a blank background."""

from __future__ import annotations

import time

import numpy as np

from edgeva.errors import ConfigError
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import blank_outside, send_frames
from edgeva.video import boxes_to_mask

__all__ = ["Vigil"]


@register_scheme
class Vigil(Scheme):
    name = "vigil"
    description = "Vigil: camera-side FastestDet boxes at high quality, background blanked"

    def __init__(self, ctx: SchemeContext, *, score: float = 0.3, crf: int = 30, gamma: int = 1):
        if ctx.camera_detector is None:
            raise ConfigError("scheme vigil needs a camera-side detector")
        super().__init__(ctx, score=score, crf=crf, gamma=gamma)
        self.score, self.crf, self.gamma = score, crf, gamma
        self.detector = ctx.camera_detector()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"score": s, "crf": crf} for crf in (24, 30) for s in (0.1, 0.3, 0.5)]

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        start = time.perf_counter()
        masks = [boxes_to_mask(d.above(self.score).boxes, self.ctx.frame_size, gamma=self.gamma) for d in self.detector.detect(frames)]
        images = [blank_outside(f, m) for f, m in zip(frames, masks, strict=True)]
        camera_s = time.perf_counter() - start
        exchange, results = send_frames(self.ctx, images, self.crf, first_frame, camera_s=camera_s)
        return ChunkOutcome(first_frame, len(frames), [exchange], results, len(frames), float(np.mean([m.mean() for m in masks])))
