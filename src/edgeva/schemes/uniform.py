"""AWStream, idealized: one encoding configuration (CRF, resolution, frame rate) for a whole
video, picked from a full sweep with free profiling (Zhang et al., SIGCOMM 2018)."""

from __future__ import annotations

import time

from edgeva.models import Detections
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import FPS_DIVISORS, carry_forward, sampled, send_frames
from edgeva.video import resize_even

__all__ = ["Uniform", "UNIFORM_CRFS"]

UNIFORM_CRFS = (22, 26, 30, 34, 38, 42, 46)


@register_scheme
class Uniform(Scheme):
    name = "uniform"
    description = "AWStream (idealized): one CRF / resolution / frame rate per video, best from a sweep"

    def __init__(self, ctx: SchemeContext, *, crf: int = 36, scale: float = 1.0, fps_divisor: int = 1):
        super().__init__(ctx, crf=crf, scale=scale, fps_divisor=fps_divisor)
        self.crf, self.scale, self.fps_divisor = crf, scale, fps_divisor
        self.reset()

    def reset(self) -> None:
        self._last = Detections.empty()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [
            {"crf": crf, "scale": scale, "fps_divisor": d}
            for crf in UNIFORM_CRFS for scale in (1.0, 0.75, 0.5) for d in FPS_DIVISORS
        ]

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        keep = sampled(first_frame, len(frames), self.fps_divisor)
        start = time.perf_counter()
        images = [frames[i] if self.scale == 1.0 else resize_even(frames[i], self.scale) for i in keep]
        resize_s = time.perf_counter() - start
        exchange, results = send_frames(self.ctx, images, self.crf, first_frame, camera_s=resize_s)
        detections, self._last = carry_forward(dict(zip(keep, results, strict=True)), len(frames), self._last)
        return ChunkOutcome(first_frame, len(frames), [exchange] if keep else [], detections, len(keep))
