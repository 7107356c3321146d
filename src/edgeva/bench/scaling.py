"""``edgeva bench eval``: one evaluation's wall time on each executor, in one run.

The same evaluation (cache off, so every reference and replay is computed) runs serially in
this process and then on Ray workers; each row gives the wall time including start-up (the
local Ray runtime, each worker loading its models), the replays per second, the speed-up
over the first row, and whether the records are identical to the first row's (bytes and F1
of every configuration: they must be, whatever the executor).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from edgeva.eval.config import EvalConfig
from edgeva.eval.harness import evaluate
from edgeva.executor import Executor

__all__ = ["bench_eval"]

Progress = Callable[[str, int], Callable[[], None]]


def _fingerprint(records: list[dict]) -> list[tuple]:
    return [(r["video"], r["scheme"], str(r["config"]), r["bytes"], r["f1"]) for r in records]


def bench_eval(cfg: EvalConfig, runs: Sequence[tuple[str, Executor]], *, on_progress: Progress | None = None,
               log: Callable[[str], None] = print) -> list[dict]:
    """Time ``cfg`` (without cache) on each ``(label, executor)``; rows in the same order."""
    cfg = dataclasses.replace(cfg, use_cache=False)
    rows: list[dict] = []
    first: tuple[float, list[tuple]] | None = None
    for label, executor in runs:
        log(f"{label}: evaluating {len(cfg.videos)} videos x {len(cfg.schemes)} schemes without cache")
        start = time.perf_counter()
        result = evaluate(cfg, executor=executor, on_progress=on_progress, log=log)
        wall = time.perf_counter() - start
        prints = _fingerprint(result.records)
        first = first or (wall, prints)
        rows.append({
            "executor": label, "replays": len(result.records), "failed": len(result.failures), "wall s": round(wall, 1),
            "replays/s": round(len(result.records) / wall, 2), "speed-up": round(first[0] / wall, 2),
            "same bytes and F1": prints == first[1],
        })
    return rows
