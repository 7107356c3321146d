"""Pictures a person can look at: boxes on frames, block maps as overlays."""

from __future__ import annotations

import cv2
import numpy as np

from edgeva.models.detections import Detections
from edgeva.video.blocks import upsample

__all__ = ["draw_detections", "overlay_block_map", "class_color", "jpeg"]


def class_color(class_id: int) -> tuple[int, int, int]:
    """The RGB colour boxes of this class are drawn in (the same in every picture)."""
    rng = np.random.default_rng(class_id * 7919 + 1)
    return tuple(int(v) for v in rng.integers(64, 256, 3))


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """A copy of an RGB frame with labelled boxes drawn on it."""
    out = image.copy()
    for (x1, y1, x2, y2), score, cid in zip(detections.boxes, detections.scores, detections.class_ids, strict=True):
        color = class_color(int(cid))
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), color, 2)
        cv2.putText(out, f"{detections.names[cid]} {score:.2f}", (int(x1), max(12, int(y1) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


def overlay_block_map(image: np.ndarray, block_map: np.ndarray, *, color: tuple[int, int, int] = (255, 40, 40), alpha: float = 0.45) -> np.ndarray:
    """Tint an RGB frame where a block map is high (values scaled to [0, 1] by their max)."""
    weights = np.asarray(block_map, dtype=np.float32)
    if weights.max() > 0:
        weights = weights / weights.max()
    pixels = upsample(weights, image.shape[:2])[..., None] * alpha
    tinted = image.astype(np.float32) * (1 - pixels) + np.array(color, np.float32) * pixels
    grid = tinted.astype(np.uint8)
    grid[::16, :] = (grid[::16, :] * 0.7).astype(np.uint8)  # faint macroblock grid lines
    grid[:, ::16] = (grid[:, ::16] * 0.7).astype(np.uint8)
    return grid


def jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    """An RGB frame as JPEG bytes."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV fails only on empty images
        raise ValueError(f"cannot encode a {image.shape} frame as JPEG")
    return data.tobytes()
