"""Replay videos through streaming schemes and measure accuracy, bytes, delay and cost.

For each video the final DNN's output on the original frames is the reference. Each scheme
configuration replays the video in k-frame chunks (:class:`~edgeva.schemes.Scheme`); its
per-frame results are scored against the reference (F1 at IoU 0.5), its uploads go through
the shared-link model (:func:`~edgeva.net.chunk_timings`), and its camera and server times
are the ones measured while replaying. Replays and references are cached on disk, keyed by
everything that determines them, so re-running (or changing only the link) is cheap.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeva import assets
from edgeva.errors import ConfigError
from edgeva.metrics import DetectionF1
from edgeva.models import Detections, create_detector
from edgeva.net import Exchange, Link, chunk_timings
from edgeva.schemes import SchemeContext, Server, create_scheme, scheme_class
from edgeva.schemes.base import ChunkOutcome, ProfileClip
from edgeva.video import EncoderSettings, open_video

__all__ = ["EvalConfig", "EvalResult", "evaluate", "summarize", "pick_best", "REPLAY_VERSION"]

REPLAY_VERSION = 4  # 4: DDS re-sends only unsure regions, Reducto online, composed knobs; 3: x264 cpu-independent (reproducible bytes); 2: sampled frames encoded at the nominal rate. Bump when a scheme's behaviour changes: cached replays are keyed by it


@dataclass
class EvalConfig:
    videos: Sequence[str]
    schemes: Sequence[str]
    model: str = "yolox-nano"  # the final DNN on the server
    checkpoints: dict[str, str] = field(default_factory=dict)  # kind -> path: "selector" (AccMPEG), ... (Scheme.checkpoints)
    # Per evaluated video (stem): kind -> path, overriding ``checkpoints`` for that video (the
    # leave-one-video-out selectors: each video's was trained without it).
    video_checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    frames: int | None = None  # per video, from the start
    chunk: int = 10
    target_f1: float = 0.9
    link: Link = field(default_factory=Link)
    score_threshold: float = 0.4  # F1 counts detections at or above this score
    iou_threshold: float = 0.5
    codec: str = "h264"
    preset: str = "veryfast"
    sweep: bool = True  # False: each scheme's default configuration only
    camera_model: str = "fastestdet"  # Vigil's camera-side detector
    use_cache: bool = True
    # Videos schemes may profile on offline (Reducto's threshold map): never the evaluated one.
    # None: the shared sample videos; each is read up to ``frames`` (or ``profile_frames``) frames.
    profile_videos: Sequence[str] | None = None
    profile_frames: int = 101
    # Torch threads for the final DNN and AccGrad, pinned (not the machine's core count) so that
    # the same command gives the same detections, hence F1, on any machine of the same kind.
    threads: int = 2


@dataclass
class EvalResult:
    records: list[dict]
    best: list[dict]
    config: EvalConfig
    seconds: float


def _video_key(path: str) -> str:
    ident = assets.file_identity(path) or path
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def _cache_file(kind: str, payload: dict) -> Path:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return assets.cache_dir() / "eval" / kind / f"{digest}.json"


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache entry is recomputed, not trusted


def _store(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _outcomes_to_json(outcomes: list[ChunkOutcome]) -> dict:
    return {
        "chunks": [
            {
                "first_frame": o.first_frame, "frames": o.frames, "sent_frames": o.sent_frames, "high_fraction": o.high_fraction,
                "rounds": [[r.camera_s, r.nbytes, r.server_s] for r in o.rounds],
                "detections": [d.to_json() for d in o.detections],
            }
            for o in outcomes
        ]
    }


def _outcomes_from_json(data: dict) -> list[ChunkOutcome]:
    return [
        ChunkOutcome(
            c["first_frame"], c["frames"], [Exchange(*r) for r in c["rounds"]],
            [Detections.from_json(d) for d in c["detections"]], c["sent_frames"], c["high_fraction"],
        )
        for c in data["chunks"]
    ]


def summarize(outcomes: list[ChunkOutcome], reference: list[Detections], *, fps: float, link: Link, score_threshold: float = 0.4, iou_threshold: float = 0.5) -> dict:
    """Accuracy, bytes, delay and cost of one replay."""
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
    nbytes = sum(o.nbytes for o in outcomes)
    return {
        "f1": acc["f1"], "precision": acc["precision"], "recall": acc["recall"],
        "bytes": nbytes, "kbps": nbytes * 8 / 1000 / (frames / fps),
        "frames": frames, "sent_frames": sum(o.sent_frames for o in outcomes),
        "delay_mean_s": float(delays.mean()), "delay_p95_s": float(np.percentile(delays, 95)),
        "camera_ms_per_frame": 1000 * sum(r.camera_s for o in outcomes for r in o.rounds) / frames,
        "server_ms_per_frame": 1000 * sum(r.server_s for o in outcomes for r in o.rounds) / frames,
        "high_fraction": float(np.mean([o.high_fraction for o in outcomes])),
    }


def pick_best(records: list[dict], target_f1: float) -> list[dict]:
    """Per (video, scheme): the cheapest configuration (fewest bytes) with F1 >= target, or
    the most accurate one, flagged ``reaches_target: false``, when none reaches it."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["video"], r["scheme"]), []).append(r)
    best = []
    for (_video, _scheme), rows in groups.items():
        good = [r for r in rows if r["f1"] >= target_f1]
        choice = min(good, key=lambda r: (r["bytes"], r["delay_mean_s"])) if good else max(rows, key=lambda r: (r["f1"], -r["bytes"]))
        best.append({**choice, "reaches_target": bool(good)})
    return best


def _checkpoints_of(cfg: EvalConfig, video_name: str) -> dict[str, str]:
    return {**cfg.checkpoints, **cfg.video_checkpoints.get(video_name, {})}


def _check_checkpoints(cfg: EvalConfig, log: Callable[[str], None]) -> dict[tuple[str, str], dict[str, str]]:
    """Before any work: every scheme exists and has its checkpoints for every video, each
    loads. Returns, per (video stem, scheme), the content hash of each checkpoint it uses
    (part of its replays' cache keys)."""
    ids: dict[tuple[str, str], dict[str, str]] = {}
    checked: dict[tuple, dict[str, str]] = {}
    for name in cfg.schemes:
        cls = scheme_class(name)  # unknown names fail here
        for video in cfg.videos:
            checkpoints = {kind: path for kind, path in _checkpoints_of(cfg, Path(video).stem).items() if kind in cls.checkpoints}
            missing = [kind for kind in cls.checkpoints if not checkpoints.get(kind)]
            if missing:
                raise ConfigError(f"scheme {name} needs --{missing[0]} PATH")
            key = (name, *sorted(checkpoints.items()))
            if key not in checked:
                for kind in cls.checkpoints:
                    if not Path(checkpoints[kind]).is_file():
                        raise ConfigError(f"{checkpoints[kind]}: no such {kind} checkpoint")
                cls.check_checkpoints(checkpoints, model=cfg.model, log=log)
                checked[key] = {kind: hashlib.sha256(Path(checkpoints[kind]).read_bytes()).hexdigest()[:16] for kind in cls.checkpoints}
            ids[Path(video).stem, name] = checked[key]
    return ids


def _read_video(spec: str, limit: int | None) -> tuple[str, list[np.ndarray], float]:
    path = assets.resolve_video(spec)
    source = open_video(path, limit=limit)
    frames = [f.image for f in source]
    if not frames:
        raise ConfigError(f"{spec}: no frames")
    return path, frames, source.info.fps


def _reference(detector, path: str, frames: list[np.ndarray], cfg: EvalConfig) -> tuple[dict, list[Detections]]:
    """The final DNN's results on the original frames (cached), and their cache key."""
    key = {"video": _video_key(path), "frames": len(frames), "model": cfg.model}
    ref_file = _cache_file("reference", key)
    cached = _load(ref_file) if cfg.use_cache else None
    if cached is not None:
        return key, [Detections.from_json(d) for d in cached["detections"]]
    reference = detector.detect(frames)
    _store(ref_file, {"detections": [d.to_json() for d in reference]})
    return key, reference


class _Profiles:
    """Profiling clips for each evaluated video: every profile video but that one, loaded once."""

    def __init__(self, cfg: EvalConfig, detector):
        self.cfg, self.detector = cfg, detector
        self.specs = list(cfg.profile_videos) if cfg.profile_videos is not None else assets.sample_videos()
        self._clips: dict[str, ProfileClip] = {}

    def _clip(self, spec: str) -> ProfileClip:
        if spec not in self._clips:
            path, frames, _fps = _read_video(spec, self.cfg.frames or self.cfg.profile_frames)
            self._clips[spec] = ProfileClip(Path(path).stem, frames, _reference(self.detector, path, frames, self.cfg)[1])
        return self._clips[spec]

    def names(self, video: str) -> list[str]:
        return [Path(s).stem for s in self.specs if Path(s).stem != video]

    def for_video(self, video: str) -> Callable[[], list[ProfileClip]]:
        return lambda: [self._clip(s) for s in self.specs if Path(s).stem != video]


def evaluate(cfg: EvalConfig, *, on_progress: Callable[[str, int], Callable[[], None]] | None = None, log: Callable[[str], None] = print) -> EvalResult:
    """Replay every video through every configuration of every scheme.

    Args:
        cfg: videos, schemes, model, link and metric settings.
        on_progress: called with (description, total) per video; returns a per-step callback.
        log: where one-line notes go.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _evaluate(cfg, on_progress, log)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(cfg: EvalConfig, on_progress: Callable[[str, int], Callable[[], None]] | None, log: Callable[[str], None]) -> EvalResult:
    start = time.perf_counter()
    checkpoint_ids = _check_checkpoints(cfg, log)
    detector = create_detector(cfg.model, score_threshold=0.1)  # low: DDS needs its unsure boxes
    server = Server(detector)
    camera_detector = None

    def cheap_detector():
        nonlocal camera_detector
        if camera_detector is None:
            camera_detector = create_detector(cfg.camera_model, score_threshold=0.1)
        return camera_detector

    profiles = _Profiles(cfg, detector)
    records: list[dict] = []
    for spec in cfg.videos:
        path, frames, fps = _read_video(spec, cfg.frames)
        video_name = Path(path).stem
        key, reference = _reference(detector, path, frames, cfg)
        ctx = SchemeContext(
            server=server, settings=EncoderSettings(codec=cfg.codec, preset=cfg.preset, fps=fps),
            frame_size=frames[0].shape[:2], fps=fps, camera_detector=cheap_detector,
            checkpoints=_checkpoints_of(cfg, video_name),
            profile_clips=profiles.for_video(video_name), chunk=cfg.chunk,
        )
        plan = [(name, config) for name in cfg.schemes for config in (scheme_class(name).sweep(ctx) if cfg.sweep else [{}])]
        step = on_progress(f"{video_name} ({len(frames)} frames)", len(plan)) if on_progress else (lambda: None)
        for name, config in plan:
            replay_key = {
                **key, "scheme": name, "config": config, "chunk": cfg.chunk, "codec": cfg.codec, "preset": cfg.preset,
                "checkpoints": checkpoint_ids[video_name, name], "camera_model": cfg.camera_model if name == "vigil" else None,
                "profile": [profiles.names(video_name), cfg.frames or cfg.profile_frames] if scheme_class(name).profiles else None,
                "version": REPLAY_VERSION,
            }
            replay_file = _cache_file("replay", replay_key)
            cached = _load(replay_file) if cfg.use_cache else None
            if cached is None:
                scheme = create_scheme(name, ctx, **config)
                scheme.reset()
                outcomes = [scheme.process(frames[i : i + cfg.chunk], i) for i in range(0, len(frames), cfg.chunk)]
                _store(replay_file, _outcomes_to_json(outcomes))
            else:
                outcomes = _outcomes_from_json(cached)
            metrics = summarize(outcomes, reference, fps=fps, link=cfg.link, score_threshold=cfg.score_threshold, iou_threshold=cfg.iou_threshold)
            records.append({"video": video_name, "scheme": name, "config": config or {"default": True}, **metrics})
            step()
    return EvalResult(records, pick_best(records, cfg.target_f1), cfg, time.perf_counter() - start)
