"""Reducto (Li et al., SIGCOMM 2020): camera-side frame filtering on low-level frame
differences; a dropped frame reuses the last result.

``reducto`` is Reducto as published: offline, on profiling video, the server finds for each
segment the largest difference threshold that keeps the target accuracy (the final DNN's
results on kept frames reused for the dropped ones, against its results on every frame) and
builds the map from a segment's histogram of consecutive-frame differences to that
threshold (:class:`~edgeva.filtering.ThresholdMap`); online the camera looks up each new
segment's threshold. The profiling video is never the evaluated one (the harness passes the
other videos: leave-one-video-out). ``reducto-hindsight`` keeps one threshold per video picked
from a sweep with the evaluated video's own results: an upper bound, not a deployable scheme.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgeva.errors import ConfigError
from edgeva.filtering import (
    FEATURES,
    THRESHOLDS,
    AdaptiveFrameFilter,
    Feature,
    FrameFilter,
    ThresholdMap,
    diff_vector,
    difference,
    frame_features,
)
from edgeva.metrics import f1_score
from edgeva.models import Detections
from edgeva.schemes.base import ProfileClip, SchemeContext, register_scheme
from edgeva.schemes.common import FrameSampling, carry_forward

__all__ = ["Reducto", "ReductoHindsight", "online_filter", "profile_thresholds", "REDUCTO_TARGETS"]

REDUCTO_TARGETS = (0.9, 0.95)  # per-segment accuracy targets the profile keeps (Reducto's knob)
_maps: dict[tuple, ThresholdMap] = {}
_segments: dict[tuple, list] = {}


def _segment_f1s(images: list, reference: list[Detections], feature: Feature) -> list[float]:
    """F1 of a segment filtered at each candidate threshold (kept frames' results reused)."""
    prepared = [frame_features(image, feature) for image in images]
    scores = []
    for threshold in THRESHOLDS:
        last, sent = prepared[0], {0: reference[0]}
        for i in range(1, len(prepared)):
            if difference(last, prepared[i], feature) >= threshold:
                last, sent[i] = prepared[i], reference[i]
        results, _ = carry_forward(sent, len(images), Detections.empty())
        scores.append(f1_score(results, reference)["f1"])
    return scores


def _clip_profile(clip: ProfileClip, feature: Feature, chunk: int) -> list[tuple[np.ndarray, list[float]]]:
    """Per ``chunk``-frame segment of a clip: its diff vector and its F1 at every candidate
    threshold (cached per clip, feature and segment length: leave-one-out sets share clips)."""
    key = (clip.name, len(clip.frames), feature, chunk)
    if key not in _segments:
        out = []
        for start in range(0, len(clip.frames) - 1, chunk):
            images, reference = clip.frames[start : start + chunk], clip.reference[start : start + chunk]
            if len(images) >= 2:
                out.append((diff_vector(images, feature), _segment_f1s(images, reference, feature)))
        _segments[key] = out
    return _segments[key]


def profile_thresholds(clips: list[ProfileClip], feature: Feature, target: float, chunk: int) -> ThresholdMap:
    """Reducto's offline profiling: per ``chunk``-frame segment of each clip its diff vector
    and its best threshold (the largest keeping F1 >= ``target``), then the threshold map."""
    vectors, best = [], []
    for clip in clips:
        for vector, scores in _clip_profile(clip, feature, chunk):
            vectors.append(vector)
            best.append(max([t for t, f1 in zip(THRESHOLDS, scores, strict=True) if f1 >= target], default=THRESHOLDS[0]))
    if not vectors:
        raise ConfigError("reducto: no profiling video (it profiles on videos other than the evaluated one)")
    return ThresholdMap(vectors, best)


def online_filter(ctx: SchemeContext, feature: Feature, target: float) -> AdaptiveFrameFilter:
    """A Reducto filter whose per-segment thresholds come from a map profiled on
    ``ctx.profile_clips`` (built once per set of clips, feature, target and segment length)."""
    if feature not in FEATURES:
        raise ConfigError(f"reducto feature {feature!r}: choose from {', '.join(FEATURES)}")
    clips = ctx.profile_clips() if ctx.profile_clips else []
    ident = hashlib.sha256("|".join(f"{c.name}:{len(c.frames)}" for c in clips).encode()).hexdigest()
    key = (ident, feature, target, ctx.chunk)
    if key not in _maps:
        _maps[key] = profile_thresholds(clips, feature, target, ctx.chunk)
    return AdaptiveFrameFilter(feature, _maps[key])


@register_scheme
class Reducto(FrameSampling):
    name = "reducto"
    description = "Reducto: camera drops frames that barely differ from the last sent one; threshold per segment from a map profiled on other videos"
    profiles = True

    def __init__(self, ctx: SchemeContext, *, feature: str = "pixel", target: float = 0.9, crf: int = 30):
        super().__init__(ctx, feature=feature, target=target, crf=crf)
        self.frame_filter = online_filter(ctx, feature, target)  # type: ignore[arg-type]
        self.crf = crf
        self.reset()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"feature": f, "target": t, "crf": crf} for crf in (26, 34) for f in FEATURES for t in REDUCTO_TARGETS]

    def encode(self, images: list, first_frame: int) -> tuple[list, int, float]:
        return images, self.crf, 0.0


@register_scheme
class ReductoHindsight(FrameSampling):
    name = "reducto-hindsight"
    description = "Reducto upper bound: one threshold per video, picked in hindsight on the evaluated video itself"
    bound = True

    def __init__(self, ctx: SchemeContext, *, feature: str = "pixel", threshold: float = 0.01, crf: int = 30):
        super().__init__(ctx, feature=feature, threshold=threshold, crf=crf)
        self.frame_filter = FrameFilter(feature, threshold)  # type: ignore[arg-type]
        self.crf = crf
        self.reset()

    @classmethod
    def sweep(cls, ctx: SchemeContext) -> list[dict]:
        return [{"feature": f, "threshold": t, "crf": crf} for crf in (26, 34) for f in FEATURES for t in (0.005, 0.02, 0.05)]

    def encode(self, images: list, first_frame: int) -> tuple[list, int, float]:
        return images, self.crf, 0.0
