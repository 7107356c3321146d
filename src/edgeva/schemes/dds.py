"""DDS (Du et al., SIGCOMM 2020): server-driven two-round streaming.

Round 1 sends the chunk at low quality. The server runs the final DNN: detections scoring at
least ``prune_score`` are accepted as they are. The regions it is unsure about are fed back:
for a detector without region proposals (YOLO-style; the AccMPEG evaluation runs DDS on YOLO
this way) these are its low-confidence boxes (``low_score`` to ``prune_score``), minus every
box that overlaps an accepted detection and every box covering more than ``max_area`` of the
frame (as DDS's ``get_regions_to_query`` does with ``objfilter_iou`` 0 and ``size_obj``). Round 2
re-sends only those regions at high quality (the rest of the frame blanked); the server
pastes them onto its round-1 frames (DDS's ``merge_images``), runs the DNN again, and the
final result merges the accepted round-1 detections with round 2's. A chunk with no unsure
region has no second round. Delay counts both uploads, the feedback and the server's round-1
inference.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from edgeva.models import Detections
from edgeva.models.detections import box_iou
from edgeva.net import Exchange
from edgeva.schemes.base import ChunkOutcome, Scheme, SchemeContext, register_scheme
from edgeva.schemes.common import QUALITY_PAIRS, blank_outside, transmit
from edgeva.video import boxes_to_mask, upsample

__all__ = ["DDS", "unsure_regions"]


def unsure_regions(result: Detections, frame_size: tuple[int, int], *, low_score: float, prune_score: float, max_area: float) -> np.ndarray:
    """xyxy boxes DDS asks again for: low-confidence, not overlapping an accepted detection, not huge."""
    height, width = frame_size
    accepted = result.above(prune_score)
    candidates = result[(result.scores >= low_score) & (result.scores < prune_score)]
    boxes = candidates.boxes
    if len(boxes) and len(accepted):
        overlap = box_iou(torch.from_numpy(boxes), torch.from_numpy(accepted.boxes)).numpy().max(axis=1)
        boxes = boxes[overlap <= 0.0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (height * width)
    return boxes[area <= max_area]


@register_scheme
class DDS(Scheme):
    name = "dds"
    description = "DDS: low-quality pass; the server feeds back only the regions it is unsure about; high-quality re-send of those"

    def __init__(
        self, ctx: SchemeContext, *, crf_low: int = 40, crf_high: int = 30, low_score: float = 0.1, prune_score: float = 0.5,
        max_area: float = 0.3, gamma: int = 1,
    ):
        super().__init__(ctx, crf_low=crf_low, crf_high=crf_high, low_score=low_score, prune_score=prune_score)
        self.crf_low, self.crf_high = crf_low, crf_high
        self.low_score, self.prune_score, self.max_area, self.gamma = low_score, prune_score, max_area, gamma

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"crf_high": high, "crf_low": low} for high, low in QUALITY_PAIRS]

    def _feedback(self, result: Detections) -> np.ndarray:
        """Block mask of the regions to re-send."""
        boxes = unsure_regions(result, self.ctx.frame_size, low_score=self.low_score, prune_score=self.prune_score, max_area=self.max_area)
        return boxes_to_mask(boxes, self.ctx.frame_size, gamma=self.gamma)

    def process(self, frames: list, first_frame: int) -> ChunkOutcome:
        chunk, low_frames, decode_s = transmit(self.ctx, frames, self.crf_low, first_frame)
        low_results, infer_s = self.ctx.server.infer(low_frames)
        first = Exchange(chunk.encode_s, chunk.nbytes, decode_s + infer_s)
        masks = [self._feedback(r) for r in low_results]
        if not any(m.any() for m in masks):  # nothing unsure: no second round
            return ChunkOutcome(first_frame, len(frames), [first], low_results, len(frames), 0.0)
        regions = [blank_outside(f, m) for f, m in zip(frames, masks, strict=True)]
        chunk, high_frames, decode_s = transmit(self.ctx, regions, self.crf_high, first_frame)
        start = time.perf_counter()
        merged_frames = []
        for low, high, mask in zip(low_frames, high_frames, masks, strict=True):
            keep = upsample(mask, low.shape[:2])
            merged = low.copy()
            merged[keep] = high[keep]
            merged_frames.append(merged)
        merge_s = time.perf_counter() - start
        high_results, infer_s = self.ctx.server.infer(merged_frames)
        second = Exchange(chunk.encode_s, chunk.nbytes, decode_s + merge_s + infer_s)
        final = [
            Detections.merge([low.above(self.prune_score), high])
            for low, high in zip(low_results, high_results, strict=True)
        ]
        return ChunkOutcome(first_frame, len(frames), [first, second], final, len(frames), float(np.mean([m.mean() for m in masks])))
