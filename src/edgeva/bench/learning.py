"""One continuous-learning round measured offline, with the edge's validation gate: the edge
model's F1 against the golden model on held-out frames of a video, before the round, of the
fine-tuned update, and of the model the edge serves afterwards (the update if the gate
swapped it in, else the old model).

The first half of the video feeds the edge as it would be fed live (``window`` frames
spread over it): every ``validation_every``-th frame goes to the validation set (labelled by
YOLOX-Nano, never trained on), the others to the drift collector, whose ``keep`` least
confident frames are labelled by YOLOX-Nano and fine-tuned on
(:func:`edgeva.runtime.learning.fine_tune`, the cloud's retraining service). The gate
(:func:`edgeva.runtime.learning.gate_update`) compares F1 on the validation frames. The
held-out frames come from the second half, never seen by either.
"""

from __future__ import annotations

import copy

import torch

from edgeva import assets
from edgeva.metrics import f1_score
from edgeva.models import create_detector
from edgeva.runtime.learning import DriftCollector, ValidationSet, fine_tune, gate_update
from edgeva.video import open_video, read_frames

__all__ = ["bench_learning", "split_frames", "LEARNING_VIDEOS"]

LEARNING_VIDEOS = ("bottle-detection", "one-by-one-person-detection")  # FastestDet is weak on the first


def split_frames(uri: str, *, window: int, held_out: int = 50) -> tuple[list, list]:
    """``window`` frames spread over the first half of a video and ``held_out`` over the second."""
    with open_video(uri) as probe:
        total = probe.info.frame_count
    total = total or sum(1 for _ in open_video(uri))
    half = total // 2
    train = read_frames(uri, window, step=max(1, half // window))
    test = read_frames(uri, held_out, start=half, step=max(1, (total - half) // held_out))
    return train, test


def bench_learning(video: str, *, epochs: int | list[int] = 10, window: int = 100, keep: int = 20,
                   validation_frames: int = 20, validation_every: int = 5, threads: int = 1) -> list[dict]:
    """One row per number of epochs: held-out F1 before, of the update and after the gate,
    the gate's decision, and whether it agrees with the held-out frames (it swapped in an
    update exactly when the update does not lower held-out F1)."""
    torch.set_num_threads(threads)
    uri = assets.resolve_video(video)
    train, test = split_frames(uri, window=window)
    golden, edge = create_detector("yolox-nano"), create_detector("fastestdet")
    reference = golden.detect(test)
    validation = ValidationSet(validation_frames, validation_every)
    collector = DriftCollector(len(train) - len(train) // validation_every, keep)
    drift = None
    for image, dets in zip(train, edge.detect(train), strict=True):
        if not validation.offer(image):
            drift = collector.add(image, dets) or drift
    (checks, golden_checks), labels = validation.label(golden.detect), golden.detect(drift)
    before = f1_score(edge.detect(test), reference)["f1"]
    rows = []
    for n in [epochs] if isinstance(epochs, int) else epochs:
        update = copy.deepcopy(edge)
        result = fine_tune(update, drift, labels, epochs=n)
        gate = gate_update(edge.detect, update.detect, checks, golden_checks)
        updated = f1_score(update.detect(test), reference)["f1"]
        rows.append({
            "video": video, "drift_frames": len(drift), "labels": result.objects, "epochs": n,
            "train_loss": f"{result.loss_before:.3f} -> {result.loss_after:.3f}", "validation_frames": gate.frames,
            "validation_f1": f"{gate.f1_before:.3f} -> {gate.f1_after:.3f}", "swapped": gate.accepted,
            "held_out": len(test), "f1_before": before, "f1_update": updated,
            "f1_after": updated if gate.accepted else before, "gate_agrees": gate.accepted == (updated >= before),
            "train_s": result.seconds,
        })
    return rows
