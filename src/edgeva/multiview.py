"""Multi-view propagation (NeuroMesh), on *emulated* overlapping views.

NeuroMesh propagates inference across cameras whose views overlap, so an object one camera
has inferred need not be inferred again by the next. The sample videos have no second view,
so views are emulated as crops of one video (known offsets, optionally zoomed), which gives
the exact homography between any two views: an axis-aligned scale and shift. Real cameras
would need a homography estimated from matched points; nothing here pretends otherwise.

* :class:`View`: a crop (x, y, width, height of the source) shown at ``scale`` pixels per
  source pixel; :meth:`View.render` makes its frames.
* :func:`homography`: the 3x3 matrix mapping view ``a``'s pixels to view ``b``'s.
* :func:`map_boxes`: boxes through a homography (the envelope of the four mapped corners).
* :func:`uncovered_mask`: the pixels of a view that no earlier view sees (what is still sent).
* :func:`propagate`: detections of one view carried into another (boxes whose centre lands
  inside it, clipped to its frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeva.models.detections import Detections

__all__ = ["View", "homography", "map_boxes", "uncovered_mask", "propagate"]


@dataclass(frozen=True)
class View:
    """An emulated camera: the source region (x, y, width, height) shown at ``scale``."""

    name: str
    x: int
    y: int
    width: int
    height: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0 or self.scale <= 0 or self.x < 0 or self.y < 0:
            raise ValueError(f"view {self.name}: expected x, y >= 0 and width, height, scale > 0, got {self}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the view's frames in pixels."""
        return round(self.width * self.scale), round(self.height * self.scale)

    def to_source(self) -> np.ndarray:
        """Homography from this view's pixels to source pixels."""
        return np.array([[1 / self.scale, 0, self.x], [0, 1 / self.scale, self.y], [0, 0, 1]], dtype=np.float64)

    def render(self, frame: np.ndarray) -> np.ndarray:
        """This view's picture of a source frame (H, W, 3)."""
        if self.y + self.height > frame.shape[0] or self.x + self.width > frame.shape[1]:
            raise ValueError(f"view {self.name}: region {self.x},{self.y},{self.width}x{self.height} "
                             f"exceeds the {frame.shape[1]}x{frame.shape[0]} frame")
        crop = frame[self.y:self.y + self.height, self.x:self.x + self.width]
        return crop if self.scale == 1 else cv2.resize(crop, self.size, interpolation=cv2.INTER_AREA)


def homography(a: View, b: View) -> np.ndarray:
    """The 3x3 matrix taking view ``a``'s pixel coordinates to view ``b``'s."""
    return np.linalg.inv(b.to_source()) @ a.to_source()


def map_boxes(boxes: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes through homography ``h``: the envelope of the four mapped corners."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return boxes.astype(np.float32)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x1, y2], 1), np.stack([x2, y2], 1)], 1)
    mapped = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), h).reshape(-1, 4, 2)
    return np.concatenate([mapped.min(1), mapped.max(1)], 1).astype(np.float32)


def uncovered_mask(view: View, others: list[View]) -> np.ndarray:
    """(H, W) bool mask of ``view``'s pixels that none of ``others`` sees."""
    width, height = view.size
    mask = np.ones((height, width), dtype=bool)
    for other in others:
        ow, oh = other.size
        x1, y1, x2, y2 = map_boxes(np.array([[0, 0, ow, oh]]), homography(other, view))[0]
        xa, ya = max(0, int(np.ceil(x1))), max(0, int(np.ceil(y1)))
        xb, yb = min(width, int(np.floor(x2))), min(height, int(np.floor(y2)))
        if xa < xb and ya < yb:
            mask[ya:yb, xa:xb] = False
    return mask


def propagate(detections: Detections, a: View, b: View) -> Detections:
    """``a``'s detections in ``b``'s pixels: those whose box centre falls inside ``b``, clipped to it."""
    mapped = map_boxes(detections.boxes, homography(a, b))
    width, height = b.size
    centres = (mapped[:, :2] + mapped[:, 2:]) / 2
    keep = (centres[:, 0] >= 0) & (centres[:, 0] < width) & (centres[:, 1] >= 0) & (centres[:, 1] < height)
    boxes = mapped[keep]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return Detections(boxes, detections.scores[keep], detections.class_ids[keep], detections.names)
