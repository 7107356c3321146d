"""The workload optimizer on hand-computed numbers, and the `balancer:` config section."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from edgeva.errors import ConfigError
from edgeva.runtime.balance import (
    BALANCERS,
    Distream,
    NeuroMesh,
    create_balancer,
    imbalance,
    weights,
)
from edgeva.runtime.balance.optimizer import greedy_step
from edgeva.runtime.config import load_config, resolve_config_path


def test_imbalance_formula_by_hand():
    # C = [2, 1, 1] -> mean 4/3 -> w = [1.5, 0.75, 0.75]; wL = [15, 1.5, 3], sum 19.5
    assert weights([2, 1, 1]).tolist() == [1.5, 0.75, 0.75]
    assert imbalance([10, 2, 4], [2, 1, 1]) == pytest.approx(3 * 15 / 19.5 - 1)
    assert imbalance([5, 5, 5], [1, 1, 1]) == 0.0
    assert imbalance([6, 0, 0], [1, 1, 1]) == pytest.approx(2.0)  # all on one edge: n - 1
    assert imbalance([0, 0], [1, 3]) == 0.0  # idle cluster


def test_one_greedy_step_by_hand():
    w = weights([2, 1, 1])
    loads = np.array([10.0, 2.0, 4.0])
    move = greedy_step(loads, w)
    # (w0 L0 - w1 L1) / (w0 + w1) = (15 - 1.5) / 2.25 = 6 units from edge 0 to edge 1
    assert (move.source, move.target, move.amount) == (0, 1, pytest.approx(6.0))
    assert loads.tolist() == pytest.approx([4.0, 8.0, 4.0])  # wL = [6, 6, 3]
    assert imbalance(loads, [2, 1, 1]) == pytest.approx(18 / 15 - 1)
    # half the best bandwidth between 0 and 1 halves the move
    bandwidth = np.array([[0, 50, 100], [50, 0, 100], [100, 100, 0]], dtype=float)
    loads = np.array([10.0, 2.0, 4.0])
    assert greedy_step(loads, w, bandwidth).amount == pytest.approx(3.0)


def test_neuromesh_lowers_imbalance_where_distream_stops_early():
    loads, capacities = [3.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    distream = Distream().plan(loads, capacities)
    # 2 units: [3,0,0] -> [1,2,0] (I 2 -> 1); the next 2 units would give [1,0,2]: no gain, stop
    assert [m.amount for m in distream.moves] == [2.0] and distream.after == pytest.approx(1.0)
    neuromesh = NeuroMesh().plan(loads, capacities)
    assert neuromesh.before == pytest.approx(2.0)
    assert neuromesh.after < 0.05 < distream.after
    assert neuromesh.loads.sum() == pytest.approx(3.0)  # load is moved, never created or lost


def test_neuromesh_stops_after_two_iterations_without_gain():
    # equal weighted loads on the two ends after one move: the next moves change nothing
    plan = NeuroMesh().plan([4.0, 0.0], [1.0, 1.0])
    assert plan.after == pytest.approx(0.0) and len(plan.moves) == 1


@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_balancer_never_raises_imbalance(name):
    rng = np.random.default_rng(0)
    for _ in range(50):
        loads, caps = rng.uniform(0, 10, 4), rng.uniform(0.5, 2, 4)
        plan = create_balancer(name).plan(loads, caps)
        assert plan.after <= plan.before + 1e-9
        assert plan.loads.sum() == pytest.approx(loads.sum())


def _write(tmp_path, balancer) -> str:
    data = yaml.safe_load(resolve_config_path("cluster").read_text())
    data["balancer"] = balancer
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_default_is_no_balancing():
    assert load_config("cluster").balancer.name == "none"


@pytest.mark.parametrize(
    "balancer,names",
    [
        ({"name": "round-robin"}, ["balancer.name", "round-robin", "neuromesh"]),
        ({"name": "neuromesh", "capacities": {"edge-1": -1.0}}, ["balancer.capacities.edge-1", "greater than 0"]),
        ({"name": "neuromesh", "interval_s": 0}, ["balancer.interval_s", "greater than 0"]),
        ({"name": "neuromesh", "predictor": "oracle"}, ["balancer.predictor", "oracle", "gru"]),
        ({"name": "neuromesh", "capacities": {"edge-9": 1.0}}, ["balancer.capacities.edge-9", "no such edge"]),
        ({"name": "neuromesh", "bandwidth_mbps": {"edge-1": {"edge-2": 0}}}, ["balancer.bandwidth_mbps.edge-1.edge-2", "greater than 0"]),
        ({"name": "neuromesh", "bandwidth_mbps": {"edge-1": {"edge-7": 10}}}, ["balancer.bandwidth_mbps.edge-1.edge-7", "no such edge"]),
        ({"name": "neuromesh", "bandwidth_mbps": {"edge-1": {"edge-2": 10, "edge-3": 10}}}, ["balancer.bandwidth_mbps", "edge-2-edge-3"]),
        ({"name": "neuromesh", "bandwidth_mbps": {"edge-1": {"edge-2": 10}, "edge-2": {"edge-1": 20}}},
         ["balancer.bandwidth_mbps.edge-2.edge-1", "differs"]),
    ],
    ids=["unknown-name", "negative-capacity", "zero-interval", "unknown-predictor", "unknown-edge", "zero-bandwidth",
         "bandwidth-unknown-edge", "bandwidth-missing-pair", "bandwidth-asymmetric"],
)
def test_bad_balancer_section_is_one_line_naming_the_key(tmp_path, balancer, names):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, balancer))
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_bandwidth_from_the_yaml_scales_the_greedy_move(tmp_path):
    """B_ij from `balancer.bandwidth_mbps` (one direction per pair): the first NeuroMesh move from
    edge-1 (load 6) to edge-2 (load 0) is (6 - 0) / 2 = 3 units scaled by B_12 / max(B) = 50 / 100."""
    config = load_config(_write(tmp_path, {"name": "neuromesh", "bandwidth_mbps": {
        "edge-1": {"edge-2": 50, "edge-3": 100}, "edge-3": {"edge-2": 100}}}))
    names = [e.name for e in config.edges]
    matrix = config.balancer.bandwidth_matrix(names)
    assert matrix.tolist() == [[0, 50, 100], [50, 0, 100], [100, 100, 0]]
    plan = NeuroMesh().plan([6.0, 0.0, 2.0], [1.0, 1.0, 1.0], matrix)
    first = plan.moves[0]
    assert (first.source, first.target, first.amount) == (0, 1, pytest.approx(1.5))
    assert NeuroMesh().plan([6.0, 0.0, 2.0], [1.0, 1.0, 1.0]).moves[0].amount == pytest.approx(3.0)  # no B: factor 1
    assert config.balancer.bandwidth_matrix(["edge-3", "edge-1"]).tolist() == [[0, 100], [100, 0]]  # a camera's route
    assert load_config("cluster").balancer.bandwidth_matrix(names) is None
