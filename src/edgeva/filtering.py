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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

__all__ = ["FEATURES", "Feature", "frame_features", "difference", "FrameFilter"]

Feature = Literal["pixel", "area", "edge", "corner"]
FEATURES: tuple[Feature, ...] = ("pixel", "area", "edge", "corner")


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

    def check(self, image: np.ndarray) -> bool:
        """True to send this frame (always the first); a sent frame becomes the new reference."""
        current = frame_features(image, self.feature, work_width=self.work_width)
        if self._last is None:
            self.last_difference = 1.0
        else:
            self.last_difference = difference(self._last, current, self.feature)
        send = self._last is None or self.last_difference >= self.threshold
        if send:
            self._last = current
        return send
