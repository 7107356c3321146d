"""DDS (Du et al., SIGCOMM 2020): server-driven two-round streaming.

Round 1 sends the chunk at low quality. The server runs the final DNN and keeps its
confident detections; it feeds back the regions it is unsure about — its low-confidence
boxes — plus the confident ones, as DDS does for detectors without region proposals
(YOLO-style). Round 2 re-sends only those regions at high quality (the rest blanked); the
final result merges the confident round-1 detections with round 2's. Delay counts both
uploads, the feedback and the server's round-1 inference.
"""

from __future__ import annotations

import numpy as np

from edgeva.models import Detections
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import QUALITY_PAIRS, blank_outside, send_frames
from edgeva.video import boxes_to_mask

__all__ = ["DDS"]


@register_scheme
class DDS(Scheme):
    name = "dds"
    description = "DDS: low-quality pass, server feeds back regions, high-quality re-send of them"

    def __init__(
        self, ctx: SchemeContext, *, crf_low: int = 40, crf_high: int = 30, low_score: float = 0.1, high_score: float = 0.5,
        max_area: float = 0.3, gamma: int = 1,
    ):
        super().__init__(ctx, crf_low=crf_low, crf_high=crf_high, low_score=low_score, high_score=high_score)
        self.crf_low, self.crf_high = crf_low, crf_high
        self.low_score, self.high_score, self.max_area, self.gamma = low_score, high_score, max_area, gamma

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"crf_high": high, "crf_low": low} for high, low in QUALITY_PAIRS]

    def _feedback(self, result: Detections) -> np.ndarray:
        """Block mask of the regions to re-send: boxes above ``low_score`` that are not
        huge (DDS drops proposals covering much of the frame)."""
        height, width = self.ctx.frame_size
        boxes = result.above(self.low_score).boxes
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (height * width)
        return boxes_to_mask(boxes[area <= self.max_area], self.ctx.frame_size, gamma=self.gamma)

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        first, low_results = send_frames(self.ctx, frames, self.crf_low, first_frame)
        masks = [self._feedback(r) for r in low_results]
        if not any(m.any() for m in masks):  # nothing uncertain: no second round
            return ChunkOutcome(first_frame, len(frames), [first], low_results, len(frames), 0.0)
        regions = [blank_outside(f, m) for f, m in zip(frames, masks, strict=True)]
        second, high_results = send_frames(self.ctx, regions, self.crf_high, first_frame)
        merged = [
            Detections.merge([low.above(self.high_score), high])
            for low, high in zip(low_results, high_results, strict=True)
        ]
        return ChunkOutcome(first_frame, len(frames), [first, second], merged, len(frames), float(np.mean([m.mean() for m in masks])))
