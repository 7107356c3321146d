"""Next-interval load predictors (NeuroMesh's load predictor and its baselines).

A predictor sees an edge's recent load history (one value per balancing interval, oldest
first) and, optionally, its neighbours' (the other edges' histories over the same intervals),
and predicts the edge's next interval's load, so the optimizer can act before a burst lands.

* ``last``: the last value.
* ``ema``: an exponential moving average (``alpha``).
* ``gru``: NeuroMesh's predictor, a tiny GRU (one layer, 16 units) over the last ``window`` (4)
  intervals of the edge *and its neighbours*: per interval, the edge's load and the mean load
  of the other edges, each relative to its latest value, and the gap between the two (load
  moves from busy edges to idle ones, so the neighbours' loads say where an edge's load is
  going). Trained on recorded traces of every edge to predict the next value's change, in
  units of the traces' scale. ``neighbours=False`` gives the edge's own history only.
  Training is deterministic (seeded, one thread) and takes a few seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeva.registry import Registry

__all__ = ["Predictor", "LastValue", "Ema", "GruPredictor", "PREDICTORS", "create_predictor", "prediction_errors"]


class Predictor:
    """Predicts the next value of a load history; ``fit`` learns from recorded traces (optional).

    ``neighbours`` are the other edges' histories over the same intervals (each aligned with
    ``history`` at its end); predictors that do not use them ignore them.
    """

    name = "last"

    def fit(self, trace: Sequence[float], neighbours: Sequence[Sequence[float]] | None = None) -> Predictor:
        return self

    def fit_edges(self, traces: Sequence[Sequence[float]]) -> Predictor:
        """Fit on every edge's trace at once, each edge with the others as its neighbours."""
        return self.fit_runs([traces])

    def fit_runs(self, runs: Sequence[Sequence[Sequence[float]]]) -> Predictor:
        """Fit on several recorded runs at once, each a list of every edge's trace."""
        return self

    def predict(self, history: Sequence[float], neighbours: Sequence[Sequence[float]] | None = None) -> float:
        return float(history[-1]) if len(history) else 0.0


class LastValue(Predictor):
    name = "last"


class Ema(Predictor):
    name = "ema"

    def __init__(self, alpha: float = 0.5):
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha}")
        self.alpha = alpha

    def predict(self, history: Sequence[float], neighbours: Sequence[Sequence[float]] | None = None) -> float:
        if not len(history):
            return 0.0
        value = float(history[0])
        for x in history[1:]:
            value = self.alpha * float(x) + (1 - self.alpha) * value
        return value


def _neighbour_mean(history: np.ndarray, neighbours: Sequence[Sequence[float]] | None) -> np.ndarray:
    """The other edges' mean load at each interval of ``history`` (aligned at the end; an edge
    with a shorter history counts where it has values; no neighbour: the edge's own load)."""
    n = len(history)
    rows = [np.asarray(h, dtype=float)[-n:] for h in neighbours or [] if len(h)]
    if not rows:
        return history.copy()
    total, count = np.zeros(n), np.zeros(n)
    for row in rows:
        total[n - len(row):] += row
        count[n - len(row):] += 1
    return np.where(count > 0, total / np.maximum(count, 1), history)


class GruPredictor(Predictor):
    """A one-layer GRU over the last ``window`` intervals; until fitted it predicts the last value.

    Args:
        window: intervals of history it reads.
        hidden: GRU units.
        epochs: full-batch Adam steps when fitting.
        seed: torch seed (fits are deterministic).
        neighbours: read the other edges' mean load as well as the edge's own (NeuroMesh's).
    """

    name = "gru"

    def __init__(self, window: int = 4, hidden: int = 16, epochs: int = 100, seed: int = 0, neighbours: bool = True):
        self.window, self.hidden, self.epochs, self.seed, self.neighbours = window, hidden, epochs, seed, neighbours
        self.model = None
        self.scale = 1.0

    @property
    def features(self) -> int:
        return 3 if self.neighbours else 1

    def _build(self):
        import torch

        class Net(torch.nn.Module):
            def __init__(self, features: int, hidden: int):
                super().__init__()
                self.gru = torch.nn.GRU(features, hidden, batch_first=True)
                self.head = torch.nn.Linear(hidden, 1)

            def forward(self, x):
                out, _ = self.gru(x)
                return self.head(out[:, -1])

        return Net(self.features, self.hidden)

    def _inputs(self, own: np.ndarray, others: np.ndarray):
        """(windows, window, features): own and neighbours' loads relative to their last value,
        and the neighbours' mean minus the edge's own, in units of ``scale``."""
        import torch

        parts = [(own - own[:, -1:]) / self.scale]
        if self.neighbours:
            parts += [(others - others[:, -1:]) / self.scale, (others - own) / self.scale]
        return torch.tensor(np.stack(parts, axis=-1), dtype=torch.float32)

    def _windows(self, trace: Sequence[float], neighbours) -> tuple[np.ndarray, ...]:
        """(own windows, neighbour-mean windows, next values, the trace)."""
        x = np.asarray(trace, dtype=float)
        m = _neighbour_mean(x, neighbours)
        idx = np.arange(max(0, len(x) - self.window))[:, None] + np.arange(self.window)
        return x[idx], m[idx], x[self.window:], x

    def fit(self, trace: Sequence[float], neighbours: Sequence[Sequence[float]] | None = None) -> GruPredictor:
        return self._fit([self._windows(trace, neighbours)])

    def fit_runs(self, runs: Sequence[Sequence[Sequence[float]]]) -> GruPredictor:
        return self._fit([self._windows(t, [o for j, o in enumerate(traces) if j != i])
                          for traces in runs for i, t in enumerate(traces)])

    def _fit(self, parts: list[tuple[np.ndarray, ...]]) -> GruPredictor:
        import torch

        parts = [p for p in parts if len(p[2])]
        if sum(len(p[2]) for p in parts) < 2:
            raise ValueError(f"trace: need at least {self.window + 2} values to train on")
        own, others, nxt = (np.concatenate([p[k] for p in parts]) for k in range(3))
        self.scale = float(np.abs(np.concatenate([np.diff(p[3]) for p in parts])).mean()) or 1.0
        targets = (nxt - own[:, -1]) / self.scale
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(self.seed)
            self.model = self._build()
            opt = torch.optim.Adam(self.model.parameters(), lr=0.01)
            inputs, y = self._inputs(own, others), torch.tensor(targets[:, None], dtype=torch.float32)
            for _ in range(self.epochs):
                opt.zero_grad()
                loss = torch.nn.functional.smooth_l1_loss(self.model(inputs), y)
                loss.backward()
                opt.step()
        finally:
            torch.set_num_threads(threads)
        return self

    def predict(self, history: Sequence[float], neighbours: Sequence[Sequence[float]] | None = None) -> float:
        if self.model is None or len(history) < self.window:
            return super().predict(history)
        import torch

        own = np.asarray(history[-self.window:], dtype=float)
        others = _neighbour_mean(np.asarray(history, dtype=float), neighbours)[-self.window:]
        with torch.no_grad():
            delta = float(self.model(self._inputs(own[None], others[None]))[0, 0])
        return max(0.0, float(own[-1]) + delta * self.scale)


PREDICTORS: Registry[Callable[..., Predictor]] = Registry("load predictor")
PREDICTORS.register("last")(LastValue)
PREDICTORS.register("ema")(Ema)
PREDICTORS.register("gru")(GruPredictor)


def create_predictor(name: str, **options) -> Predictor:
    return PREDICTORS[name](**options)


def prediction_errors(predictors: dict[str, Predictor], trace: Sequence[float], start: int,
                      neighbours: Sequence[Sequence[float]] | None = None) -> dict[str, dict[str, float]]:
    """Mean absolute and root-mean-square error of one-step predictions on ``trace[start:]``
    (each prediction sees the history before it, its neighbours' too when given)."""
    x = np.asarray(trace, dtype=float)
    others = [np.asarray(o, dtype=float) for o in neighbours or []]
    out = {}
    for name, predictor in predictors.items():
        errors = np.array([predictor.predict(x[:t], [o[:t] for o in others]) - x[t] for t in range(start, len(x))])
        out[name] = {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors ** 2).mean()))}
    return out
