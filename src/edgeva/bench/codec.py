"""Encoder throughput at 1280x720 with and without a two-level macroblock quality map."""

from __future__ import annotations

import time

import cv2
import numpy as np

from edgeva import assets
from edgeva.video import EncoderSettings, QualityMap, encode_chunk, grid_shape, read_frames

__all__ = ["bench_codec"]


def _two_level_map(frame_size: tuple[int, int], high_fraction: float, seed: int = 0) -> QualityMap:
    """A realistic map: a few object-sized blobs of high quality covering ``high_fraction``."""
    rows, cols = grid_shape(*frame_size)
    rng = np.random.default_rng(seed)
    mask = np.zeros((rows, cols), bool)
    while mask.mean() < high_fraction:
        r, c = rng.integers(0, rows), rng.integers(0, cols)
        mask[r : r + rng.integers(2, 8), c : c + rng.integers(2, 10)] = True
    return QualityMap.two_level(mask, crf_high=30, crf_low=40)


def bench_codec(
    *, video: str = "car-detection.mp4", frames: int = 60, size: tuple[int, int] = (1280, 720), chunk: int = 10,
    presets: tuple[str, ...] = ("veryfast", "ultrafast"), high_fraction: float = 0.25, repeats: int = 5,
) -> list[dict]:
    """Encode ``frames`` sample frames (upscaled to ``size``) in ``chunk``-frame chunks on one
    thread; best of ``repeats`` runs. Returns one row per (preset, map)."""
    images = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in read_frames(assets.find(video), frames)]
    frame_size = (size[1], size[0])
    quality = _two_level_map(frame_size, high_fraction)
    encode_chunk(images[:chunk], quality)  # warm-up: first-use costs (libraries, caches) are not encoding
    maps = {"uniform CRF 40": 40, f"2-level map 30/40 ({100 * quality.high_fraction:.0f}% high)": quality}
    timings: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    # Interleave configurations and keep each one's best run: background noise hits all alike.
    for _ in range(repeats):
        for preset in presets:
            settings = EncoderSettings(preset=preset, threads=1, fps=25.0)
            for label, q in maps.items():
                start = time.perf_counter()
                sizes[preset, label] = sum(
                    encode_chunk(images[i : i + chunk], q, settings, first_frame=i).nbytes for i in range(0, len(images), chunk)
                )
                timings.setdefault((preset, label), []).append(time.perf_counter() - start)
    rows = []
    for preset in presets:
        base = min(timings[preset, "uniform CRF 40"])
        for label in maps:
            best = min(timings[preset, label])
            rows.append({
                "preset": preset, "map": label, "fps": len(images) / best, "ms_per_frame": 1000 * best / len(images),
                "kbytes": sizes[preset, label] / 1000, "overhead_pct": 100 * (best - base) / base,
            })
    return rows
