"""AWStream, idealized: one encoding configuration (CRF, resolution, frame rate) for a whole
video, picked from a full sweep with free profiling (Zhang et al., SIGCOMM 2018)."""

from __future__ import annotations

from edgeva.schemes.base import SchemeContext, register_scheme
from edgeva.schemes.common import FPS_DIVISORS, SCALES, FrameSampling

__all__ = ["Uniform", "UNIFORM_CRFS"]

UNIFORM_CRFS = (22, 26, 30, 34, 38, 42, 46)


@register_scheme
class Uniform(FrameSampling):
    name = "uniform"
    description = "AWStream (idealized): one CRF / resolution / frame rate per video, best from a sweep"

    def __init__(self, ctx: SchemeContext, *, crf: int = 36, scale: float = 1.0, fps_divisor: int = 1):
        super().__init__(ctx, crf=crf, scale=scale, fps_divisor=fps_divisor)
        self.crf, self.scale, self.fps_divisor = crf, scale, fps_divisor
        self.reset()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [
            {"crf": crf, "scale": scale, "fps_divisor": d}
            for crf in UNIFORM_CRFS for scale in SCALES for d in FPS_DIVISORS
        ]

    def encode(self, images: list, first_frame: int) -> tuple[list, int, float]:
        return images, self.crf, 0.0  # FrameSampling resizes by ``scale``
