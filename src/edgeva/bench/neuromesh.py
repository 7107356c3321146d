"""NeuroMesh's costs and accuracy.

:func:`bench_neuromesh`: at 1280x720 on one thread, the camera's sampler (resize + sampler
network + top-k), its blanked encoding, and the server's reconstruction (MAE + paint-in), and,
with a zero-decoding head, the server's two ways to an answer: reconstruct-then-detect (paint-in
+ YOLOX-Nano) against zero decoding (encoder + head), each in CPU ms per frame
(``time.process_time``: on a shared machine, wall-clock time counts the other processes' turns
too), best of ``repeats`` interleaved runs.

:func:`compare_servers`: on the same chunks (one camera pass per chunk), F1 against YOLOX-Nano
on the original frames and server CPU ms per frame of reconstruct-then-detect and, with a head,
of zero decoding, for any frame range (e.g. frames held out of training).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import torch

from edgeva import assets
from edgeva.metrics import DetectionF1
from edgeva.models import Detections, create_detector
from edgeva.neuromesh.codec import CameraChunk, NeuroMeshCodec, load_mae, pack_mask
from edgeva.neuromesh.zero import ZeroDecoder, load_head
from edgeva.video import EncoderSettings, decode_chunk, read_frames

__all__ = ["bench_neuromesh", "compare_servers"]


def _servers(codec: NeuroMeshCodec, zero: ZeroDecoder | None) -> dict[str, Callable[[CameraChunk], list[Detections]]]:
    detector = create_detector("yolox-nano", score_threshold=0.1)  # as the evaluation's server
    servers = {"reconstruct-then-detect (decode + MAE paint-in + YOLOX-Nano)": lambda s: detector.detect(codec.server(s.chunk, pack_mask(s.mask)))}
    if zero is not None:
        servers["zero decoding (decode + encoder + latent head)"] = lambda s: zero.server(s.chunk, pack_mask(s.mask))
    return servers


def bench_neuromesh(mae: str, *, head: str | None = None, video: str = "car-detection.mp4", size: tuple[int, int] = (1280, 720),
                    chunk: int = 10, mask_ratio: float = 0.7, crf: int = 30, repeats: int = 3) -> list[dict]:
    """One row per stage: ms per frame on one thread for a ``chunk``-frame chunk upscaled to ``size``."""
    torch.set_num_threads(1)
    codec = load_mae(mae)
    zero = ZeroDecoder(codec, load_head(head)) if head else None
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in read_frames(assets.find(video), chunk)]
    settings = EncoderSettings(threads=1)
    sent = codec.camera(frames, mask_ratio=mask_ratio, crf=crf, settings=settings)  # warm-up
    stages = {
        "sampler (camera)": lambda: codec.choose(frames, mask_ratio),
        "sampler + blank + encode (camera)": lambda: codec.camera(frames, mask_ratio=mask_ratio, crf=crf, settings=settings),
        "decode (server)": lambda: decode_chunk(sent.chunk),
        "decode + MAE paint-in (server)": lambda: codec.server(sent.chunk, pack_mask(sent.mask)),
    }
    if zero is not None:
        for name, serve in _servers(codec, zero).items():
            serve(sent)  # warm-up (grids, caches)
            stages[f"{name}, server"] = lambda serve=serve: serve(sent)
    best = dict.fromkeys(stages, float("inf"))
    for _ in range(repeats):
        for name, run in stages.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return [{"stage": k, "CPU ms per frame": 1000 * v / chunk, "KB per chunk": sent.data_bytes / 1000} for k, v in best.items()]


def compare_servers(mae: str, videos: list[str], *, head: str | None = None, start: int = 0, frames: int = 20, chunk: int = 10,
                    mask_ratio: float = 0.7, crf: int = 30) -> list[dict]:
    """Per video and server: F1 (IoU 0.5, score 0.4) against YOLOX-Nano on the original frames
    ``start`` to ``start + frames``, KB sent and server CPU ms per frame, on the same chunks."""
    torch.set_num_threads(1)
    codec = load_mae(mae)
    servers = _servers(codec, ZeroDecoder(codec, load_head(head)) if head else None)
    reference = create_detector("yolox-nano", score_threshold=0.1)
    rows = []
    for video in videos:
        originals = read_frames(assets.resolve_video(video), frames, start=start)
        truth = reference.detect(originals)
        scores = {name: (DetectionF1(), [0.0]) for name in servers}
        sent_bytes = 0
        for i in range(0, len(originals), chunk):
            sent = codec.camera(originals[i : i + chunk], mask_ratio=mask_ratio, crf=crf, settings=EncoderSettings(threads=1), first_frame=i)
            sent_bytes += sent.data_bytes
            for name, serve in servers.items():
                begin = time.process_time()
                results = serve(sent)
                scores[name][1][0] += time.process_time() - begin
                scores[name][0].process(results, truth[i : i + chunk])
        for name, (f1, seconds) in scores.items():
            counts = f1.evaluate()
            rows.append({"video": video, "server": name, "frames": f"{start}-{start + len(originals) - 1}", "mask ratio": mask_ratio,
                         "CRF": crf, "KB": sent_bytes / 1000, "F1": counts["f1"], "TP/FP/FN": f"{counts['tp']}/{counts['fp']}/{counts['fn']}",
                         "server CPU ms per frame": 1000 * seconds[0] / len(originals)})
    return rows
