"""Accuracy metrics against the final DNN's reference output."""

from edgeva.metrics.detection import DetectionF1, FrameCounts, f1_score, match_counts

__all__ = ["DetectionF1", "FrameCounts", "f1_score", "match_counts"]
