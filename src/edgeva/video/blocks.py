"""The 16x16 macroblock grid: block maps, rectangles, dilation, upsampling, region PSNR.

A *block map* is a 2-D array over the macroblock grid of a frame: ``rows = ceil(H / 16)``,
``cols = ceil(W / 16)``. The last row/column may cover a partial block at the frame edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MB",
    "grid_shape",
    "map_to_rects",
    "rects_to_map",
    "dilate",
    "upsample",
    "boxes_to_mask",
    "resample_blocks",
    "psnr",
]

MB = 16  # macroblock side in pixels (H.264; HEVC/VP9 also accept ROI at this granularity)


def grid_shape(height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the macroblock grid covering a ``height x width`` frame."""
    return math.ceil(height / MB), math.ceil(width / MB)


def map_to_rects(
    block_map: np.ndarray, frame_size: tuple[int, int], *, skip: object = 0
) -> list[tuple[int, int, int, int, object]]:
    """Merge equal-valued blocks into few disjoint rectangles.

    Runs of equal values along each row are merged, then identical runs on consecutive rows
    are merged into one rectangle. The result is disjoint, so the order of ROIs never matters.

    Args:
        block_map: (rows, cols) array of levels.
        frame_size: (height, width) of the frame in pixels; rectangles are clipped to it.
        skip: the level that needs no rectangle (the base quality).

    Returns:
        ``(x, y, w, h, level)`` tuples in pixels.
    """
    height, width = frame_size
    rows, cols = block_map.shape
    if (rows, cols) != grid_shape(height, width):
        raise ValueError(f"block map shape {block_map.shape} does not match frame {width}x{height} (expected {grid_shape(height, width)})")
    open_rects: dict[tuple[int, int, object], list[int]] = {}  # (c0, c1, level) -> [r0, r1]
    done: list[tuple[int, int, int, int, object]] = []
    for r in range(rows + 1):
        runs: set[tuple[int, int, object]] = set()
        if r < rows:
            row = block_map[r]
            c = 0
            while c < cols:
                level = row[c].item()
                end = c + 1
                while end < cols and row[end] == row[c]:
                    end += 1
                if level != skip:
                    runs.add((c, end, level))
                c = end
        for key in list(open_rects):
            if key not in runs:
                r0, r1 = open_rects.pop(key)
                done.append((key[0], r0, key[1] - key[0], r1 - r0, key[2]))
        for key in runs:
            if key in open_rects:
                open_rects[key][1] = r + 1
            else:
                open_rects[key] = [r, r + 1]
    rects = []
    for c0, r0, nc, nr, level in sorted(done, key=lambda t: (t[1], t[0])):
        x, y = c0 * MB, r0 * MB
        rects.append((x, y, min(nc * MB, width - x), min(nr * MB, height - y), level))
    return rects


def rects_to_map(
    rects: Sequence[tuple[int, int, int, int]], frame_size: tuple[int, int], value: object = 1
) -> np.ndarray:
    """Boolean-ish block map with every block touched by a pixel rectangle set to ``value``."""
    rows, cols = grid_shape(*frame_size)
    block_map = np.zeros((rows, cols), dtype=np.asarray(value).dtype)
    for x, y, w, h in rects:
        if w <= 0 or h <= 0:
            raise ValueError(f"rectangle {x},{y},{w},{h}: width and height must be positive")
        c0, r0 = max(0, int(x) // MB), max(0, int(y) // MB)
        c1, r1 = min(cols, math.ceil((x + w) / MB)), min(rows, math.ceil((y + h) / MB))
        block_map[r0:r1, c0:c1] = value
    return block_map


def dilate(mask: np.ndarray, gamma: int) -> np.ndarray:
    """Grow a boolean block mask by ``gamma`` blocks in every direction (square element)."""
    mask = np.asarray(mask, dtype=bool)
    if gamma <= 0:
        return mask.copy()
    rows, cols = mask.shape
    padded = np.pad(mask, gamma)
    out = np.zeros_like(mask)
    for dr in range(2 * gamma + 1):
        for dc in range(2 * gamma + 1):
            out |= padded[dr : dr + rows, dc : dc + cols]
    return out


def upsample(block_map: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Per-pixel map (height, width) where each pixel takes its macroblock's value."""
    height, width = frame_size
    return np.repeat(np.repeat(block_map, MB, axis=0), MB, axis=1)[:height, :width]


def resample_blocks(block_map: np.ndarray, frame_size: tuple[int, int], new_size: tuple[int, int], *, keep: str = "min") -> np.ndarray:
    """A block map of a ``frame_size`` frame carried to the grid of the same picture resized to
    ``new_size``: each new block takes the ``keep`` ("min" or "max") of the blocks it overlaps,
    so with CRF levels ("min") no part of the picture loses quality it had."""
    height, width = frame_size
    new_h, new_w = new_size
    rows, cols = grid_shape(new_h, new_w)
    if block_map.shape != grid_shape(height, width):
        raise ValueError(f"block map shape {block_map.shape} does not match frame {width}x{height}")
    reduce = {"min": np.min, "max": np.max}[keep]
    sy, sx = height / new_h, width / new_w
    out = np.empty((rows, cols), dtype=block_map.dtype)
    for r in range(rows):
        r0, r1 = int(r * MB * sy) // MB, max(int(r * MB * sy) // MB + 1, math.ceil(min((r + 1) * MB, new_h) * sy / MB))
        for c in range(cols):
            c0, c1 = int(c * MB * sx) // MB, max(int(c * MB * sx) // MB + 1, math.ceil(min((c + 1) * MB, new_w) * sx / MB))
            out[r, c] = reduce(block_map[r0:r1, c0:c1])
    return out


def boxes_to_mask(boxes: np.ndarray, frame_size: tuple[int, int], *, gamma: int = 0) -> np.ndarray:
    """Block mask covering xyxy pixel boxes, dilated by ``gamma`` blocks."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    rects = [(x1, y1, max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)) for x1, y1, x2, y2 in boxes]
    return dilate(rects_to_map(rects, frame_size, True), gamma)


def psnr(reference: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of ``test`` against ``reference`` (uint8 images), over ``mask`` pixels if given.

    ``mask`` may be a per-pixel (H, W) map or a block map; block maps are upsampled.
    """
    if reference.shape != test.shape:
        raise ValueError(f"PSNR needs equal shapes, got {reference.shape} and {test.shape}")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != reference.shape[:2]:
            mask = upsample(mask, reference.shape[:2])
        diff = diff[mask]
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
