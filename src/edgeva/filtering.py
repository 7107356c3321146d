"""Camera-side frame filtering on low-level frame differences (Reducto, EdgeCam's filter).

A frame is sent only when it differs enough from the last *sent* frame; otherwise the
server reuses the last result. Four features, as in Reducto (Li et al., SIGCOMM 2020) and
EdgeCam's filter engine, each a number in [0, 1]:

* ``pixel``: fraction of pixels whose grey level changed by more than ``pixel_delta``;
* ``area``: fraction of the frame covered by the contours of changed regions;
* ``edge``: fraction of pixels where the Canny edge maps differ;
* ``corner``: fraction of pixels where the (dilated) Harris corner maps differ.

Work is done on a grey image downscaled to at most ``work_width`` pixels wide, so the cost
per frame stays small on a camera.

Reducto picks the threshold online, per segment: offline, on profiling video, it finds for
each segment the largest threshold that keeps the target accuracy and learns a map from the
segment's distribution of frame-to-frame differences to that threshold (its "hash table": a
k-nearest-neighbour classifier over a 30-bin histogram of the differences). Online the
camera histograms each new segment's differences and looks up its threshold
(:class:`ThresholdMap`, :class:`AdaptiveFrameFilter`); the profiling itself needs the final
DNN's results and lives with the Reducto scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

__all__ = ["FEATURES", "Feature", "frame_features", "difference", "diff_vector", "FrameFilter", "ThresholdMap", "AdaptiveFrameFilter", "THRESHOLDS"]

Feature = Literal["pixel", "area", "edge", "corner"]
FEATURES: tuple[Feature, ...] = ("pixel", "area", "edge", "corner")
# Candidate thresholds an adaptive filter chooses from (Reducto profiles a fixed grid).
THRESHOLDS: tuple[float, ...] = (0.0, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


@dataclass(frozen=True)
class _Prepared:
    grey: np.ndarray
    edges: np.ndarray | None
    corners: np.ndarray | None


def _prepare(image: np.ndarray, feature: Feature, work_width: int) -> _Prepared:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    if grey.shape[1] > work_width:
        scale = work_width / grey.shape[1]
        grey = cv2.resize(grey, (work_width, max(1, round(grey.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    grey = cv2.GaussianBlur(grey, (5, 5), 0)
    edges = cv2.Canny(grey, 101, 255) if feature == "edge" else None
    corners = None
    if feature == "corner":
        response = cv2.dilate(cv2.cornerHarris(np.float32(grey), 5, 3, 0.05), None)
        corners = (response > 0.01 * max(float(response.max()), 1e-12)).astype(np.uint8)
    return _Prepared(grey, edges, corners)


def frame_features(image: np.ndarray, feature: Feature = "pixel", *, work_width: int = 320) -> _Prepared:
    """Pre-computed per-frame state for :func:`difference` (so each frame is prepared once)."""
    if feature not in FEATURES:
        raise ValueError(f"feature {feature!r}: choose from {', '.join(FEATURES)}")
    return _prepare(image, feature, work_width)


def difference(a: _Prepared, b: _Prepared, feature: Feature = "pixel", *, pixel_delta: int = 21) -> float:
    """How different two prepared frames are under ``feature``, in [0, 1]."""
    if feature == "edge":
        return float(np.count_nonzero(cv2.absdiff(a.edges, b.edges))) / a.grey.size
    if feature == "corner":
        return float(np.count_nonzero(a.corners != b.corners)) / a.grey.size
    changed = cv2.threshold(cv2.absdiff(a.grey, b.grey), pixel_delta, 255, cv2.THRESH_BINARY)[1]
    if feature == "pixel":
        return float(np.count_nonzero(changed)) / a.grey.size
    changed = cv2.dilate(changed, None, iterations=2)
    contours, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return min(1.0, sum(cv2.contourArea(c) for c in contours) / a.grey.size)


def diff_vector(images: list[np.ndarray], feature: Feature = "pixel", *, work_width: int = 320) -> np.ndarray:
    """Differences between consecutive frames of a segment (Reducto's per-segment "diff vector")."""
    prepared = [frame_features(image, feature, work_width=work_width) for image in images]
    return np.array([difference(a, b, feature) for a, b in zip(prepared, prepared[1:], strict=False)], dtype=np.float64)


class FrameFilter:
    """Stateful filter: ``check(image)`` says whether to send a frame.

    Args:
        feature: which low-level difference to use.
        threshold: send when the difference to the last sent frame is at least this.
        work_width: frames are downscaled to this width before comparing.
    """

    def __init__(self, feature: Feature = "pixel", threshold: float = 0.01, *, work_width: int = 320):
        if feature not in FEATURES:
            raise ValueError(f"feature {feature!r}: choose from {', '.join(FEATURES)}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold {threshold}: must be in [0, 1]")
        self.feature, self.threshold, self.work_width = feature, threshold, work_width
        self.reset()

    def reset(self) -> None:
        self._last: _Prepared | None = None
        self.last_difference: float = 1.0

    def _check_prepared(self, current: _Prepared) -> bool:
        if self._last is None:
            self.last_difference = 1.0
        else:
            self.last_difference = difference(self._last, current, self.feature)
        send = self._last is None or self.last_difference >= self.threshold
        if send:
            self._last = current
        return send

    def check(self, image: np.ndarray) -> bool:
        """True to send this frame (always the first); a sent frame becomes the new reference."""
        return self._check_prepared(frame_features(image, self.feature, work_width=self.work_width))

    def select(self, images: list[np.ndarray]) -> list[int]:
        """Indices of the frames of one segment (in order) to send."""
        return [i for i, image in enumerate(images) if self.check(image)]


class ThresholdMap:
    """Reducto's hash table: a segment's histogram of frame differences -> a threshold.

    A k-nearest-neighbour vote (weighted by inverse distance, as in Reducto's release) over
    profiled segments, each labelled with the largest candidate threshold that kept the
    target accuracy on it.

    Args:
        vectors: diff vectors of the profiled segments.
        thresholds: the best threshold of each profiled segment (one of ``candidates``).
        bins: histogram bins (Reducto: 30).
        neighbours: k (Reducto: 5).
    """

    def __init__(self, vectors: list[np.ndarray], thresholds: list[float], *, bins: int = 30, neighbours: int = 5):
        if not vectors or len(vectors) != len(thresholds):
            raise ValueError(f"a threshold map needs one threshold per profiled segment (got {len(vectors)} segments, {len(thresholds)} thresholds)")
        values = np.concatenate([v for v in vectors if len(v)] or [np.zeros(1)])
        self.range = (float(values.min()), float(max(values.max(), values.min() + 1e-9)))
        self.bins, self.neighbours = bins, neighbours
        self.points = np.stack([self.histogram(v) for v in vectors])
        self.labels = np.asarray(thresholds, dtype=np.float64)

    def histogram(self, vector: np.ndarray) -> np.ndarray:
        if len(vector) == 0:
            return np.zeros(self.bins)
        hist, _ = np.histogram(np.clip(vector, *self.range), self.bins, range=self.range)
        return hist / len(vector)

    def threshold(self, vector: np.ndarray) -> float:
        """The threshold for a new segment with these consecutive-frame differences."""
        distances = np.linalg.norm(self.points - self.histogram(vector), axis=1)
        nearest = np.argsort(distances, kind="stable")[: self.neighbours]
        weights = 1.0 / np.maximum(distances[nearest], 1e-9)
        votes: dict[float, float] = {}
        for label, weight in zip(self.labels[nearest], weights, strict=True):
            votes[float(label)] = votes.get(float(label), 0.0) + float(weight)
        return max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]  # ties: the lower (safer) threshold


class AdaptiveFrameFilter(FrameFilter):
    """A :class:`FrameFilter` whose threshold is looked up per segment in a :class:`ThresholdMap`
    (Reducto online): the segment's consecutive-frame differences pick the threshold, then
    its frames are filtered against the last sent frame as usual."""

    def __init__(self, feature: Feature, table: ThresholdMap, *, work_width: int = 320):
        super().__init__(feature, 0.0, work_width=work_width)
        self.table = table
        self.thresholds: list[float] = []  # chosen per segment, in order (for reports and tests)

    def select(self, images: list[np.ndarray]) -> list[int]:
        prepared = [frame_features(image, self.feature, work_width=self.work_width) for image in images]
        vector = np.array([difference(a, b, self.feature) for a, b in zip(prepared, prepared[1:], strict=False)])
        self.threshold = self.table.threshold(vector)
        self.thresholds.append(self.threshold)
        return [i for i, p in enumerate(prepared) if self._check_prepared(p)]
