"""Reducto (Li et al., SIGCOMM 2020): camera-side frame filtering on low-level frame
differences; a dropped frame reuses the last result. Idealized like AWStream: the feature and
threshold per video come from a sweep with free profiling."""

from __future__ import annotations

import time

from edgeva.filtering import FEATURES, FrameFilter
from edgeva.models import Detections
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import carry_forward, send_frames

__all__ = ["Reducto"]


@register_scheme
class Reducto(Scheme):
    name = "reducto"
    description = "Reducto: send a frame only when it differs enough from the last sent one"

    def __init__(self, ctx: SchemeContext, *, feature: str = "pixel", threshold: float = 0.01, crf: int = 30):
        super().__init__(ctx, feature=feature, threshold=threshold, crf=crf)
        self.filter = FrameFilter(feature, threshold)  # type: ignore[arg-type]
        self.crf = crf
        self.reset()

    def reset(self) -> None:
        self.filter.reset()
        self._last = Detections.empty()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"feature": f, "threshold": t, "crf": crf} for crf in (26, 34) for f in FEATURES for t in (0.005, 0.02, 0.05)]

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        start = time.perf_counter()
        keep = [i for i, f in enumerate(frames) if self.filter.check(f)]
        filter_s = time.perf_counter() - start
        exchange, results = send_frames(self.ctx, [frames[i] for i in keep], self.crf, first_frame, camera_s=filter_s)
        detections, self._last = carry_forward(dict(zip(keep, results, strict=True)), len(frames), self._last)
        return ChunkOutcome(first_frame, len(frames), [exchange], detections, len(keep))
