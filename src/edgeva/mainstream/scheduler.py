"""Mainstream's scheduler: per application, a sharing point and a frame rate within a budget.

Conventions (those of Mainstream's published scheduler, checked against its unit test):

* The base DNN is a list of ``N`` layers (here: segments) with latencies. Freeze point ``k``
  means layers ``[0, k)`` are the frozen, shareable prefix and the app's own branch is
  layers ``[k, N)``.
* Cost of a schedule (ms of compute per second of video): for consecutive distinct freeze
  points ``k_0 < k_1 < ...``, the prefix segment ``[k_{i-1}, k_i)`` runs once per frame any
  app with freeze point ``>= k_i`` is due, i.e. at the highest fps among those apps; every
  branch runs at its own app's fps. Without sharing every app pays for all ``N`` layers.
* An app's loss is ``1 - F1`` of the event model (:mod:`.accuracy`); a schedule's quality is
  the mean loss over apps.

Schedulers (registry ``SCHEDULERS``): ``mainstream`` (the published greedy), ``f1-per-cost``
(greedy on loss reduction per added cost), ``exhaustive`` (exact, small inputs),
``nosharing`` and ``maxsharing``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edgeva.errors import ConfigError
from edgeva.mainstream.accuracy import EventStats, Units, event_metrics
from edgeva.registry import Registry

__all__ = [
    "AppProfile", "Problem", "Choice", "Schedule", "SCHEDULERS", "register_scheduler", "schedule",
    "list_schedulers", "FRACTIONAL_FPS",
]

FRACTIONAL_FPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # no-sharing may run below 1 fps


@dataclass(frozen=True)
class AppProfile:
    """One application as the scheduler sees it."""

    name: str
    stats: EventStats  # event length, frequency and miss correlation
    recall: dict[int, float]  # freeze point -> per-frame recall p on held-out frames
    false_positive: dict[int, float]  # freeze point -> per-frame false-positive rate q

    def __post_init__(self) -> None:
        if set(self.recall) != set(self.false_positive):
            raise ValueError(f"{self.name}: recall and false_positive must cover the same freeze points")
        if not self.recall:
            raise ValueError(f"{self.name}: no freeze points")


@dataclass(frozen=True)
class Choice:
    """Where one app branches off the shared base, and how often it runs."""

    freeze: int  # number of frozen (shared) layers
    fps: float


@dataclass(frozen=True)
class Schedule:
    """A choice per app (in the problem's app order) with its cost and predicted quality."""

    scheduler: str
    choices: tuple[Choice, ...]
    cost: float  # ms of compute per second of video
    f1: tuple[float, ...]  # predicted event F1 per app

    @property
    def mean_f1(self) -> float:
        return sum(self.f1) / len(self.f1)

    @property
    def mean_loss(self) -> float:
        return 1.0 - self.mean_f1

    def to_dict(self, names: Sequence[str]) -> dict:
        return {
            "scheduler": self.scheduler, "cost": self.cost, "mean_f1": self.mean_f1,
            "apps": [{"name": n, "freeze": c.freeze, "fps": c.fps, "f1": f}
                     for n, c, f in zip(names, self.choices, self.f1)],
        }


@dataclass
class Problem:
    """Apps, the base's per-layer latencies and the stream.

    Args:
        apps: the applications.
        layer_latencies: ms per layer of the base DNN at batch 1 (``N`` entries).
        stream_fps: ``F``; integer fps options are ``1..F``.
        units: event-length units of the accuracy model (see :mod:`.accuracy`).
        fractional: let every scheduler, not only no-sharing, run apps below 1 fps.
    """

    apps: Sequence[AppProfile]
    layer_latencies: Sequence[float]
    stream_fps: int
    units: Units = "stream"
    fractional: bool = False
    _loss: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.layer_latencies)
        if not self.apps:
            raise ConfigError("no applications to schedule")
        for app in self.apps:
            bad = [k for k in app.recall if not 0 <= k < n]
            if bad:
                raise ConfigError(f"{app.name}: freeze points {bad} outside the base's {n} layers")
        self._prefix = list(itertools.accumulate(self.layer_latencies, initial=0.0))

    @property
    def total_latency(self) -> float:
        return self._prefix[-1]

    def fps_options(self, fractional: bool = False) -> list[float]:
        whole = [float(f) for f in range(1, int(self.stream_fps) + 1)]
        return list(FRACTIONAL_FPS) + whole if fractional or self.fractional else whole

    def latency(self, start: int, stop: int) -> float:
        return self._prefix[stop] - self._prefix[start]

    def branch_cost(self, choice: Choice) -> float:
        return self.latency(choice.freeze, len(self.layer_latencies)) * choice.fps

    def cost(self, choices: Sequence[Choice], shared: bool = True) -> float:
        """Compute per second of video (see the module docstring)."""
        if not shared:
            return sum(self.total_latency * c.fps for c in choices)
        cost, start = 0.0, 0
        for point in sorted({c.freeze for c in choices}):
            users = [c.fps for c in choices if c.freeze >= point]
            cost += self.latency(start, point) * max(users)
            start = point
        return cost + sum(self.branch_cost(c) for c in choices)

    def metrics(self, app: int, choice: Choice) -> dict[str, float]:
        profile = self.apps[app]
        return event_metrics(profile.recall[choice.freeze], profile.false_positive[choice.freeze], profile.stats,
                             self.stream_fps, choice.fps, self.units)

    def loss(self, app: int, choice: Choice) -> float:
        key = (app, choice)
        if key not in self._loss:
            self._loss[key] = 1.0 - self.metrics(app, choice)["f1"]
        return self._loss[key]

    def make(self, scheduler: str, choices: Sequence[Choice], shared: bool = True) -> Schedule:
        choices = tuple(choices)
        return Schedule(scheduler, choices, self.cost(choices, shared),
                        tuple(1.0 - self.loss(i, c) for i, c in enumerate(choices)))


SchedulerFn = Callable[[Problem, float], Schedule]
SCHEDULERS: Registry[SchedulerFn] = Registry("scheduler")
register_scheduler = SCHEDULERS.register
list_schedulers = SCHEDULERS.names


def schedule(name: str, problem: Problem, budget: float) -> Schedule:
    """Run the scheduler ``name`` (ConfigError if unknown or the budget fits no schedule)."""
    try:
        fn = SCHEDULERS[name]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return fn(problem, budget)


def _check_budget(problem: Problem, budget: float, cheapest: Sequence[Choice], shared: bool, label: str) -> None:
    floor = problem.cost(cheapest, shared)
    if budget < floor:
        raise ConfigError(f"budget {budget:g} ms/s is below the cheapest {label} schedule ({floor:.4g} ms/s)")


def _options(problem: Problem, app: int, freezes: Sequence[int] | None, fractional: bool) -> list[Choice]:
    points = sorted(problem.apps[app].recall) if freezes is None else list(freezes)
    return [Choice(k, f) for f in problem.fps_options(fractional) for k in points]


def _greedy(problem: Problem, budget: float, start: list[Choice], options: list[list[Choice]], *,
            shared: bool, rule: str) -> list[Choice]:
    """Single-app moves that lower that app's loss and keep the schedule within budget.

    ``rule="published"``: pick the move with the largest loss-after / branch-cost-after
    (Mainstream's ``cost_benefit``; ties go to the first app, lowest fps, fewest frozen
    layers, as in its loops). ``rule="gain"``: the largest loss reduction per added cost.
    """
    current = list(start)
    while True:
        best, best_score = None, 0.0
        current_cost = problem.cost(current, shared)
        for i, choices in enumerate(options):
            now = problem.loss(i, current[i])
            for option in choices:
                if option == current[i]:
                    continue
                after = problem.loss(i, option)
                if after >= now:
                    continue
                trial = current.copy()
                trial[i] = option
                cost = problem.cost(trial, shared)
                if cost > budget + 1e-9:
                    continue
                if rule == "published":
                    branch = problem.branch_cost(option) if shared else problem.total_latency * option.fps
                    score = after / branch if branch > 0 else float("inf")
                else:
                    added = cost - current_cost
                    score = (now - after) / added if added > 1e-12 else float("inf")
                if score > best_score:
                    best, best_score = (i, option), score
        if best is None:
            return current
        current[best[0]] = best[1]


def _deepest_start(problem: Problem, freezes: Callable[[int], Sequence[int] | None], fractional: bool) -> list[Choice]:
    lowest = problem.fps_options(fractional)[0]
    return [Choice(max(freezes(i) or problem.apps[i].recall), lowest) for i in range(len(problem.apps))]


def _shared_greedy(problem: Problem, budget: float, name: str, rule: str) -> Schedule:
    """Start every app at its deepest freeze point and lowest fps, then improve greedily by ``rule``."""
    start = _deepest_start(problem, lambda i: None, False)
    _check_budget(problem, budget, start, True, "shared")
    options = [_options(problem, i, None, False) for i in range(len(problem.apps))]
    return problem.make(name, _greedy(problem, budget, start, options, shared=True, rule=rule))


@register_scheduler("mainstream")
def mainstream(problem: Problem, budget: float) -> Schedule:
    """The published greedy: largest (1 - F1 after) / branch cost after, among improving moves."""
    return _shared_greedy(problem, budget, "mainstream", "published")


@register_scheduler("f1-per-cost")
def f1_per_cost(problem: Problem, budget: float) -> Schedule:
    """Greedy on F1 gained per unit of added cost (a marginal-utility rule)."""
    return _shared_greedy(problem, budget, "f1-per-cost", "gain")


EXHAUSTIVE_LIMIT = 2_000_000  # schedules; beyond this the exact search refuses


@register_scheduler("exhaustive")
def exhaustive(problem: Problem, budget: float) -> Schedule:
    """Every combination of (freeze point, fps) per app: exact, for small inputs only."""
    start = _deepest_start(problem, lambda i: None, False)
    _check_budget(problem, budget, start, True, "shared")
    options = [_options(problem, i, None, False) for i in range(len(problem.apps))]
    size = 1
    for o in options:
        size *= len(o)
    if size > EXHAUSTIVE_LIMIT:
        raise ConfigError(f"exhaustive search over {size} schedules is too large (limit {EXHAUSTIVE_LIMIT}); use mainstream")
    losses = [{o: problem.loss(i, o) for o in opts} for i, opts in enumerate(options)]
    best, best_loss = start, float("inf")
    for combo in itertools.product(*options):
        loss = sum(losses[i][c] for i, c in enumerate(combo))
        if loss < best_loss - 1e-12 and problem.cost(combo) <= budget + 1e-9:
            best, best_loss = list(combo), loss
    return problem.make("exhaustive", best)


@register_scheduler("nosharing")
def nosharing(problem: Problem, budget: float) -> Schedule:
    """Every app runs the whole network (its most specialised model, nothing shared); only
    the frame rates are chosen, fractional ones included, by the F1-per-cost greedy."""
    shallowest = [min(a.recall) for a in problem.apps]
    start = [Choice(k, FRACTIONAL_FPS[0]) for k in shallowest]
    _check_budget(problem, budget, start, False, "no-sharing")
    options = [_options(problem, i, [k], True) for i, k in enumerate(shallowest)]
    return problem.make("nosharing", _greedy(problem, budget, start, options, shared=False, rule="gain"), shared=False)


@register_scheduler("maxsharing")
def maxsharing(problem: Problem, budget: float) -> Schedule:
    """Every app at the deepest freeze point (only the last layers are its own); frame
    rates chosen by the F1-per-cost greedy."""
    deepest = [max(a.recall) for a in problem.apps]
    start = [Choice(k, problem.fps_options()[0]) for k in deepest]
    _check_budget(problem, budget, start, True, "max-sharing")
    options = [_options(problem, i, [k], False) for i, k in enumerate(deepest)]
    return problem.make("maxsharing", _greedy(problem, budget, start, options, shared=True, rule="gain"))
