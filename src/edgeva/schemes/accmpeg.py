"""AccMPEG as a streaming scheme: the trained selector's macroblock map per chunk, ROI encoding.

AccMPEG decides how each sent frame is encoded, which is orthogonal to which frames are sent
and at what resolution; denying it the knobs the baselines have would compare frame rates,
not encoders. So on top of its block map it takes the uniform baseline's frame-rate divisor
and resolution scale and Reducto's online frame filter (:func:`composed_knobs`); its sweep
measures the block map at full rate (the paper's AccMPEG) and on top of each of them.

``adapt_every=N`` (beyond the paper; :mod:`edgeva.accmpeg.adapt`): every N chunks the camera
also uploads one high-quality frame and the server adapts the selector to the scene, its
weights applied from the next chunk; the frame's bytes are in the chunk's upload, the weights'
in ``ChunkOutcome.downlink_bytes``. Not in the sweep: ``edgeva eval --adapt-every N``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

from edgeva.accmpeg.adapt import AdaptOptions, SelectorAdaptation
from edgeva.accmpeg.camera import DEFAULT_GAMMA, AccMPEGQuality
from edgeva.accmpeg.selector import QualitySelector, load_selector
from edgeva.net import Exchange
from edgeva.schemes.base import ChunkOutcome, SchemeContext, register_scheme
from edgeva.schemes.common import QUALITY_PAIRS, FrameSampling, load_once
from edgeva.schemes.reducto import online_filter
from edgeva.video import QualityMap

__all__ = ["AccMPEG", "ACCMPEG_ALPHAS", "COMPOSED", "cached_selector", "composed_knobs", "composed_sweep"]

ACCMPEG_ALPHAS = (0.2, 0.5, 0.8)
# (scale, fps_divisor, Reducto filter feature or None) combinations swept on top of the block
# map, each with every quality pair: resolution alone, frame rate alone, the online frame
# filter alone, and resolution with a lower frame rate (the uniform baseline's usual winners).
COMPOSED: tuple[tuple[float, int, str | None], ...] = ((0.75, 1, None), (0.5, 1, None), (1.0, 3, None), (1.0, 1, "pixel"), (0.5, 3, None))
FILTER_TARGET = 0.95  # per-segment accuracy the composed Reducto filter keeps
_loaded: dict[str, QualitySelector] = {}


def cached_selector(path: str) -> QualitySelector:
    """The selector at ``path``, loaded once per version of the file: a sweep builds one scheme
    per configuration, and the harness checks the checkpoint before any work."""
    return load_once(path, load_selector, _loaded)


def composed_knobs(scheme: FrameSampling, ctx: SchemeContext, *, fps_divisor: int, scale: float, filter_feature: str | None, filter_target: float) -> None:
    """Give a block-map scheme the frame-rate, resolution and frame-filter knobs."""
    if not 0.1 <= scale <= 1.0:
        from edgeva.errors import ConfigError

        raise ConfigError(f"{scheme.name}: scale={scale} must be in [0.1, 1]")
    scheme.fps_divisor, scheme.scale = fps_divisor, scale
    scheme.frame_filter = online_filter(ctx, filter_feature, filter_target) if filter_feature else None  # type: ignore[arg-type]


def composed_sweep(head: dict, pairs: tuple[tuple[int, int], ...] = QUALITY_PAIRS) -> list[dict]:
    """Configurations of the composed knobs for one block-map setting ``head`` and each of
    ``pairs`` (only non-default knobs are written, so labels stay short)."""
    out = []
    for scale, divisor, feature in COMPOSED:
        extra: dict = {}
        if scale != 1.0:
            extra["scale"] = scale
        if divisor != 1:
            extra["fps_divisor"] = divisor
        if feature:
            extra |= {"filter_feature": feature, "filter_target": FILTER_TARGET}
        out += [{**head, "crf_high": high, "crf_low": low, **extra} for high, low in pairs]
    return out


@register_scheme
class AccMPEG(FrameSampling):
    name = "accmpeg"
    description = "AccMPEG: camera-side selector picks high-quality macroblocks (CRF high/low ROI), with frame-rate, resolution and frame-filter knobs"
    checkpoints = ("selector",)
    profiles = True  # the composed Reducto filter profiles on other videos

    def __init__(self, ctx: SchemeContext, *, alpha: float = 0.2, fraction: float | None = None, gamma: int = DEFAULT_GAMMA, crf_high: int | None = None, crf_low: int | None = None,
                 fps_divisor: int = 1, scale: float = 1.0, filter_feature: str | None = None, filter_target: float = FILTER_TARGET,
                 adapt_every: int = 0, adapt_layers: str = "last"):
        selector = cached_selector(ctx.checkpoint("selector", self.name))
        crf_high = selector.meta.crf_high if crf_high is None else crf_high
        crf_low = selector.meta.crf_low if crf_low is None else crf_low
        chosen = {"alpha": alpha} if fraction is None else {"fraction": fraction}
        adapting = {"adapt_every": adapt_every, "adapt_layers": adapt_layers} if adapt_every else {}
        super().__init__(ctx, **chosen, gamma=gamma, crf_high=crf_high, crf_low=crf_low, fps_divisor=fps_divisor, scale=scale,
                         filter_feature=filter_feature, filter_target=filter_target, **adapting)
        self._selector, self.adaptation = selector, None
        try:
            self.adapt = AdaptOptions(every=adapt_every, layers=adapt_layers)
            self.policy = AccMPEGQuality(selector, alpha=alpha, fraction=fraction, gamma=gamma, crf_high=crf_high, crf_low=crf_low)
        except ValueError as exc:
            from edgeva.errors import ConfigError

            raise ConfigError(f"{self.name}: {exc}") from None
        composed_knobs(self, ctx, fps_divisor=fps_divisor, scale=scale, filter_feature=filter_feature, filter_target=filter_target)
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
        full_rate = [{"alpha": a, "crf_high": high, "crf_low": low} for high, low in QUALITY_PAIRS for a in ACCMPEG_ALPHAS]
        return full_rate + composed_sweep({"alpha": 0.5})

    def encode(self, images: list, first_frame: int) -> tuple[list, QualityMap, float]:
        start = time.perf_counter()
        quality = self.policy.quality(images, first_frame)  # the selector sees the first frame sent, at full size
        return images, quality, time.perf_counter() - start

    def reset(self) -> None:
        """Also, when adapting: the camera starts again from the trained selector (a copy, so
        the shared one is never changed) and the server from an empty buffer."""
        super().reset()
        self._chunks = 0
        if self.adapt.every:
            self.policy.selector = copy.deepcopy(self._selector)
            self.adaptation = SelectorAdaptation(self.policy.selector, self.ctx.server.detector, self.adapt, self.ctx.settings)

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        """A chunk as :class:`FrameSampling` sends it; then, when an adaptation round is due,
        the uploaded frame travels with the chunk's upload (its bytes and encoding time are
        the chunk's) and the new weights come back before the next chunk."""
        outcome = super().process(frames, first_frame)
        self._chunks += 1
        done = self.adaptation.after_chunk(self._chunks - 1, frames) if self.adaptation is not None else None
        if done is None:
            return outcome
        rounds = list(outcome.rounds) or [Exchange(0.0, 0, 0.0)]
        last = rounds[-1]
        rounds[-1] = Exchange(last.camera_s + done.camera_s, last.nbytes + done.up_bytes, last.server_s)
        return dataclasses.replace(outcome, rounds=rounds, adapt_up_bytes=done.up_bytes, downlink_bytes=done.down_bytes, adapt_server_s=done.server_s)
