"""AccMPEG as a streaming scheme: the trained selector's macroblock map per chunk, ROI encoding."""

from __future__ import annotations

import time

from edgeva.accmpeg.camera import DEFAULT_GAMMA, AccMPEGQuality
from edgeva.accmpeg.selector import QualitySelector, load_selector
from edgeva.errors import ConfigError
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import QUALITY_PAIRS, send_frames

__all__ = ["AccMPEG", "ACCMPEG_ALPHAS"]

ACCMPEG_ALPHAS = (0.2, 0.5, 0.8)
_loaded: dict[str, QualitySelector] = {}


@register_scheme
class AccMPEG(Scheme):
    name = "accmpeg"
    description = "AccMPEG: camera-side selector picks high-quality macroblocks (CRF high/low ROI)"

    def __init__(self, ctx: SchemeContext, *, alpha: float = 0.2, gamma: int = DEFAULT_GAMMA, crf_high: int | None = None, crf_low: int | None = None):
        if not ctx.selector_path:
            raise ConfigError("scheme accmpeg needs a selector checkpoint (--selector)")
        if ctx.selector_path not in _loaded:
            _loaded[ctx.selector_path] = load_selector(ctx.selector_path)
        selector = _loaded[ctx.selector_path]
        crf_high = selector.meta.crf_high if crf_high is None else crf_high
        crf_low = selector.meta.crf_low if crf_low is None else crf_low
        super().__init__(ctx, alpha=alpha, gamma=gamma, crf_high=crf_high, crf_low=crf_low)
        self.policy = AccMPEGQuality(selector, alpha=alpha, gamma=gamma, crf_high=crf_high, crf_low=crf_low)

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"alpha": a, "crf_high": high, "crf_low": low} for high, low in QUALITY_PAIRS for a in ACCMPEG_ALPHAS]

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        start = time.perf_counter()
        quality = self.policy.quality(frames, first_frame)
        selector_s = time.perf_counter() - start
        exchange, results = send_frames(self.ctx, frames, quality, first_frame, camera_s=selector_s)
        return ChunkOutcome(first_frame, len(frames), [exchange], results, len(frames), quality.high_fraction)
