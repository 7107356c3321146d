"""docs/baselines-neuromesh.md's figures on the two NeuroMesh baselines:

1. TileClipper's tile-stream overhead: the first 10 frames of each evaluation video as one
   stream and as 4 x 4 independent tile streams, at two CRFs (bytes are deterministic).
2. Crucio's codec on the first 10 frames of each evaluation video (every frame sent, steps 1
   and 4): bytes, RGB PSNR, and YOLOX-Nano's F1 on the reconstruction against the original.

    EDGEVA_ASSETS=../shared/assets .venv/bin/python tools/baseline_figures.py out/demo/crucio.pt
"""

from __future__ import annotations

import sys

import numpy as np

from edgeva import assets
from edgeva.crucio import load_crucio
from edgeva.metrics import f1_score
from edgeva.models import create_detector
from edgeva.schemes.tileclipper import tile_edges
from edgeva.video import EncoderSettings, encode_chunk, read_frames

VIDEOS = ("bottle-detection", "store-aisle-detection", "people-detection", "fruit-and-vegetable-detection")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def tile_overhead() -> None:
    print("| video | CRF | one stream (B) | 16 tile streams (B) | overhead |")
    print("| --- | --- | --- | --- | --- |")
    for video in VIDEOS:
        frames = read_frames(assets.resolve_video(video), 10)
        rows, cols = tile_edges(frames[0].shape[0], 4), tile_edges(frames[0].shape[1], 4)
        for crf in (30, 38):
            whole = encode_chunk(frames, crf, EncoderSettings()).nbytes
            tiles = sum(encode_chunk([np.ascontiguousarray(f[rows[r] : rows[r + 1], cols[c] : cols[c + 1]]) for f in frames], crf,
                                     EncoderSettings()).nbytes for r in range(4) for c in range(4))
            print(f"| {video} | {crf} | {whole} | {tiles} | {100 * (tiles / whole - 1):+.0f}% |")


def crucio_quality(checkpoint: str) -> None:
    codec, detector = load_crucio(checkpoint), create_detector("yolox-nano")
    print(f"\n{checkpoint}: held-out PSNR {codec.meta.val_psnr:.2f} dB (YCbCr crops of {', '.join(codec.meta.train_videos)})")
    print("| video | step | bytes (10 frames) | RGB PSNR dB | flat-fill PSNR dB | F1 vs original |")
    print("| --- | --- | --- | --- | --- | --- |")
    for video in VIDEOS:
        frames = read_frames(assets.resolve_video(video), 10)
        reference = detector.detect(frames)
        flat = np.mean([_psnr(f, np.broadcast_to(f.mean((0, 1)), f.shape)) for f in frames])
        for step in (1.0, 4.0):
            data = codec.camera(frames, step=step, threshold=None).data
            _, decoded = codec.server(data)
            psnr = np.mean([_psnr(f, d) for f, d in zip(frames, decoded, strict=True)])
            f1 = f1_score(detector.detect(decoded), reference)["f1"]
            print(f"| {video} | {step:g} | {len(data)} | {psnr:.1f} | {flat:.1f} | {f1:.3f} |")


if __name__ == "__main__":
    tile_overhead()
    if len(sys.argv) > 1:
        crucio_quality(sys.argv[1])
