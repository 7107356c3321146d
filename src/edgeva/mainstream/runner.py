"""The multi-app runner: shared prefix computed once per frame, one branch per due app.

Frame by frame, an app with rate ``f`` is due on the frames where ``floor(i f / F)`` steps
(about ``f`` of every ``F``). The base runs up to the deepest freeze point among the due
apps, once, keeping its activation at every freeze point; each due app's branch starts from
the activation at its own freeze point. Compute is timed per segment and per branch.

:class:`AdaptiveRunner` adds Mainstream's feedback loop: after every window of video (at
least 2 s, and long enough for the slowest app to run twice; the first window is warm-up) it
compares the measured cost (ms of compute per second of video) with the budget. It keeps a
smoothed slowdown (measured / predicted cost); when the measured cost is more than 20% off
the budget and the slowdown has drifted more than 20% from the one the current schedule was
made with, it re-runs the scheduler with the budget divided by the slowdown, so the next
schedule fits the budget as the machine really runs it.

The ``apps`` inference worker (``edges[].worker: apps``) runs this inside an edge node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from edgeva.errors import ConfigError
from edgeva.mainstream.apps import AppsFolder, load_apps
from edgeva.mainstream.base import BaseSegments, Branch, load_base, preprocess
from edgeva.mainstream.scheduler import Choice, Schedule, schedule
from edgeva.models.detections import Detections

__all__ = ["is_due", "SharedRunner", "AdaptiveRunner", "RunStats", "AppsWorker"]

log = logging.getLogger(__name__)
FIRE = 0.5  # an app fires on a frame when its probability is at least this


def is_due(index: int, fps: float, stream_fps: float) -> bool:
    """Whether an app sampled at ``fps`` runs on stream frame ``index``."""
    step = fps / stream_fps
    return index == 0 or math.floor(index * step + 1e-9) > math.floor((index - 1) * step + 1e-9)


@dataclass
class RunStats:
    """What a run measured."""

    frames: int = 0
    compute_ms: float = 0.0  # base segments + branches
    segment_ms: list[float] = field(default_factory=list)  # per base segment
    segment_runs: list[int] = field(default_factory=list)
    branch_ms: list[float] = field(default_factory=list)  # per app
    runs: list[int] = field(default_factory=list)  # frames each app ran on
    fired: list[int] = field(default_factory=list)

    def achieved_fps(self, stream_fps: float) -> list[float]:
        seconds = self.frames / stream_fps
        return [r / seconds if seconds else 0.0 for r in self.runs]

    def cost(self, stream_fps: float) -> float:
        """Measured ms of compute per second of video (the scheduler's cost unit)."""
        return self.compute_ms / (self.frames / stream_fps) if self.frames else 0.0


class SharedRunner:
    """Runs apps' branches over frames, sharing the base's prefix among them.

    Args:
        base: the frozen base.
        branches: one per app (their ``freeze`` is the sharing point).
        fps: per app, frames per second it runs at.
        stream_fps: the stream's rate ``F``.
    """

    def __init__(self, base: BaseSegments, branches: Sequence[Branch], fps: Sequence[float], stream_fps: float):
        if len(branches) != len(fps):
            raise ValueError(f"{len(branches)} branches but {len(fps)} frame rates")
        self.base, self.branches, self.fps, self.stream_fps = base, list(branches), list(fps), stream_fps
        self.stats = self._fresh()

    def _fresh(self) -> RunStats:
        n = len(self.branches)
        return RunStats(segment_ms=[0.0] * len(self.base.segments), segment_runs=[0] * len(self.base.segments),
                        branch_ms=[0.0] * n, runs=[0] * n, fired=[0] * n)

    def reset(self) -> RunStats:
        old, self.stats = self.stats, self._fresh()
        return old

    @torch.inference_mode()
    def step(self, image: np.ndarray, index: int) -> dict[int, float]:
        """Probabilities of the apps due on frame ``index`` (app position -> probability)."""
        due = [i for i, f in enumerate(self.fps) if is_due(index, f, self.stream_fps)]
        st = self.stats
        st.frames += 1
        if not due:
            return {}
        t0 = time.perf_counter()
        x = preprocess([image])
        acts = {0: x}
        depth = max(self.branches[i].freeze for i in due)
        for k in range(depth):  # each shared segment once, however many apps need it
            t = time.perf_counter()
            x = self.base.segments[k](x)
            st.segment_ms[k] += 1000 * (time.perf_counter() - t)
            st.segment_runs[k] += 1
            acts[k + 1] = x
        out = {}
        for i in due:
            t = time.perf_counter()
            out[i] = float(torch.sigmoid(self.branches[i](acts[self.branches[i].freeze]))[0])
            st.branch_ms[i] += 1000 * (time.perf_counter() - t)
            st.runs[i] += 1
            st.fired[i] += out[i] >= FIRE
        st.compute_ms += 1000 * (time.perf_counter() - t0)
        return out


class AdaptiveRunner:
    """A :class:`SharedRunner` for a scheduled apps folder, with the feedback loop.

    Args:
        folder: the trained apps.
        budget: ms of compute per second of video.
        scheduler: a registered scheduler name.
        units: event-length units of the accuracy model.
        feedback: re-schedule when the measured cost is > 20% off the budget.
        fractional: let the scheduler run apps below 1 fps.
        base: a loaded base (else loaded here).
    """

    TOLERANCE = 0.2

    def __init__(self, folder: AppsFolder, budget: float, scheduler: str = "mainstream", *, units: str = "stream",
                 feedback: bool = True, fractional: bool = False, base: BaseSegments | None = None):
        if scheduler == "nosharing":
            raise ConfigError("the runner shares a base; run nosharing schedules through `edgeva apps eval`")
        self.folder, self.budget, self.scheduler, self.feedback = folder, budget, scheduler, feedback
        self.problem = folder.problem(units=units, fractional=fractional)
        self.base = base or load_base()
        self._branches: dict[tuple[int, int], Branch] = {}
        self.schedule_budget = budget
        self.schedule = schedule(scheduler, self.problem, budget)
        self.history: list[dict] = []  # one entry per feedback window
        self.slowdown: float | None = None  # smoothed measured / predicted cost
        self.slowdown_used = 1.0  # the slowdown the current schedule was computed with
        self.total = RunStats()
        self.runner = self._build(self.schedule)
        self.index = 0

    def _branch(self, app: int, freeze: int) -> Branch:
        if (app, freeze) not in self._branches:
            self._branches[(app, freeze)] = self.folder.load_branch(app, freeze, self.base)
        return self._branches[(app, freeze)]

    def _build(self, sched: Schedule) -> SharedRunner:
        branches = [self._branch(a, c.freeze) for a, c in enumerate(sched.choices)]
        return SharedRunner(self.base, branches, [c.fps for c in sched.choices], self.problem.stream_fps)

    @property
    def choices(self) -> tuple[Choice, ...]:
        return self.schedule.choices

    @property
    def window_frames(self) -> int:
        """Frames per feedback window: at least 2 s of video, and long enough for the slowest
        app to run twice (a 0.1 fps app makes one-second windows read 0 or 10x the mean)."""
        slowest = min(c.fps for c in self.schedule.choices)
        return math.ceil(self.problem.stream_fps * max(2.0, 2.0 / slowest))

    def step(self, image: np.ndarray) -> dict[int, float]:
        out = self.runner.step(image, self.index)
        self.index += 1
        if self.runner.stats.frames >= self.window_frames:
            self._close_window()
        return out

    def _close_window(self) -> None:
        stats = self.runner.reset()
        fps = self.problem.stream_fps
        measured, predicted = stats.cost(fps), self.schedule.cost
        entry = {"frame": self.index, "measured_cost": measured, "predicted_cost": predicted,
                 "schedule_budget": self.schedule_budget, "achieved_fps": stats.achieved_fps(fps), "rescheduled": False}
        self._accumulate(stats)
        if not self.history or measured <= 0 or predicted <= 0:  # the first window pays one-off warm-up
            self.history.append(entry)
            return
        # The machine's slowdown against the cost model, smoothed over windows: one window's
        # ratio is noisy (which apps were due, other processes), and re-scheduling on it oscillates.
        ratio = measured / predicted
        self.slowdown = ratio if self.slowdown is None else 0.5 * self.slowdown + 0.5 * ratio
        entry["slowdown"] = self.slowdown
        off_budget = abs(measured - self.budget) > self.TOLERANCE * self.budget
        drifted = abs(self.slowdown / self.slowdown_used - 1) > self.TOLERANCE
        if self.feedback and off_budget and drifted:
            target = self.budget / self.slowdown  # what the cost model may spend so the machine spends the budget
            try:
                new = schedule(self.scheduler, self.problem, target)
            except ConfigError:  # the budget is below the cheapest schedule as measured: keep the cheapest
                new = schedule(self.scheduler, self.problem, self.problem.cost(
                    [Choice(max(a.recall), self.problem.fps_options()[0]) for a in self.problem.apps]))
            entry.update(rescheduled=True, new_schedule_budget=target)
            log.info("measured %.1f ms/s vs budget %.1f: rescheduled with budget %.1f", measured, self.budget, target)
            self.schedule_budget, self.schedule, self.slowdown_used = target, new, self.slowdown
            self.runner = self._build(new)
        self.history.append(entry)

    def _accumulate(self, stats: RunStats) -> None:
        t = self.total
        if not t.runs:
            t.runs, t.fired, t.branch_ms = [0] * len(stats.runs), [0] * len(stats.runs), [0.0] * len(stats.runs)
        t.frames += stats.frames
        t.compute_ms += stats.compute_ms
        for i in range(len(stats.runs)):
            t.runs[i] += stats.runs[i]
            t.fired[i] += stats.fired[i]
            t.branch_ms[i] += stats.branch_ms[i]

    def finish(self) -> RunStats:
        """Close the last partial window; the totals of the run."""
        if self.runner.stats.frames:
            stats = self.runner.reset()
            self._accumulate(stats)
        return self.total


class AppsWorker:
    """Mainstream apps as an edge node's inference worker.

    For every frame, one full-frame :class:`Detections` entry per app that ran on that frame
    and fired (class name = app name, score = its probability); apps not due on a frame say
    nothing about it. Frames are counted in arrival order at the apps folder's stream rate.
    """

    def __init__(self, folder: str, budget: float, scheduler: str = "mainstream"):
        self.runner = AdaptiveRunner(load_apps(folder), budget, scheduler)
        self.names = tuple(self.runner.folder.names)
        self.version = 0

    def infer(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            fired = {i: p for i, p in self.runner.step(image).items() if p >= FIRE}
            ids = sorted(fired)
            out.append(Detections(np.array([[0, 0, w, h]] * len(ids), dtype=np.float32).reshape(-1, 4),
                                  np.array([fired[i] for i in ids], dtype=np.float32),
                                  np.array(ids, dtype=np.int64), names=self.names))
        return out
