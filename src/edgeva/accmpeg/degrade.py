"""Camera-input degradations for training the quality selector.

A camera's frames are not the clean sample videos the selector is trained on: exposure and
contrast change with the light, optics and motion blur them, the sensor adds noise and a
cheap camera compresses before the selector ever sees the frame. :func:`degrade` applies a
random mix of those to a frame; training pairs the degraded frame with the clean frame's
AccGrad mask (what matters to the server DNN belongs to the scene, not to the degradation).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["degrade", "DEGRADATIONS"]

DEGRADATIONS = ("exposure", "blur", "noise", "jpeg")  # in the order a camera applies them


def degrade(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A degraded copy of an RGB uint8 (H, W, 3) frame, same shape and dtype.

    Each of ``DEGRADATIONS`` is applied with probability 1/2 (at least one is): exposure
    (contrast x0.7-1.3, brightness -25..+25), Gaussian blur (sigma 0.5-1.5 px), Gaussian
    sensor noise (sigma 2-8 levels), a JPEG round trip at quality 15-50.

    Args:
        frame: the clean frame.
        rng: where every random choice comes from (same state, same output).

    Raises:
        ValueError: a frame that is not (H, W, 3) uint8.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"degrade: expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    chosen = rng.random(len(DEGRADATIONS)) < 0.5
    if not chosen.any():
        chosen[rng.integers(len(DEGRADATIONS))] = True
    out = frame.astype(np.float32)
    if chosen[0]:
        out = out * rng.uniform(0.7, 1.3) + rng.uniform(-25.0, 25.0)
    if chosen[1]:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if chosen[2]:
        out = out + rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape).astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if chosen[3]:
        ok, data = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 51))])
        if not ok:
            raise ValueError(f"degrade: JPEG encoding of a {frame.shape} frame failed")
        out = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)
