"""One evaluation worker: the final DNN loaded once, serving references and replays.

The harness plans the work and an executor (:mod:`edgeva.executor`) runs it; each worker (the
driver process itself, or a Ray actor) builds the final DNN, Vigil's camera detector and the
checkpoints (selector, codec) once and keeps the decoded frames of the videos it replays, so
a task costs only its own replay. Tasks are plain data in and out: a :class:`VideoPlan` from
:meth:`EvalWorker.reference`, an evaluation record from :meth:`EvalWorker.replay`. Both read
and fill the on-disk cache (:mod:`edgeva.eval.cache`), which must be shared storage when the
workers are on several machines.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeva import assets
from edgeva.errors import ConfigError
from edgeva.eval.cache import (
    cache_file,
    detections_from_json,
    load_entry,
    outcomes_from_json,
    outcomes_to_json,
    store_entry,
)
from edgeva.eval.config import REPLAY_VERSION, EvalConfig
from edgeva.metrics import DetectionF1
from edgeva.models import Detections, create_detector
from edgeva.net import Link, chunk_timings
from edgeva.schemes import SchemeContext, Server, create_scheme, scheme_class
from edgeva.schemes.base import ChunkOutcome, ProfileClip
from edgeva.video import EncoderSettings, open_video

__all__ = ["EvalWorker", "VideoPlan", "summarize", "read_video"]


@dataclass(frozen=True)
class VideoPlan:
    """What the driver learns from a video's reference task: enough to plan its replays."""

    spec: str  # as given by the user
    path: str  # resolved (the workers read it from here)
    name: str
    frames: int
    fps: float
    key: dict  # the reference's cache key (part of every replay key)
    plan: list[tuple[str, dict]]  # (scheme, configuration) to replay
    reference: list[Detections]


def summarize(outcomes: list[ChunkOutcome], reference: list[Detections], *, fps: float, link: Link, score_threshold: float = 0.4, iou_threshold: float = 0.5) -> dict:
    """Accuracy, bytes, delay and cost of one replay. ``bytes`` is every byte moved: uplink
    (chunks and any adaptation frames) plus downlink (adapted selector weights)."""
    results = [d for o in outcomes for d in o.detections]
    if len(results) != len(reference):
        raise ValueError(f"replay has results for {len(results)} frames, the reference for {len(reference)}")
    evaluator = DetectionF1(iou_threshold=iou_threshold, score_threshold=score_threshold)
    evaluator.process(results, reference)
    acc = evaluator.evaluate()
    ready = [(o.first_frame + o.frames) / fps for o in outcomes]
    timings = chunk_timings(ready, [o.rounds for o in outcomes], link)
    delays = np.array([t.delay_s for t, o in zip(timings, outcomes, strict=True) if o.rounds] or [0.0])
    frames = len(results)
    uplink, downlink = sum(o.nbytes for o in outcomes), sum(o.downlink_bytes for o in outcomes)
    nbytes = uplink + downlink  # all costs: an adapting selector's weights travel too
    return {
        "f1": acc["f1"], "precision": acc["precision"], "recall": acc["recall"],
        "bytes": nbytes, "kbps": nbytes * 8 / 1000 / (frames / fps),
        "uplink_bytes": uplink, "adapt_up_bytes": sum(o.adapt_up_bytes for o in outcomes), "downlink_bytes": downlink,
        "adapt_server_s": sum(o.adapt_server_s for o in outcomes),
        "frames": frames, "sent_frames": sum(o.sent_frames for o in outcomes),
        "delay_mean_s": float(delays.mean()), "delay_p95_s": float(np.percentile(delays, 95)),
        "camera_ms_per_frame": 1000 * sum(r.camera_s for o in outcomes for r in o.rounds) / frames,
        "server_ms_per_frame": 1000 * sum(r.server_s for o in outcomes for r in o.rounds) / frames,
        "high_fraction": float(np.mean([o.high_fraction for o in outcomes])),
    }


def _video_key(path: str) -> str:
    ident = assets.file_identity(path) or path
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def read_video(spec: str, limit: int | None) -> tuple[str, list[np.ndarray], float]:
    path = assets.resolve_video(spec)
    source = open_video(path, limit=limit)
    frames = [f.image for f in source]
    if not frames:
        raise ConfigError(f"{spec}: no frames")
    return path, frames, source.info.fps


class EvalWorker:
    """The models of one evaluation, built once; references and replays on demand.

    Args:
        cfg: the evaluation.
        checkpoint_ids: per (video stem, scheme), the content hash of each checkpoint it uses (replay keys).
    """

    FRAMES_KEPT = 2  # decoded videos kept (tasks arrive grouped by video)

    def __init__(self, cfg: EvalConfig, checkpoint_ids: dict[tuple[str, str], dict[str, str]]):
        torch.set_num_threads(cfg.threads)  # pinned: same detections on any machine of the same kind
        self.cfg, self.checkpoint_ids, self.device = cfg, checkpoint_ids, cfg.device
        self.detector = create_detector(cfg.model, score_threshold=0.1, device=self.device)  # low: DDS needs its unsure boxes
        self.server = Server(self.detector)
        self._camera_detector = None
        self._frames: OrderedDict[tuple[str, int | None], tuple[list[np.ndarray], float]] = OrderedDict()
        self._profile_clips: dict[str, ProfileClip] = {}
        self._contexts: dict[str, SchemeContext] = {}

    def camera_detector(self):
        if self._camera_detector is None:
            self._camera_detector = create_detector(self.cfg.camera_model, score_threshold=0.1, device=self.device)
        return self._camera_detector

    def _video(self, path: str, limit: int | None) -> tuple[list[np.ndarray], float]:
        if (path, limit) not in self._frames:
            _, frames, fps = read_video(path, limit)
            self._frames[(path, limit)] = (frames, fps)
            while len(self._frames) > self.FRAMES_KEPT:
                self._frames.popitem(last=False)
        self._frames.move_to_end((path, limit))
        return self._frames[(path, limit)]

    def _reference(self, path: str, frames: list[np.ndarray]) -> tuple[dict, list[Detections]]:
        key = {"video": _video_key(path), "frames": len(frames), "model": self.cfg.model}
        if self.device != "cpu":  # another device's arithmetic may move a detection: its own entries
            key["device"] = self.device.split(":")[0]
        ref_file = cache_file("reference", key)
        cached = load_entry(ref_file) if self.cfg.use_cache else None
        reference = detections_from_json(cached, len(frames)) if cached is not None else None
        if reference is None:
            reference = self.detector.detect(frames)
            store_entry(ref_file, {"detections": [d.to_json() for d in reference]})
        return key, reference

    def profile_specs(self) -> list[str]:
        return list(self.cfg.profile_videos) if self.cfg.profile_videos is not None else assets.sample_videos()

    def profile_names(self, video: str) -> list[str]:
        return [Path(s).stem for s in self.profile_specs() if Path(s).stem != video]

    def _profile_clip(self, spec: str) -> ProfileClip:
        if spec not in self._profile_clips:
            path, frames, _fps = read_video(spec, self.cfg.frames or self.cfg.profile_frames)
            self._profile_clips[spec] = ProfileClip(Path(path).stem, frames, self._reference(path, frames)[1])
        return self._profile_clips[spec]

    def _profiles_for(self, video: str) -> Callable[[], list[ProfileClip]]:
        return lambda: [self._profile_clip(s) for s in self.profile_specs() if Path(s).stem != video]

    def _context(self, path: str, frames: list[np.ndarray], fps: float) -> SchemeContext:
        if path not in self._contexts:
            cfg = self.cfg
            self._contexts[path] = SchemeContext(
                server=self.server, settings=EncoderSettings(codec=cfg.codec, preset=cfg.preset, fps=fps),
                frame_size=frames[0].shape[:2], fps=fps, camera_detector=self.camera_detector,
                checkpoints=cfg.checkpoints_of(Path(path).stem),
                profile_clips=self._profiles_for(Path(path).stem), chunk=cfg.chunk,
            )
        return self._contexts[path]

    def reference(self, spec: str) -> VideoPlan:
        """Task: the final DNN's results on a video's original frames (cached) and its replay plan."""
        cfg = self.cfg
        path = assets.resolve_video(spec)
        frames, fps = self._video(path, cfg.frames)
        key, reference = self._reference(path, frames)
        ctx = self._context(path, frames, fps)
        plan = [(name, {**config, **cfg.scheme_options.get(name, {})}) for name in cfg.schemes for config in self._configs(name, ctx)]
        return VideoPlan(spec, path, Path(path).stem, len(frames), fps, key, plan, reference)

    def _configs(self, name: str, ctx: SchemeContext) -> list[dict]:
        """A scheme's configurations: those given for it, else its sweep (or its default)."""
        if name in self.cfg.configs:
            return [dict(c) for c in self.cfg.configs[name]]
        return scheme_class(name).sweep(ctx) if self.cfg.sweep else [{}]

    def replay_key(self, video: VideoPlan, name: str, config: dict) -> dict:
        cfg = self.cfg
        return {
            **video.key, "scheme": name, "config": config, "chunk": cfg.chunk, "codec": cfg.codec, "preset": cfg.preset,
            "checkpoints": self.checkpoint_ids[video.name, name], "camera_model": cfg.camera_model if name == "vigil" else None,
            "profile": [self.profile_names(video.name), cfg.frames or cfg.profile_frames] if scheme_class(name).profiles else None,
            "version": REPLAY_VERSION,
        }

    def replay(self, video: VideoPlan, name: str, config: dict) -> dict:
        """Task: replay one configuration of one scheme on a video (cached) and score it."""
        cfg = self.cfg
        replay_file = cache_file("replay", self.replay_key(video, name, config))
        cached = load_entry(replay_file) if cfg.use_cache else None
        outcomes = outcomes_from_json(cached) if cached is not None else None
        if outcomes is None:
            frames, fps = self._video(video.path, cfg.frames)
            scheme = create_scheme(name, self._context(video.path, frames, fps), **config)
            scheme.reset()
            outcomes = [scheme.process(frames[i : i + cfg.chunk], i) for i in range(0, len(frames), cfg.chunk)]
            store_entry(replay_file, outcomes_to_json(outcomes))
        metrics = summarize(outcomes, video.reference, fps=video.fps, link=cfg.link, score_threshold=cfg.score_threshold, iou_threshold=cfg.iou_threshold)
        return {"video": video.name, "scheme": name, "config": config or {"default": True}, **metrics}
