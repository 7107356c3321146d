"""The AccMPEG camera: the selector's quality map per chunk, then standard ROI encoding.

:class:`AccMPEGQuality` is the ``accmpeg`` quality policy (see :mod:`edgeva.quality`);
:class:`ChunkCamera` runs any policy and the encoder chunk by chunk and times both, which is
all a camera does in AccMPEG: the selector once per chunk of k frames, on the chunk's first
frame, then ROI encoding of the k frames with that map.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgeva.accmpeg.selector import QualitySelector, scale_mismatch
from edgeva.quality import QualityPolicy
from edgeva.video import (
    EncodedChunk,
    EncoderSettings,
    QualityMap,
    dilate,
    encode_chunk,
    grid_shape,
    resize_even,
)

__all__ = ["AccMPEGQuality", "CameraChunk", "ChunkCamera", "DEFAULT_GAMMA", "selector_scale"]

# Dilation of the selected blocks, in blocks. The paper's 5 was for 1280x720 frames; chosen
# for edgeva's sample videos (480x270 to 768x432) by measurement, see README ("The camera").
DEFAULT_GAMMA = 1


@dataclass
class AccMPEGQuality:
    """AccMPEG's online quality assignment (dissertation ch. 4).

    The selector runs on the chunk's first frame; blocks with probability >= ``alpha`` are
    high quality (or, calibrated, the ``fraction`` of the frame's blocks with the highest
    probabilities, whatever their values), grown by ``gamma`` blocks; the chunk is encoded
    with (``crf_high``, ``crf_low``).
    """

    selector: QualitySelector
    alpha: float = 0.2
    fraction: float | None = None  # calibrated selection: this share of the blocks per frame, instead of alpha
    gamma: int = DEFAULT_GAMMA
    crf_high: int = 30
    crf_low: int = 40
    warn: Callable[[str], None] | None = None  # told once if frames are far from the training sizes

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha}: must be in [0, 1]")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction={self.fraction}: must be in (0, 1]")
        if self.gamma < 0:
            raise ValueError(f"gamma={self.gamma}: must be >= 0")
        self.last_probabilities: np.ndarray | None = None

    def quality(self, frames: Sequence[np.ndarray], first_frame: int) -> QualityMap:
        frame, meta = frames[0], self.selector.meta
        if self.warn is not None and meta is not None:
            if message := scale_mismatch(meta, frame.shape[:2]):
                self.warn(message)
            self.warn = None  # once per stream
        if selector_scale(meta, frame.shape[1]) == 0.5:
            # Frames about twice the training width: the selector looks at them at half size,
            # where objects have the scale it learned, and each of its blocks covers 2x2 of ours.
            half = self.selector.predict([resize_even(frame, 0.5)])[0]
            rows, cols = grid_shape(*frame.shape[:2])
            probabilities = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)[:rows, :cols]
            probabilities = np.pad(probabilities, ((0, rows - probabilities.shape[0]), (0, cols - probabilities.shape[1])), mode="edge")
        else:
            probabilities = self.selector.predict([frame])[0]
        self.last_probabilities = probabilities
        return QualityMap.two_level(dilate(self.select(probabilities), self.gamma), crf_high=self.crf_high, crf_low=self.crf_low)

    def select(self, probabilities: np.ndarray) -> np.ndarray:
        """High-quality blocks before dilation: probability >= alpha, or the top ``fraction``."""
        if self.fraction is None:
            return probabilities >= self.alpha
        flat = probabilities.ravel()
        chosen = np.zeros(flat.shape, dtype=bool)
        chosen[np.argsort(-flat, kind="stable")[: max(1, round(self.fraction * flat.size))]] = True
        return chosen.reshape(probabilities.shape)


def selector_scale(meta, width: int) -> float:
    """1.0, or 0.5 when half the frame width is closer (in ratio) to the selector's training
    widths than the full width: 1280-wide frames for a selector trained at 768 run at 640
    (4x cheaper, objects closer to the scale it learned)."""
    widths = [w for _, w in getattr(meta, "frame_sizes", None) or []]
    if not widths:
        return 1.0
    distance = lambda x: min(abs(math.log(x / w)) for w in widths)  # noqa: E731
    return 0.5 if distance(width / 2) < distance(width) else 1.0


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
