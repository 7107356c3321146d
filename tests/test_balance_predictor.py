"""Load predictors on a load trace recorded from a real cluster run (a queue that builds up on
a slow edge, then drains; the mean load of each 0.5 s interval): the GRU, trained on the
first half, beats the last value on the second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeva.runtime.balance.predictor import (
    PREDICTORS,
    Ema,
    GruPredictor,
    LastValue,
    create_predictor,
    prediction_errors,
)

TRACE = Path(__file__).parent / "data" / "balance_load_trace.json"


def _trace() -> list[float]:
    data = json.loads(TRACE.read_text())
    return data["loads"][data["edge"]]


def test_recorded_trace_has_a_trend():
    trace = _trace()
    assert len(trace) >= 40
    peak = trace.index(max(trace))
    assert max(trace) > 4 * (trace[0] + 0.1) and 3 <= peak <= len(trace) - 20  # builds up, then drains
    tail = trace[len(trace) // 2:]
    assert tail[-1] < tail[0] / 4  # the half predicted: a drain


def test_gru_beats_last_value_on_the_recorded_trace():
    trace = _trace()
    split = len(trace) // 2
    gru = GruPredictor(seed=0).fit(trace[:split])  # trained on the first half only
    errors = prediction_errors({"last": LastValue(), "ema": Ema(0.5), "gru": gru}, trace, start=split)
    assert errors["gru"]["mae"] < errors["last"]["mae"]
    assert errors["last"]["mae"] < errors["ema"]["mae"]  # a trend: averaging lags more than the last value


def test_gru_training_is_deterministic():
    trace = _trace()[:30]
    a, b = GruPredictor(seed=3, epochs=30).fit(trace), GruPredictor(seed=3, epochs=30).fit(trace)
    assert a.predict(trace) == b.predict(trace)


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_every_predictor_predicts_a_constant(name):
    assert create_predictor(name).predict([2.0] * 12) == pytest.approx(2.0, abs=0.3)
