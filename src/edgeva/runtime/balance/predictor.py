"""Next-interval load predictors (NeuroMesh's load predictor and its baselines).

A predictor sees an edge's recent load history (one value per balancing interval, oldest
first) and predicts the next interval's load, so the optimizer can act before a burst lands.

* ``last``: the last value.
* ``ema``: an exponential moving average (``alpha``).
* ``gru``: a tiny GRU (one layer, 16 units) over the last ``window`` (4) values, trained on a
  recorded trace to predict the next value's change, in units of the trace's scale.
  Training is deterministic (seeded, one thread) and takes a few seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeva.registry import Registry

__all__ = ["Predictor", "LastValue", "Ema", "GruPredictor", "PREDICTORS", "create_predictor", "prediction_errors"]


class Predictor:
    """Predicts the next value of a load history; ``fit`` learns from a recorded trace (optional)."""

    name = "last"

    def fit(self, trace: Sequence[float]) -> Predictor:
        return self

    def predict(self, history: Sequence[float]) -> float:
        return float(history[-1]) if len(history) else 0.0


class LastValue(Predictor):
    name = "last"


class Ema(Predictor):
    name = "ema"

    def __init__(self, alpha: float = 0.5):
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha: must be in (0, 1], got {alpha}")
        self.alpha = alpha

    def predict(self, history: Sequence[float]) -> float:
        if not len(history):
            return 0.0
        value = float(history[0])
        for x in history[1:]:
            value = self.alpha * float(x) + (1 - self.alpha) * value
        return value


class GruPredictor(Predictor):
    """A one-layer GRU over the last ``window`` loads; until fitted it predicts the last value."""

    name = "gru"

    def __init__(self, window: int = 4, hidden: int = 16, epochs: int = 100, seed: int = 0):
        self.window, self.hidden, self.epochs, self.seed = window, hidden, epochs, seed
        self.model = None
        self.scale = 1.0

    def _build(self):
        import torch

        class Net(torch.nn.Module):
            def __init__(self, hidden: int):
                super().__init__()
                self.gru = torch.nn.GRU(1, hidden, batch_first=True)
                self.head = torch.nn.Linear(hidden, 1)

            def forward(self, x):
                out, _ = self.gru(x)
                return self.head(out[:, -1])

        return Net(self.hidden)

    def _inputs(self, windows: np.ndarray):
        import torch

        rel = (windows - windows[:, -1:]) / self.scale  # history relative to its last value
        return torch.tensor(rel[..., None], dtype=torch.float32)

    def fit(self, trace: Sequence[float]) -> GruPredictor:
        import torch

        x = np.asarray(trace, dtype=float)
        if len(x) < self.window + 2:
            raise ValueError(f"trace: need at least {self.window + 2} values to train on, got {len(x)}")
        self.scale = float(np.abs(np.diff(x)).mean()) or 1.0
        windows = np.stack([x[i:i + self.window] for i in range(len(x) - self.window)])
        targets = (x[self.window:] - windows[:, -1]) / self.scale
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(self.seed)
            self.model = self._build()
            opt = torch.optim.Adam(self.model.parameters(), lr=0.01)
            inputs, y = self._inputs(windows), torch.tensor(targets[:, None], dtype=torch.float32)
            for _ in range(self.epochs):
                opt.zero_grad()
                loss = torch.nn.functional.smooth_l1_loss(self.model(inputs), y)
                loss.backward()
                opt.step()
        finally:
            torch.set_num_threads(threads)
        return self

    def predict(self, history: Sequence[float]) -> float:
        if self.model is None or len(history) < self.window:
            return super().predict(history)
        import torch

        window = np.asarray(history[-self.window:], dtype=float)[None]
        with torch.no_grad():
            delta = float(self.model(self._inputs(window))[0, 0])
        return max(0.0, float(window[0, -1]) + delta * self.scale)


PREDICTORS: Registry[Callable[..., Predictor]] = Registry("load predictor")
PREDICTORS.register("last")(LastValue)
PREDICTORS.register("ema")(Ema)
PREDICTORS.register("gru")(GruPredictor)


def create_predictor(name: str, **options) -> Predictor:
    return PREDICTORS[name](**options)


def prediction_errors(predictors: dict[str, Predictor], trace: Sequence[float], start: int) -> dict[str, dict[str, float]]:
    """Mean absolute and root-mean-square error of one-step predictions on ``trace[start:]``."""
    x = np.asarray(trace, dtype=float)
    out = {}
    for name, predictor in predictors.items():
        errors = np.array([predictor.predict(x[:t]) - x[t] for t in range(start, len(x))])
        out[name] = {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors ** 2).mean()))}
    return out
