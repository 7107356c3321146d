"""Training Mainstream apps: one labelled stream, cached base features, a branch per
(app, freeze point), and the held-out measurements the scheduler needs.

1. :func:`load_stream` resamples every video to one stream rate ``F`` (the videos differ in
   fps), labels each kept frame with YOLOX-Nano on the original frame (per-class counts,
   cached on disk), and keeps a small copy at the base's input size.
2. Each video is split in time: the first ``train_fraction`` for training, the rest held
   out, so held-out events are whole and unseen.
3. The frozen base runs once over all frames; its output after every freeze point is cached,
   so training a branch at freeze point ``k`` starts from features, not pixels.
4. Per app: event length ``L``, frequency ``e`` from the labels at ``F``; per freeze point the
   held-out per-frame recall ``p`` and false-positive rate ``q``; the miss correlation ``c``
   from consecutive held-out frames inside events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeva.errors import ConfigError, EdgevaError
from edgeva.mainstream.apps import FORMAT, AppSpec
from edgeva.mainstream.base import (
    FREEZE_POINTS,
    INPUT_SIZE,
    SEGMENT_NAMES,
    BaseSegments,
    Branch,
    load_base,
    preprocess,
    profile_latencies,
    resize_frame,
)

__all__ = ["Stream", "resample", "load_stream", "branch_scores", "base_features", "run_lengths", "event_stats", "train_apps", "TrainOptions"]

SCORE_THRESHOLD = 0.4  # a YOLOX-Nano object counts towards a label at this confidence
LABEL_INPUT = (416, 416)  # YOLOX-Nano input (letterboxed): its native size, ~5x cheaper than 768x432
FIRE = 0.5  # an app fires on a frame when its probability is at least this


@dataclass
class Stream:
    """The videos as one labelled stream at ``fps``."""

    fps: int
    images: np.ndarray  # (T, H, W, 3) uint8 at the base's input size
    counts: np.ndarray  # (T, 80) YOLOX-Nano objects per COCO class (score >= SCORE_THRESHOLD)
    video: np.ndarray  # (T,) index into ``names``
    names: list[str]  # the videos

    def split(self, train_fraction: float) -> np.ndarray:
        """(T,) bool: True for training frames (the first part of every video)."""
        train = np.zeros(len(self.video), dtype=bool)
        for v in range(len(self.names)):
            idx = np.flatnonzero(self.video == v)
            train[idx[: int(round(len(idx) * train_fraction))]] = True
        return train


def resample(path: str, fps: int, limit: int | None):
    """Frames of ``path`` at ``fps`` (by timestamp), at most ``limit`` of them."""
    from edgeva.video import open_video

    next_t, kept = 0.0, 0
    for frame in open_video(path):
        if frame.time + 1e-6 < next_t:
            continue
        yield frame.image
        kept += 1
        next_t += 1.0 / fps
        if limit is not None and kept >= limit:
            return


def load_stream(videos: Sequence[str], fps: int, *, limit: int | None = None, size: tuple[int, int] = INPUT_SIZE,
                on_frame: Callable[[], None] | None = None) -> Stream:
    """Label and shrink the videos (labels cached per video, rate and limit).

    Raises:
        VideoError/AssetError: a video cannot be found or decoded.
        EdgevaError: a video yields no frames.
    """
    from edgeva import assets
    from edgeva.models import create_detector

    if fps < 1:
        raise ConfigError(f"stream fps {fps}: must be at least 1")
    detector = None
    images, counts, ids = [], [], []
    for v, video in enumerate(videos):
        path = assets.resolve_video(video)
        key = hashlib.sha256(f"{Path(path).resolve()}|{Path(path).stat().st_size if Path(path).exists() else 0}|{fps}|{limit}|{size}|{SCORE_THRESHOLD}|{LABEL_INPUT}".encode()).hexdigest()[:16]
        cache = assets.cache_dir() / "mainstream" / f"{Path(path).stem}-{key}.npz"
        if cache.is_file():
            with np.load(cache) as data:
                small, count = data["images"], data["counts"]
            if on_frame:
                for _ in range(len(small)):
                    on_frame()
        else:
            if detector is None:
                detector = create_detector("yolox-nano", score_threshold=SCORE_THRESHOLD, input_size=LABEL_INPUT)
            small, count = _label(path, fps, limit, size, detector, on_frame)
            if not len(small):
                raise EdgevaError(f"{video}: no frames")
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, images=small, counts=count)
        images.append(small)
        counts.append(count)
        ids.append(np.full(len(small), v, dtype=np.int16))
    return Stream(fps, np.concatenate(images), np.concatenate(counts), np.concatenate(ids), list(videos))


def _label(path: str, fps: int, limit: int | None, size: tuple[int, int], detector,
           on_frame: Callable[[], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """Small copies and per-class YOLOX-Nano counts of the resampled frames (batches of 8)."""
    small, counts, batch = [], [], []
    frames = resample(path, fps, limit)
    while True:
        batch = [image for _, image in zip(range(8), frames)]
        if not batch:
            break
        small += [resize_frame(image, size) for image in batch]
        with torch.inference_mode():
            for det in detector.detect(batch, batch_size=8):
                counts.append(np.bincount(det.class_ids, minlength=80)[:80])
                if on_frame:
                    on_frame()
    if not small:
        return np.zeros((0,)), np.zeros((0, 80))
    return np.stack(small), np.stack(counts).astype(np.int16)


def run_lengths(labels: np.ndarray, video: np.ndarray) -> list[int]:
    """Lengths of the runs of True in ``labels``, cut at video boundaries."""
    runs = []
    for v in np.unique(video):
        seq = labels[video == v].astype(np.int8)
        edges = np.diff(np.concatenate([[0], seq, [0]]))
        runs += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    return [int(r) for r in runs]


def event_stats(labels: np.ndarray, video: np.ndarray, fps: int) -> tuple[float, float]:
    """(L seconds, e): mean event length, and the fraction of L-long windows holding an event."""
    runs = run_lengths(labels, video)
    if not runs:
        raise ValueError("no events")
    length = float(np.mean(runs))
    window = max(1, int(round(length)))
    hit = total = 0
    for v in np.unique(video):
        seq = labels[video == v]
        for start in range(0, len(seq), window):
            total += 1
            hit += bool(seq[start : start + window].any())
    return length / fps, hit / total


def miss_correlation(labels: np.ndarray, fired: np.ndarray, video: np.ndarray) -> float:
    """c such that P(miss | previous frame in the event missed) = (1 - p) + p c (clipped to [0, 1])."""
    same = (video[1:] == video[:-1]) & labels[1:] & labels[:-1]
    prev_miss = same & ~fired[:-1]
    if prev_miss.sum() == 0 or labels.sum() == 0:
        return 0.0
    p = fired[labels].mean()
    kappa = (~fired[1:])[prev_miss].mean()
    return float(np.clip((kappa - (1 - p)) / p, 0.0, 1.0)) if p > 0 else 1.0


@torch.inference_mode()
def base_features(base: BaseSegments, images: np.ndarray, batch: int = 64) -> dict[int, torch.Tensor]:
    """The frozen base's output after every freeze point, for every frame."""
    feats: dict[int, list[torch.Tensor]] = {k: [] for k in FREEZE_POINTS}
    for i in range(0, len(images), batch):
        x = preprocess(images[i : i + batch])
        for k in FREEZE_POINTS:
            x = base.segments[k - 1](x)
            feats[k].append(x)
    return {k: torch.cat(v) for k, v in feats.items()}


@dataclass(frozen=True)
class TrainOptions:
    stream_fps: int = 5  # F: every video is resampled to this rate
    frames_per_video: int | None = None  # keep at most this many stream frames per video
    train_fraction: float = 0.6  # first part of each video trains, the rest is held out
    max_train_frames: int = 600  # subsample training frames to at most this many
    epochs: int = 4
    batch_size: int = 32
    freeze_points: tuple[int, ...] = tuple(FREEZE_POINTS)
    seed: int = 0


def _train_branch(base: BaseSegments, freeze: int, x: torch.Tensor, y: torch.Tensor, opts: TrainOptions) -> Branch:
    torch.manual_seed(opts.seed * 1000 + freeze)
    branch = Branch(base, freeze)
    for p in branch.parameters():
        p.requires_grad_(True)
    pos = float(y.sum())
    weight = torch.tensor(min(10.0, max(0.1, (len(y) - pos) / max(pos, 1.0))))
    optimiser = torch.optim.Adam([
        {"params": branch.segments.parameters(), "lr": 3e-4},
        {"params": branch.head.parameters(), "lr": 3e-3},
    ])
    generator = torch.Generator().manual_seed(opts.seed)
    branch.train()
    for _ in range(opts.epochs):
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), opts.batch_size):
            idx = order[i : i + opts.batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(branch(x[idx]), y[idx], pos_weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return branch.eval()


@torch.inference_mode()
def branch_scores(branch: Branch, x: torch.Tensor, batch: int = 128) -> np.ndarray:
    return torch.cat([torch.sigmoid(branch(x[i : i + batch])) for i in range(0, len(x), batch)]).numpy()


def train_apps(specs: Sequence[AppSpec], videos: Sequence[str], out: str | Path, opts: TrainOptions = TrainOptions(),
               progress: Callable[[str, int], Callable[[], None]] | None = None) -> dict:
    """Train every app at every freeze point and write the apps folder; returns the manifest.

    ``progress(description, total)`` returns a callable to advance a progress bar.

    Raises:
        ConfigError: an app has no event in the training or the held-out part of the videos.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tick = progress or (lambda description, total: (lambda: None))
    stream = load_stream(videos, opts.stream_fps, limit=opts.frames_per_video,
                         on_frame=tick("label frames (YOLOX-Nano)", 0))
    train = stream.split(opts.train_fraction)
    test = ~train
    labels = np.stack([s.labels(stream.counts) for s in specs])
    for spec, lab in zip(specs, labels):
        if not lab[train].any() or not lab[test].any():
            raise ConfigError(f"app {spec.name}: no event in the {'training' if not lab[train].any() else 'held-out'} "
                              f"part of {', '.join(videos)}; choose other videos or another app")
        if lab[train].all():
            raise ConfigError(f"app {spec.name}: the event never ends in {', '.join(videos)}; nothing to classify")
    base = load_base()
    feats = base_features(base, stream.images)
    rng = np.random.default_rng(opts.seed)
    train_idx = np.flatnonzero(train)
    if len(train_idx) > opts.max_train_frames:
        train_idx = np.sort(rng.choice(train_idx, opts.max_train_frames, replace=False))
    test_idx = np.flatnonzero(test)
    scores = np.zeros((len(specs), len(opts.freeze_points), len(test_idx)), dtype=np.float32)
    apps = []
    advance = tick("train apps x freeze points", len(specs) * len(opts.freeze_points))
    for a, spec in enumerate(specs):
        entry: dict = {"cls": spec.cls, "min_count": spec.min_count, "name": spec.name,
                       "recall": {}, "false_positive": {}, "weights": {}}
        y = torch.from_numpy(labels[a][train_idx].astype(np.float32))
        for j, k in enumerate(opts.freeze_points):
            branch = _train_branch(base, k, feats[k][train_idx], y, opts)
            scores[a, j] = branch_scores(branch, feats[k][test_idx])
            fired = scores[a, j] >= FIRE
            truth = labels[a][test_idx]
            entry["recall"][str(k)] = float(fired[truth].mean())
            entry["false_positive"][str(k)] = float(fired[~truth].mean()) if (~truth).any() else 0.0
            rel = f"weights/{spec.slug}/freeze-{k}.pt"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            torch.save(branch.state_dict(), out / rel)
            entry["weights"][str(k)] = rel
            advance()
        length, frequency = event_stats(labels[a], stream.video, stream.fps)
        truth, vid = labels[a][test_idx], stream.video[test_idx]
        corr = [miss_correlation(truth, scores[a, j] >= FIRE, vid) for j in range(len(opts.freeze_points))]
        entry["stats"] = {"event_length_s": length, "event_frequency": frequency, "correlation": float(np.mean(corr))}
        apps.append(entry)
    manifest = {
        "format": FORMAT,
        "base": {
            "model": "shufflenetv2_x0.5_imagenet", "input_size": list(INPUT_SIZE), "segments": list(SEGMENT_NAMES),
            "freeze_points": {str(k): FREEZE_POINTS[k] for k in opts.freeze_points},
            "layer_latencies_ms": profile_latencies(base),
        },
        "stream_fps": stream.fps, "videos": list(videos), "frames": int(len(stream.video)),
        "train_frames": int(len(train_idx)), "heldout_frames": int(len(test_idx)),
        "frames_per_video": opts.frames_per_video, "train_fraction": opts.train_fraction, "epochs": opts.epochs,
        "fire_threshold": FIRE,
        "apps": apps,
    }
    np.savez(out / "heldout.npz", labels=labels[:, test_idx], scores=scores, video=stream.video[test_idx])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
