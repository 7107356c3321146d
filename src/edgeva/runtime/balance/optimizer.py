"""Load balancing across heterogeneous edges (NeuroMesh's workload optimizer, Distream's baseline).

Every interval each edge i reports a load L_i (work queued and arriving) and has a capacity
C_i. With weights w_i = C_i / mean(C), the imbalance is

    I = n * max_i(w_i L_i) / sum_i(w_i L_i) - 1

(0 when every weighted load is equal, n - 1 when one edge holds everything).

* ``neuromesh``: greedy. Repeatedly move load from the edge with the largest w_i L_i to the
  one with the smallest w_j L_j; the amount is (w_i L_i - w_j L_j) / (w_i + w_j) scaled by
  B_ij / max(B) (B: bandwidth between edges; without B the factor is 1, and one move makes
  the two weighted loads equal). Stop after 2 iterations in a row that do not lower I.
* ``distream`` (Distream, SenSys'20): move a fixed 2 load units from the most to the least
  (weighted-)loaded edge until I <= 0.3, or until a move would no longer lower I.
* ``none``: no move.

A balancer returns a :class:`Plan` (the moves and the loads after them); the runtime turns
moves into camera reassignments (:mod:`edgeva.runtime.balance.coordinator`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeva.registry import Registry

__all__ = ["weights", "imbalance", "Move", "Plan", "Balancer", "NeuroMesh", "Distream", "NoBalancing",
           "BALANCERS", "create_balancer"]


def weights(capacities: Sequence[float]) -> np.ndarray:
    """w_i = C_i / mean(C).

    Raises:
        ValueError: a capacity that is not positive and finite.
    """
    c = np.asarray(capacities, dtype=float)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"capacities: expected a non-empty list, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"capacities: every capacity must be positive, got {c.tolist()}")
    return c / c.mean()


def imbalance(loads: Sequence[float], capacities: Sequence[float]) -> float:
    """I = n * max(w_i L_i) / sum(w_i L_i) - 1 (0 for an idle cluster)."""
    weighted = weights(capacities) * np.asarray(loads, dtype=float)
    total = float(weighted.sum())
    if total <= 0:
        return 0.0
    return len(weighted) * float(weighted.max()) / total - 1.0


@dataclass(frozen=True)
class Move:
    source: int  # index of the edge load leaves
    target: int  # index of the edge load goes to
    amount: float  # load units moved


@dataclass
class Plan:
    loads: np.ndarray  # loads after the moves
    moves: list[Move] = field(default_factory=list)
    before: float = 0.0  # imbalance before
    after: float = 0.0  # imbalance after


class Balancer:
    """Plans load moves; subclasses implement :meth:`_moves`."""

    name = "none"

    def plan(self, loads: Sequence[float], capacities: Sequence[float],
             bandwidth: np.ndarray | None = None) -> Plan:
        """Moves that lower the imbalance of ``loads`` on edges of ``capacities``.

        Args:
            loads: L_i per edge (>= 0).
            capacities: C_i per edge (> 0).
            bandwidth: B_ij between edges (n x n, > 0 off the diagonal); None: all equal.
        """
        current = np.asarray(loads, dtype=float).copy()
        if current.shape != (len(capacities),):
            raise ValueError(f"loads: expected {len(capacities)} values (one per edge), got {current.shape}")
        if np.any(current < 0) or not np.all(np.isfinite(current)):
            raise ValueError(f"loads: must be finite and >= 0, got {current.tolist()}")
        w = weights(capacities)
        before = imbalance(current, capacities)
        moves = self._moves(current, w, bandwidth)
        return Plan(current, moves, before, imbalance(current, capacities))

    def _moves(self, loads: np.ndarray, w: np.ndarray, bandwidth: np.ndarray | None) -> list[Move]:
        return []


def _ends(loads: np.ndarray, w: np.ndarray) -> tuple[int, int]:
    weighted = w * loads
    return int(np.argmax(weighted)), int(np.argmin(weighted))


def _imb(loads: np.ndarray, w: np.ndarray) -> float:
    total = float((w * loads).sum())
    return 0.0 if total <= 0 else len(loads) * float((w * loads).max()) / total - 1.0


def greedy_step(loads: np.ndarray, w: np.ndarray, bandwidth: np.ndarray | None = None) -> Move | None:
    """One NeuroMesh step, applied to ``loads`` in place; None when there is nothing to move."""
    i, j = _ends(loads, w)
    if i == j:
        return None
    amount = (w[i] * loads[i] - w[j] * loads[j]) / (w[i] + w[j])
    if bandwidth is not None:
        off = bandwidth[~np.eye(len(loads), dtype=bool)]
        amount *= float(bandwidth[i, j]) / float(off.max())
    amount = min(amount, float(loads[i]))
    if amount <= 1e-12:
        return None
    loads[i] -= amount
    loads[j] += amount
    return Move(i, j, float(amount))


class NeuroMesh(Balancer):
    """Greedy balancing; stops after ``patience`` iterations in a row that do not lower I."""

    name = "neuromesh"

    def __init__(self, *, patience: int = 2, max_iterations: int = 64, min_gain: float = 1e-9):
        self.patience, self.max_iterations, self.min_gain = patience, max_iterations, min_gain

    def _moves(self, loads, w, bandwidth):
        moves, best, stale = [], _imb(loads, w), 0
        for _ in range(self.max_iterations):
            move = greedy_step(loads, w, bandwidth)
            if move is None:
                break
            moves.append(move)
            now = _imb(loads, w)
            if now < best - self.min_gain:
                best, stale = now, 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        return moves


class Distream(Balancer):
    """Move ``unit`` load units from the most to the least loaded edge until I <= ``target``."""

    name = "distream"

    def __init__(self, *, unit: float = 2.0, target: float = 0.3, max_iterations: int = 64):
        self.unit, self.target, self.max_iterations = unit, target, max_iterations

    def _moves(self, loads, w, bandwidth):
        moves = []
        for _ in range(self.max_iterations):
            now = _imb(loads, w)
            if now <= self.target:
                break
            i, j = _ends(loads, w)
            amount = min(self.unit, float(loads[i]))
            trial = loads.copy()
            trial[i] -= amount
            trial[j] += amount
            if i == j or amount <= 0 or _imb(trial, w) >= now:
                break  # a whole unit would overshoot: Distream moves whole units only
            loads[:] = trial
            moves.append(Move(i, j, amount))
        return moves


class NoBalancing(Balancer):
    name = "none"


BALANCERS: Registry[Callable[..., Balancer]] = Registry("balancer")


def create_balancer(name: str, **options: float) -> Balancer:
    """The balancer registered as ``name`` (options: its thresholds)."""
    return BALANCERS[name](**options)


BALANCERS.register("none")(lambda **_: NoBalancing())
BALANCERS.register("neuromesh")(lambda *, patience=2, **_: NeuroMesh(patience=int(patience)))
BALANCERS.register("distream")(lambda *, unit=2.0, target=0.3, **_: Distream(unit=unit, target=target))
