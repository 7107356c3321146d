"""Mainstream scheduler: the published oracle, exact search, budgets and baselines."""

from __future__ import annotations

import random

import pytest

from edgeva.bench.apps import random_problem
from edgeva.errors import ConfigError
from edgeva.mainstream.accuracy import EventStats, event_f1, miss_probability
from edgeva.mainstream.scheduler import SCHEDULERS, AppProfile, Choice, Problem, schedule

ORACLE_RECALL = [
    {1: 1.0, 10: 0.8, 21: 0.6, 30: 0.6, 40: 0.2},
    {1: 1.0, 10: 1.0, 21: 0.8, 30: 0.6, 40: 0.1},
    {1: 1.0, 10: 1.0, 21: 1.0, 30: 0.8, 40: 0.6},
]


def oracle_problem(units: str = "published") -> Problem:
    stats = EventStats(event_length_s=5.0, event_frequency=0.3, correlation=0.1)
    apps = [AppProfile(f"app{i + 1}", stats, p, {k: 0.1 for k in p}) for i, p in enumerate(ORACLE_RECALL)]
    return Problem(apps, [1.0] * 41, stream_fps=15, units=units)


def test_published_oracle() -> None:
    """Mainstream's own scheduler test: mean(1 - F1) 0.129 at freeze points 1, 10, 21, 2 fps, cost 224."""
    result = schedule("mainstream", oracle_problem(), 400)
    assert [c.freeze for c in result.choices] == [1, 10, 21]
    assert [c.fps for c in result.choices] == [2.0, 2.0, 2.0]
    assert result.cost == pytest.approx(224)
    assert result.mean_loss == pytest.approx(0.129, abs=5e-4)


def test_cost_convention() -> None:
    problem = oracle_problem()
    # prefixes [0,1) x3 apps @2, [1,10) @2, [10,21) @2, branches 40, 31, 20 layers @2
    assert problem.cost([Choice(1, 2), Choice(10, 2), Choice(21, 2)]) == pytest.approx(2 + 18 + 22 + 182)
    # a shared prefix runs at the fastest app using it
    assert problem.cost([Choice(40, 1), Choice(40, 5)]) == pytest.approx(40 * 5 + 1 + 5)
    assert problem.cost([Choice(40, 1), Choice(40, 5)], shared=False) == pytest.approx(41 * 6)


def test_accuracy_model_units() -> None:
    stats = EventStats(event_length_s=1.0, event_frequency=0.2, correlation=0.0)
    # stream units: a 1 s event at 30 fps sampled at 1 fps holds exactly one sampled frame
    assert miss_probability(0.7, stats, 30, 1, "stream") == pytest.approx(0.3)
    # published units: d = L*f = 1 sampled frame compared with stride 30: a 1/30 chance to be seen
    assert miss_probability(0.7, stats, 30, 1, "published") == pytest.approx(1 - 0.7 / 30)
    # perfect independent classifier at full rate: F1 = 1
    assert event_f1(1.0, 0.0, stats, 30, 30, "stream") == pytest.approx(1.0)
    # more samples never hurt recall for c < 1
    misses = [miss_probability(0.5, EventStats(2.0, 0.2, 0.3), 10, f) for f in range(1, 11)]
    assert all(a >= b - 1e-12 for a, b in zip(misses, misses[1:]))


@pytest.mark.parametrize("seed", range(12))
def test_greedy_close_to_exact(seed: int) -> None:
    rng = random.Random(seed)
    problem = random_problem(rng, 3)
    floor = problem.cost([Choice(7, 1.0)] * 3)
    budget = floor + rng.uniform(0.1, 1.0) * (problem.total_latency * 5 * 3 - floor)
    exact = schedule("exhaustive", problem, budget)
    for name in ("mainstream", "f1-per-cost"):
        greedy = schedule(name, problem, budget)
        assert greedy.cost <= budget + 1e-9
        assert greedy.mean_f1 <= exact.mean_f1 + 1e-9  # exact is exact
        # the published rule can stop short (see test_published_rule_never_takes_a_move_to_perfect_f1)
        assert exact.mean_f1 - greedy.mean_f1 < (0.1 if name == "mainstream" else 0.01), name


def test_greedy_mean_gap_is_small() -> None:
    """Over 40 instances (as `edgeva bench schedulers`), the mean gap to exact is small."""
    from edgeva.bench.apps import bench_schedulers

    gaps = {row["scheduler"]: row for row in bench_schedulers(40)}
    assert gaps["mainstream"]["mean_gap"] < 0.02 and gaps["f1-per-cost"]["mean_gap"] < 0.002
    assert gaps["f1-per-cost"]["exact_hits"] >= 35


@pytest.mark.parametrize("name", SCHEDULERS.names())
@pytest.mark.parametrize("seed", range(4))
def test_schedules_stay_within_budget(name: str, seed: int) -> None:
    rng = random.Random(100 + seed)
    problem = random_problem(rng, 3)
    budget = problem.total_latency * rng.uniform(1.0, 6.0)
    result = schedule(name, problem, budget)
    assert result.cost <= budget + 1e-9
    assert result.cost == pytest.approx(problem.cost(result.choices, shared=name != "nosharing"))


def test_baselines_follow_definitions() -> None:
    problem = random_problem(random.Random(7), 3)
    budget = problem.total_latency * 4
    nos = schedule("nosharing", problem, budget)
    assert all(c.freeze == 2 for c in nos.choices)  # whole network, the most specialised model
    assert nos.cost == pytest.approx(problem.total_latency * sum(c.fps for c in nos.choices))
    maxs = schedule("maxsharing", problem, budget)
    assert all(c.freeze == 7 for c in maxs.choices)
    # no sharing may go below 1 fps where 1 fps for all would not fit
    tight = schedule("nosharing", problem, problem.total_latency * 1.5)
    assert any(c.fps < 1 for c in tight.choices)


def test_budget_below_cheapest_is_an_error() -> None:
    with pytest.raises(ConfigError, match="below the cheapest"):
        schedule("mainstream", oracle_problem(), 10)
    with pytest.raises(ConfigError, match="unknown scheduler"):
        schedule("nope", oracle_problem(), 400)


def test_fractional_fps_for_every_scheduler() -> None:
    problem = random_problem(random.Random(3), 3)
    tight = problem.cost([Choice(7, 1.0)] * 3) * 0.8  # below 1 fps for all at the deepest point
    with pytest.raises(ConfigError, match="below the cheapest"):
        schedule("mainstream", problem, tight)
    problem.fractional = True
    for name in ("mainstream", "f1-per-cost", "maxsharing"):
        result = schedule(name, problem, tight)
        assert result.cost <= tight + 1e-9 and min(c.fps for c in result.choices) < 1


def test_published_rule_never_takes_a_move_to_perfect_f1() -> None:
    """The published score is loss-after / branch-cost, compared with '>' against 0: a move
    that makes an app perfect scores 0 and is never taken. Faithfully kept; f1-per-cost takes it."""
    stats = EventStats(event_length_s=5.0, event_frequency=0.3, correlation=0.0)
    app = AppProfile("a", stats, {1: 1.0, 2: 0.1}, {1: 0.0, 2: 0.1})
    problem = Problem([app], [1.0, 1.0, 1.0], stream_fps=2)
    assert problem.loss(0, Choice(1, 1.0)) == pytest.approx(0.0)
    published = schedule("mainstream", problem, 100)
    assert published.choices[0].freeze == 2 and published.mean_loss > 0.1  # stuck on the weak model
    assert schedule("f1-per-cost", problem, 100).mean_loss == pytest.approx(0.0)
