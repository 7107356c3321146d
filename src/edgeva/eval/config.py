"""What an evaluation replays and how it scores it (:class:`EvalConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from edgeva.net import Link

__all__ = ["EvalConfig", "REPLAY_VERSION"]

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
    # Per scheme, options added to every one of its configurations, e.g. {"accmpeg": {"adapt_every": 2}}
    # (online selector adaptation, edgeva.accmpeg.adapt); part of each replay's cache key.
    scheme_options: dict[str, dict] = field(default_factory=dict)
    # Per scheme, the configurations to replay instead of its sweep, e.g. {"neuromesh": [{"mask_ratio": 0.5, "crf": 30}]}.
    configs: dict[str, list[dict]] = field(default_factory=dict)
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
    # Torch device of the final DNN and the camera detector ("cpu", "cuda", "cuda:1"; resolved,
    # see edgeva.device). Cached results from another device type are kept apart.
    device: str = "cpu"

    def checkpoints_of(self, video_name: str) -> dict[str, str]:
        """The checkpoints the schemes use on one video (stem): ``checkpoints`` with that
        video's ``video_checkpoints`` on top."""
        return {**self.checkpoints, **self.video_checkpoints.get(video_name, {})}
