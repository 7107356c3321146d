"""The README's design-choice figures: ROI needs x264's adaptive quantisation, chunked vs
one-encoder bytes, the SEI banner's share,
channels-last speed, agreement with ONNX Runtime, and YOLOX-Nano's F1 against CRF.

    EDGEVA_ASSETS=../shared/assets .venv/bin/python tools/design_figures.py

Uses codec internals on purpose (it measures the choices they embody); not part of edgeva.
"""

from __future__ import annotations

import time

import av
import cv2
import numpy as np
import torch

from edgeva import assets
from edgeva.metrics import f1_score
from edgeva.models import create_detector
from edgeva.video import (
    EncoderSettings,
    QualityMap,
    decode_chunk,
    encode_chunk,
    grid_shape,
    read_frames,
)
from edgeva.video import codec as C


def _one_encoder_bytes(frames, settings, crf, idr_every=None) -> tuple[int, int]:
    """(bytes as written, bytes without SEI) of one encoder over ``frames``."""
    ctx = C._open_encoder(settings, frames[0].shape[1], frames[0].shape[0], crf)
    ms = 1000 / settings.fps
    packets = []
    for i, image in enumerate(frames):
        frame = C._to_yuv(image, round(i * ms), ctx.time_base)
        if idr_every and i % idr_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return sum(len(bytes(p)) for p in packets), sum(len(C._drop_sei(bytes(p), "h264")) for p in packets)


def roi_needs_aq() -> None:
    """ultrafast turns AQ off; without it x264 ignores ROI offsets (edgeva forces aq-mode=1)."""
    frames = read_frames(assets.find("store-aisle-detection.mp4"), 10)
    mask = np.zeros(grid_shape(*frames[0].shape[:2]), bool)
    mask[:, : mask.shape[1] // 2] = True
    quality = QualityMap.two_level(mask, crf_high=30, crf_low=40)
    forced = EncoderSettings.options
    for aq in ("1", "0"):
        EncoderSettings.options = lambda self, crf, aq=aq: {**forced(self, crf), "aq-mode": aq}
        settings = EncoderSettings(fps=16.7, preset="ultrafast")
        print(f"ultrafast aq-mode {aq}: uniform CRF 40 {encode_chunk(frames, 40, settings).nbytes} B, "
              f"half-frame ROI 30/40 {encode_chunk(frames, quality, settings).nbytes} B")
    EncoderSettings.options = forced


def chunking() -> None:
    frames = [cv2.resize(f, (1280, 720)) for f in read_frames(assets.find("car-detection.mp4"), 60)]
    settings = EncoderSettings(fps=12.5)
    fresh = sum(encode_chunk(frames[i : i + 10], 35, settings).nbytes for i in range(0, 60, 10))
    _, one = _one_encoder_bytes(frames, settings, 35, idr_every=10)
    print(f"chunking: fresh encoder per chunk {fresh / 1000:.1f} KB, one encoder forced IDR/10 {one / 1000:.1f} KB")


def sei_share() -> None:
    frames = read_frames(assets.find("store-aisle-detection.mp4"), 10)
    raw, kept = _one_encoder_bytes(frames, EncoderSettings(fps=16.7), 40)
    print(f"SEI: {(raw - kept) / 1000:.2f} KB of {raw / 1000:.2f} KB ({100 * (raw - kept) / raw:.0f}%)")


def channels_last() -> None:
    torch.set_num_threads(1)
    for name, size in (("yolox-nano", 416), ("fastestdet", 352)):
        detector = create_detector(name).eval()
        x = torch.rand(1, 3, size, size) * 255
        ms = {}
        for fmt in (torch.contiguous_format, torch.channels_last):
            model, xi = detector.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            times = []
            with torch.inference_mode():
                for i in range(35):
                    start = time.perf_counter()
                    model(xi)
                    if i >= 5:  # warm-up
                        times.append(time.perf_counter() - start)
            ms[fmt] = 1000 * float(np.median(times))
        a, b = ms[torch.contiguous_format], ms[torch.channels_last]
        print(f"{name} {size}: contiguous {a:.1f} ms, channels_last {b:.1f} ms, {a / b:.2f}x")


def onnx_agreement() -> None:
    """The setting of tests/test_models.py: max |torch - ONNX Runtime| over the raw outputs."""
    import onnxruntime as ort

    for name, onnx, x in (("yolox-nano", "yolox_nano.onnx", torch.rand(1, 3, 416, 416, generator=torch.Generator().manual_seed(0)) * 255),
                          ("fastestdet", "fastestdet_coco.onnx", torch.rand(1, 3, 352, 352, generator=torch.Generator().manual_seed(0)))):
        with torch.no_grad():
            ours = create_detector(name)(x).numpy()
        session = ort.InferenceSession(str(assets.find(onnx)), providers=["CPUExecutionProvider"])
        theirs = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        print(f"{name}: max |torch - onnxruntime| = {np.abs(ours - theirs).max():.1e}")


def f1_by_crf() -> None:
    """The setting of tests/test_metrics.py: 10-frame chunks, F1 against the originals' output."""
    yolox = create_detector("yolox-nano")
    for video, count, step, crfs in (("store-aisle-detection.mp4", 67, 1, (23, 34, 40, 44)),
                                     ("one-by-one-person-detection.mp4", 140, 10, (23, 44))):
        frames = read_frames(assets.find(video), count, step=step)
        reference = yolox.detect(frames)
        scores = []
        for crf in crfs:
            decoded = []
            for i in range(0, len(frames), 10):
                decoded += decode_chunk(encode_chunk(frames[i : i + 10], crf))
            scores.append(f"{f1_score(yolox.detect(decoded), reference)['f1']:.3f}@CRF{crf}")
        print(video, len(frames), "frames:", ", ".join(scores))


if __name__ == "__main__":
    roi_needs_aq()
    chunking()
    sei_share()
    channels_last()
    onnx_agreement()
    f1_by_crf()
