"""Detection accuracy of a result against a reference result (the AccMPEG convention).

The reference is the final DNN's own output on the original frames; a scheme is accurate
when the DNN's output on what the server received matches it. A detection matches a
reference object of the same class with IoU >= ``iou_threshold`` (greedy, highest score
first, each reference object matched at most once). Both sides are first filtered by
``score_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edgeva.models.detections import Detections, box_iou

__all__ = ["FrameCounts", "match_counts", "DetectionF1", "f1_score"]


@dataclass(frozen=True)
class FrameCounts:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0  # nothing to find, nothing found


def match_counts(result: Detections, reference: Detections, *, iou_threshold: float = 0.5, score_threshold: float = 0.4) -> FrameCounts:
    """True/false positives and misses of one frame's result against its reference."""
    result, reference = result.above(score_threshold), reference.above(score_threshold)
    if not len(result) or not len(reference):
        return FrameCounts(0, len(result), len(reference))
    iou = box_iou(torch.from_numpy(result.boxes), torch.from_numpy(reference.boxes)).numpy()
    iou[result.class_ids[:, None] != reference.class_ids[None, :]] = 0.0
    matched = np.zeros(len(reference), dtype=bool)
    tp = 0
    for i in np.argsort(-result.scores, kind="stable"):
        candidates = np.where(~matched & (iou[i] >= iou_threshold))[0]
        if candidates.size:
            matched[candidates[np.argmax(iou[i, candidates])]] = True
            tp += 1
    return FrameCounts(tp, len(result) - tp, len(reference) - tp)


class DetectionF1:
    """Streaming evaluator: ``reset()``, ``process(results, references)`` per batch,
    ``evaluate()`` -> dict. Aggregates counts over all frames (micro average) and also
    reports the mean of per-frame F1."""

    def __init__(self, *, iou_threshold: float = 0.5, score_threshold: float = 0.4):
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.reset()

    def reset(self) -> None:
        self.frames: list[FrameCounts] = []

    def process(self, results: Sequence[Detections], references: Sequence[Detections]) -> list[FrameCounts]:
        if len(results) != len(references):
            raise ValueError(f"{len(results)} results but {len(references)} reference frames")
        counts = [
            match_counts(r, ref, iou_threshold=self.iou_threshold, score_threshold=self.score_threshold)
            for r, ref in zip(results, references, strict=True)
        ]
        self.frames += counts
        return counts

    def evaluate(self) -> dict[str, float]:
        total = FrameCounts(sum(c.tp for c in self.frames), sum(c.fp for c in self.frames), sum(c.fn for c in self.frames))
        return {
            "f1": total.f1,
            "precision": total.precision,
            "recall": total.recall,
            "mean_frame_f1": float(np.mean([c.f1 for c in self.frames])) if self.frames else 1.0,
            "frames": len(self.frames),
            "tp": total.tp,
            "fp": total.fp,
            "fn": total.fn,
        }


def f1_score(results: Sequence[Detections], references: Sequence[Detections], **kwargs: float) -> dict[str, float]:
    """One-shot :class:`DetectionF1` over whole sequences."""
    evaluator = DetectionF1(**kwargs)
    evaluator.process(results, references)
    return evaluator.evaluate()
