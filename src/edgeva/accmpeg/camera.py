"""The camera side of a stream: choose a quality map per chunk, encode the chunk.

A *quality policy* maps the frames of a chunk to a :class:`QualityMap` (or one CRF).
:class:`ChunkCamera` runs a policy and the encoder chunk by chunk and measures both, which
is all a camera does in AccMPEG: the selector once per chunk of k frames, on the chunk's
first frame, then standard ROI encoding of the k frames with that map.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgeva.accmpeg.selector import QualitySelector
from edgeva.video import EncodedChunk, EncoderSettings, QualityMap, dilate, encode_chunk

__all__ = [
    "QualityPolicy",
    "UniformQuality",
    "AccMPEGQuality",
    "CameraChunk",
    "ChunkCamera",
    "register_policy",
    "create_policy",
    "list_policies",
    "DEFAULT_GAMMA",
]

# Dilation of the selected blocks, in blocks. The paper's 5 was for 1280x720 frames; chosen
# for edgeva's sample videos (480x270 to 768x432) by measurement, see README ("gamma").
DEFAULT_GAMMA = 1


class QualityPolicy(Protocol):
    """Chooses the encoding quality of one chunk from its frames."""

    def quality(self, frames: Sequence[np.ndarray], first_frame: int) -> QualityMap | int: ...


@dataclass
class UniformQuality:
    """One CRF for every block of every chunk (the standard codec)."""

    crf: int

    def quality(self, frames: Sequence[np.ndarray], first_frame: int) -> int:
        return self.crf


@dataclass
class AccMPEGQuality:
    """AccMPEG's online quality assignment (dissertation ch. 4).

    The selector runs on the chunk's first frame; blocks with probability >= ``alpha`` are
    high quality, grown by ``gamma`` blocks; the chunk is encoded with (``crf_high``,
    ``crf_low``).
    """

    selector: QualitySelector
    alpha: float = 0.2
    gamma: int = DEFAULT_GAMMA
    crf_high: int = 30
    crf_low: int = 40

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha}: must be in [0, 1]")
        if self.gamma < 0:
            raise ValueError(f"gamma={self.gamma}: must be >= 0")
        self.last_probabilities: np.ndarray | None = None

    def quality(self, frames: Sequence[np.ndarray], first_frame: int) -> QualityMap:
        probabilities = self.selector.predict(frames[:1])[0]
        self.last_probabilities = probabilities
        return QualityMap.two_level(dilate(probabilities >= self.alpha, self.gamma), crf_high=self.crf_high, crf_low=self.crf_low)


@dataclass
class CameraChunk:
    encoded: EncodedChunk
    quality: QualityMap | int
    policy_s: float  # choosing the quality (the selector, for AccMPEG)
    encode_s: float  # the encoder

    @property
    def camera_s(self) -> float:
        return self.policy_s + self.encode_s

    @property
    def high_fraction(self) -> float:
        return self.quality.high_fraction if isinstance(self.quality, QualityMap) else 0.0


class ChunkCamera:
    """Encode a stream chunk by chunk with a quality policy; every chunk decodes alone."""

    def __init__(self, policy: QualityPolicy, settings: EncoderSettings = EncoderSettings()):
        self.policy = policy
        self.settings = settings

    def encode(self, frames: Sequence[np.ndarray], first_frame: int) -> CameraChunk:
        start = time.perf_counter()
        quality = self.policy.quality(frames, first_frame)
        policy_s = time.perf_counter() - start
        encoded = encode_chunk(frames, quality, self.settings, first_frame=first_frame)
        return CameraChunk(encoded, quality, policy_s, encoded.encode_s)


_POLICIES: dict[str, Callable[..., QualityPolicy]] = {}


def register_policy(name: str) -> Callable[[Callable[..., QualityPolicy]], Callable[..., QualityPolicy]]:
    """Make a quality policy available by name (e.g. to camera configs); names are unique."""

    def wrap(factory: Callable[..., QualityPolicy]) -> Callable[..., QualityPolicy]:
        if name in _POLICIES:
            raise ValueError(f"quality policy {name!r} is already registered")
        _POLICIES[name] = factory
        return factory

    return wrap


def list_policies() -> list[str]:
    return sorted(_POLICIES)


def create_policy(name: str, **kwargs) -> QualityPolicy:
    from edgeva.errors import ConfigError

    if name not in _POLICIES:
        raise ConfigError(f"scheme {name!r}: unknown (available: {', '.join(list_policies())})")
    return _POLICIES[name](**kwargs)


@register_policy("uniform")
def _uniform(*, crf: int = 35) -> UniformQuality:
    return UniformQuality(crf)


@register_policy("accmpeg")
def _accmpeg(*, selector: str, alpha: float = 0.2, gamma: int = DEFAULT_GAMMA, crf_high: int | None = None,
             crf_low: int | None = None, final_dnn: str | None = None, warn=None) -> AccMPEGQuality:
    from edgeva.accmpeg.selector import load_selector

    model = load_selector(selector, final_dnn=final_dnn, warn=warn)
    return AccMPEGQuality(
        model, alpha=alpha, gamma=gamma,
        crf_high=model.meta.crf_high if crf_high is None else crf_high,
        crf_low=model.meta.crf_low if crf_low is None else crf_low,
    )
