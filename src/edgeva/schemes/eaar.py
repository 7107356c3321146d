"""EAAR-like object-based ROI (Liu et al., MobiCom 2019): the server's detections on the
previous chunk, grown by a block, are encoded at high quality and the background at low
quality; the first chunk goes at high quality. As in the AccMPEG evaluation, EAAR gets the
server's latest boxes for free instead of tracking them on the camera."""

from __future__ import annotations

from edgeva.models import Detections
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import QUALITY_PAIRS, send_frames
from edgeva.video import QualityMap, boxes_to_mask

__all__ = ["EAAR"]


@register_scheme
class EAAR(Scheme):
    name = "eaar"
    description = "EAAR: previous chunk's server boxes at high quality, background low"

    def __init__(self, ctx: SchemeContext, *, crf_high: int = 30, crf_low: int = 40, gamma: int = 1, score: float = 0.3):
        super().__init__(ctx, crf_high=crf_high, crf_low=crf_low, gamma=gamma, score=score)
        self.crf_high, self.crf_low, self.gamma, self.score = crf_high, crf_low, gamma, score
        self.reset()

    def reset(self) -> None:
        self._previous: Detections | None = None

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"crf_high": high, "crf_low": low, "gamma": g} for high, low in QUALITY_PAIRS for g in (1, 2)]

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        if self._previous is None:
            quality: QualityMap | int = self.crf_high
        else:
            mask = boxes_to_mask(self._previous.above(self.score).boxes, self.ctx.frame_size, gamma=self.gamma)
            quality = QualityMap.two_level(mask, crf_high=self.crf_high, crf_low=self.crf_low)
        exchange, results = send_frames(self.ctx, frames, quality, first_frame)
        self._previous = results[-1]
        high = quality.high_fraction if isinstance(quality, QualityMap) else 1.0
        return ChunkOutcome(first_frame, len(frames), [exchange], results, len(frames), high)
