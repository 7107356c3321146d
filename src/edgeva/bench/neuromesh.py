"""NeuroMesh's costs at 1280x720 on one thread: the camera's sampler (resize + sampler
network + top-k), its blanked encoding, and the server's reconstruction (MAE + paint-in),
each in CPU ms per frame (``time.process_time``: on a shared machine, wall-clock time counts
the other processes' turns too), best of ``repeats`` interleaved runs."""

from __future__ import annotations

import time

import cv2
import torch

from edgeva import assets
from edgeva.neuromesh.codec import load_mae, pack_mask
from edgeva.video import EncoderSettings, decode_chunk, read_frames

__all__ = ["bench_neuromesh"]


def bench_neuromesh(mae: str, *, video: str = "car-detection.mp4", size: tuple[int, int] = (1280, 720), chunk: int = 10,
                    mask_ratio: float = 0.7, crf: int = 30, repeats: int = 3) -> list[dict]:
    """One row per stage: ms per frame on one thread for a ``chunk``-frame chunk upscaled to ``size``."""
    torch.set_num_threads(1)
    codec = load_mae(mae)
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in read_frames(assets.find(video), chunk)]
    settings = EncoderSettings(threads=1)
    sent = codec.camera(frames, mask_ratio=mask_ratio, crf=crf, settings=settings)  # warm-up
    stages = {
        "sampler (camera)": lambda: codec.choose(frames, mask_ratio),
        "sampler + blank + encode (camera)": lambda: codec.camera(frames, mask_ratio=mask_ratio, crf=crf, settings=settings),
        "decode (server)": lambda: decode_chunk(sent.chunk),
        "decode + MAE paint-in (server)": lambda: codec.server(sent.chunk, pack_mask(sent.mask)),
    }
    best = dict.fromkeys(stages, float("inf"))
    for _ in range(repeats):
        for name, run in stages.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return [{"stage": k, "CPU ms per frame": 1000 * v / chunk, "KB per chunk": sent.data_bytes / 1000} for k, v in best.items()]
