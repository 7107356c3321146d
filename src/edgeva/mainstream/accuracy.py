"""Mainstream's event-level accuracy model (Jiang et al., USENIX ATC 2018, section 4.2).

An application watches for events (a person is present, ...) of length ``L`` seconds that
cover a fraction ``e`` of the stream. Its classifier fires on a frame inside an event with
probability ``p`` (per-frame recall) and on a frame outside one with probability ``q``
(per-frame false-positive rate); misses on consecutive sampled frames are correlated by
``c``. Sampling the stream (``F`` fps) at ``f`` fps gives stride ``s = F / f``.

Units of the event length (the one real choice here):

* ``"stream"`` (default): the event spans ``D = L * F`` stream frames; a sampled frame falls
  every ``s`` of them, so an event holds ``D / s = L * f`` sampled frames. ``D`` and ``s``
  are then in the same unit when compared (``D < s``) and when divided.
* ``"published"``: Mainstream's code uses ``d = L * f`` (already sampled frames) and then
  divides by ``s`` again, i.e. an event holds ``L * f * f / F`` sampled frames. Kept
  selectable because the published scheduler's unit test (our oracle) is computed with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Units", "EventStats", "miss_probability", "event_metrics", "event_f1"]

Units = Literal["stream", "published"]


@dataclass(frozen=True)
class EventStats:
    """What the accuracy model needs to know about one application's events."""

    event_length_s: float  # L: mean event length in seconds
    event_frequency: float  # e: fraction of event-length windows that hold an event, in (0, 1)
    correlation: float  # c: probability a miss on one sampled frame repeats on the next, in [0, 1]

    def __post_init__(self) -> None:
        if not self.event_length_s > 0:
            raise ValueError(f"event_length_s must be > 0, got {self.event_length_s}")
        if not 0 <= self.event_frequency <= 1:
            raise ValueError(f"event_frequency must be in [0, 1], got {self.event_frequency}")
        if not 0 <= self.correlation <= 1:
            raise ValueError(f"correlation must be in [0, 1], got {self.correlation}")


def miss_probability(p: float, stats: EventStats, stream_fps: float, fps: float, units: Units = "stream") -> float:
    """Probability that no sampled frame inside an event fires, for per-frame hit rate ``p``."""
    if fps <= 0 or fps > stream_fps:
        raise ValueError(f"sampled fps must be in (0, {stream_fps}], got {fps}")
    s = stream_fps / fps
    # d is compared with and divided by the stride s, so both must count stream frames.
    d = stats.event_length_s * (stream_fps if units == "stream" else fps)
    if d < s:  # at most one sampled frame lands in the event
        return 1.0 - (d / s) * p
    kappa = (1.0 - p) + p * stats.correlation  # a miss given the previous sampled frame missed
    r1, r2 = math.floor(d / s), math.ceil(d / s)
    m = math.fmod(d, s)
    return ((s - m) / s) * kappa ** (r1 - 1) * (1.0 - p) + (m / s) * kappa ** (r2 - 1) * (1.0 - p)


def event_metrics(p: float, q: float, stats: EventStats, stream_fps: float, fps: float,
                  units: Units = "stream") -> dict[str, float]:
    """Event recall, false-alarm rate, precision and F1 at ``fps``."""
    recall = 1.0 - miss_probability(p, stats, stream_fps, fps, units)
    false_alarm = 1.0 - miss_probability(q, stats, stream_fps, fps, units)
    e = stats.event_frequency
    hits, alarms = e * recall, (1.0 - e) * false_alarm
    precision = hits / (hits + alarms) if hits + alarms > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"recall": recall, "false_alarm": false_alarm, "precision": precision, "f1": f1}


def event_f1(p: float, q: float, stats: EventStats, stream_fps: float, fps: float, units: Units = "stream") -> float:
    return event_metrics(p, q, stats, stream_fps, fps, units)["f1"]
