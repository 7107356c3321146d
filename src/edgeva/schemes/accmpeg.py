"""AccMPEG as a streaming scheme: the trained selector's macroblock map per chunk, ROI encoding.

Like the uniform baseline, it may also send only every d-th frame (results of the others are
reused): AccMPEG decides how each sent frame is encoded, which is orthogonal to how many
frames are sent, and denying it the knob the baseline has would compare frame rates, not
encoders. ``fps_divisor=1`` is the paper's AccMPEG.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgeva.accmpeg.camera import DEFAULT_GAMMA, AccMPEGQuality
from edgeva.accmpeg.selector import QualitySelector, load_selector
from edgeva.assets import file_identity
from edgeva.schemes.base import SchemeContext, register_scheme
from edgeva.schemes.common import FPS_DIVISORS, QUALITY_PAIRS, FrameSampling
from edgeva.video import QualityMap

__all__ = ["AccMPEG", "ACCMPEG_ALPHAS", "cached_selector"]

ACCMPEG_ALPHAS = (0.2, 0.5, 0.8)
_loaded: dict[str, QualitySelector] = {}


def cached_selector(path: str) -> QualitySelector:
    """The selector at ``path``, loaded once per version of the file: a sweep builds one scheme
    per configuration, and the harness checks the checkpoint before any work."""
    key = file_identity(path)
    if key is None:
        return load_selector(path)  # raises the one-line "no such selector checkpoint"
    if key not in _loaded:
        _loaded[key] = load_selector(path)
    return _loaded[key]


@register_scheme
class AccMPEG(FrameSampling):
    name = "accmpeg"
    description = "AccMPEG: camera-side selector picks high-quality macroblocks (CRF high/low ROI)"
    checkpoints = ("selector",)

    def __init__(self, ctx: SchemeContext, *, alpha: float = 0.2, gamma: int = DEFAULT_GAMMA, crf_high: int | None = None, crf_low: int | None = None,
                 fps_divisor: int = 1):
        selector = cached_selector(ctx.checkpoint("selector", self.name))
        crf_high = selector.meta.crf_high if crf_high is None else crf_high
        crf_low = selector.meta.crf_low if crf_low is None else crf_low
        super().__init__(ctx, alpha=alpha, gamma=gamma, crf_high=crf_high, crf_low=crf_low, fps_divisor=fps_divisor)
        self.policy = AccMPEGQuality(selector, alpha=alpha, gamma=gamma, crf_high=crf_high, crf_low=crf_low)
        self.fps_divisor = fps_divisor
        self.reset()

    @classmethod
    def check_checkpoints(cls, checkpoints: dict[str, str], *, model: str, log: Callable[[str], None]) -> None:
        path = checkpoints["selector"]
        meta = cached_selector(path).meta  # a missing or damaged checkpoint fails before any work
        if meta.final_dnn != model:
            log(f"warning: {path} was trained on {meta.final_dnn}'s accuracy gradients; "
                f"reusing it for final DNN {model} (AccMPEG's selector reuse)")

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [
            {"alpha": a, "crf_high": high, "crf_low": low, "fps_divisor": d}
            for high, low in QUALITY_PAIRS for a in ACCMPEG_ALPHAS for d in FPS_DIVISORS
        ]

    def encode(self, images: list, first_frame: int) -> tuple[list, QualityMap, float]:
        start = time.perf_counter()
        quality = self.policy.quality(images, first_frame)  # the selector sees the first frame sent
        return images, quality, time.perf_counter() - start
