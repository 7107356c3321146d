"""AccMPEG camera cost at 1280x720 on one thread: selector once per k frames + ROI encoding."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import torch

from edgeva import assets
from edgeva.accmpeg.camera import AccMPEGQuality, ChunkCamera
from edgeva.accmpeg.selector import QualitySelector, load_selector
from edgeva.quality import UniformQuality
from edgeva.video import EncoderSettings, read_frames

__all__ = ["bench_camera"]


def bench_camera(*, selector: Path | None = None, frames: int = 100, k: int = 10, size: tuple[int, int] = (1280, 720), video: str = "car-detection.mp4") -> list[dict]:
    torch.set_num_threads(1)
    model = load_selector(selector) if selector else QualitySelector().load_pretrained().eval().to(memory_format=torch.channels_last)
    images = [cv2.resize(f, size) for f in read_frames(assets.find(video), frames, step=2)]
    settings = EncoderSettings(threads=1, fps=25.0)
    model.predict(images[:1])  # warm-up
    rows = []
    for name, policy in (("uniform CRF 40 (codec only)", UniformQuality(40)), ("accmpeg (alpha 0.2)", AccMPEGQuality(model, alpha=0.2))):
        camera = ChunkCamera(policy, settings)
        policy_s = encode_s = 0.0
        high = []
        start = time.perf_counter()
        for i in range(0, len(images), k):
            chunk = camera.encode(images[i : i + k], i)
            policy_s += chunk.policy_s
            encode_s += chunk.encode_s
            high.append(chunk.high_fraction)
        wall = time.perf_counter() - start
        n = len(images)
        rows.append({
            "camera": name,
            "selector_ms_per_call": 1000 * policy_s / len(high) if policy_s else 0.0,
            "selector_ms_per_frame": 1000 * policy_s / n,
            "encode_ms_per_frame": 1000 * encode_s / n,
            "camera_ms_per_frame": 1000 * wall / n,
            "fps": n / wall,
            "high_blocks_pct": 100 * sum(high) / len(high),
        })
    return rows
