"""One continuous-learning round measured offline: the edge model's F1 against the golden
model on held-out frames of a video, before and after fine-tuning on its drift frames.

The first half of the video feeds the drift collector (``window`` frames spread over it);
its ``keep`` least confident frames are labelled by YOLOX-Nano and FastestDet is fine-tuned
on them (:func:`edgeva.runtime.learning.fine_tune`, the cloud's retraining service). The
held-out frames come from the second half, never seen in training.
"""

from __future__ import annotations

import torch

from edgeva import assets
from edgeva.metrics import f1_score
from edgeva.models import create_detector
from edgeva.runtime.learning import DriftCollector, fine_tune
from edgeva.video import open_video, read_frames

__all__ = ["bench_learning", "split_frames"]


def split_frames(uri: str, *, window: int, held_out: int = 50) -> tuple[list, list]:
    """``window`` frames spread over the first half of a video and ``held_out`` over the second."""
    total = open_video(uri).info.frame_count or sum(1 for _ in open_video(uri))
    half = total // 2
    train = read_frames(uri, window, step=max(1, half // window))
    test = read_frames(uri, held_out, start=half, step=max(1, (total - half) // held_out))
    return train, test


def bench_learning(video: str, *, epochs: int = 10, window: int = 100, keep: int = 20, threads: int = 1) -> list[dict]:
    torch.set_num_threads(threads)
    uri = assets.resolve_video(video)
    train, test = split_frames(uri, window=window)
    golden, edge = create_detector("yolox-nano"), create_detector("fastestdet")
    reference = golden.detect(test)
    collector = DriftCollector(len(train), keep)
    drift = None
    for image, dets in zip(train, edge.detect(train), strict=True):
        drift = collector.add(image, dets) or drift
    before = f1_score(edge.detect(test), reference)
    result = fine_tune(edge, drift, golden.detect(drift), epochs=epochs)
    after = f1_score(edge.detect(test), reference)
    common = {"drift_frames": len(drift), "labels": result.objects, "held_out": len(test)}
    return [
        {"edge model": "FastestDet (COCO)", **common, "f1": before["f1"], "precision": before["precision"],
         "recall": before["recall"], "train_loss": result.loss_before, "train_s": 0.0},
        {"edge model": f"after 1 round ({epochs} epochs)", **common, "f1": after["f1"], "precision": after["precision"],
         "recall": after["recall"], "train_loss": result.loss_after, "train_s": result.seconds},
    ]
