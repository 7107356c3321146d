"""Replay videos through streaming schemes and measure accuracy, bytes, delay and cost.

For each video the final DNN's output on the original frames is the reference. Each scheme
configuration replays the video in k-frame chunks (:class:`~edgeva.schemes.Scheme`); its
per-frame results are scored against the reference (F1 at IoU 0.5), its uploads go through
the shared-link model (:func:`~edgeva.net.chunk_timings`), and its camera and server times
are the ones measured while replaying. Replays and references are cached on disk, keyed by
everything that determines them, so re-running (or changing only the link) is cheap.

The harness plans; an executor (:mod:`edgeva.executor`: in this process, or Ray actors on
one or many machines) runs the tasks on :class:`~edgeva.eval.worker.EvalWorker` s: first one
reference task per video (which also lists its configurations), then one replay-and-score
task per (video, scheme, configuration). Records come back in plan order whatever the
executor, so serial and parallel runs write identical results; a task that fails is
recorded with its video, scheme and configuration, and the others go on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgeva.errors import ConfigError, EdgevaError
from edgeva.eval.config import REPLAY_VERSION, EvalConfig
from edgeva.eval.worker import EvalWorker, VideoPlan, summarize
from edgeva.executor import Executor, SerialExecutor, TaskFailure, WorkerPool
from edgeva.schemes import scheme_class

__all__ = ["EvalConfig", "EvalResult", "evaluate", "summarize", "pick_best", "REPLAY_VERSION"]


@dataclass
class EvalResult:
    records: list[dict]
    best: list[dict]
    config: EvalConfig
    seconds: float
    failures: list[dict] = field(default_factory=list)  # {video, scheme, config, error} of each task that failed


def pick_best(records: list[dict], target_f1: float) -> list[dict]:
    """Per (video, scheme): the cheapest configuration (fewest bytes) with F1 >= target, or
    the most accurate one, flagged ``reaches_target: false``, when none reaches it."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["video"], r["scheme"]), []).append(r)
    best = []
    for (_video, _scheme), rows in groups.items():
        good = [r for r in rows if r["f1"] >= target_f1]
        choice = min(good, key=lambda r: (r["bytes"], r["delay_mean_s"])) if good else max(rows, key=lambda r: (r["f1"], -r["bytes"]))
        best.append({**choice, "reaches_target": bool(good)})
    return best


def _check_checkpoints(cfg: EvalConfig, log: Callable[[str], None]) -> dict[tuple[str, str], dict[str, str]]:
    """Before any work: every scheme exists and has its checkpoints for every video, each
    loads. Returns, per (video stem, scheme), the content hash of each checkpoint it uses
    (part of its replays' cache keys)."""
    ids: dict[tuple[str, str], dict[str, str]] = {}
    checked: dict[tuple, dict[str, str]] = {}
    for name in cfg.schemes:
        cls = scheme_class(name)  # unknown names fail here
        for video in cfg.videos:
            checkpoints = {kind: path for kind, path in cfg.checkpoints_of(Path(video).stem).items() if kind in cls.checkpoints}
            missing = [kind for kind in cls.checkpoints if not checkpoints.get(kind)]
            if missing:
                raise ConfigError(f"scheme {name} needs --{missing[0]} PATH")
            key = (name, *sorted(checkpoints.items()))
            if key not in checked:
                for kind in cls.checkpoints:
                    if not Path(checkpoints[kind]).is_file():
                        raise ConfigError(f"{checkpoints[kind]}: no such {kind} checkpoint")
                cls.check_checkpoints(checkpoints, model=cfg.model, log=log)
                checked[key] = {kind: hashlib.sha256(Path(checkpoints[kind]).read_bytes()).hexdigest()[:16] for kind in cls.checkpoints}
            ids[Path(video).stem, name] = checked[key]
    return ids



Progress = Callable[[str, int], Callable[[], None]]


def evaluate(cfg: EvalConfig, *, on_progress: Progress | None = None, log: Callable[[str], None] = print, executor: Executor | None = None) -> EvalResult:
    """Replay every video through every configuration of every scheme.

    Args:
        cfg: videos, schemes, model, link and metric settings.
        on_progress: called with (description, total) per video; returns a per-step callback.
        log: where one-line notes go (warnings, and each task that failed).
        executor: where the tasks run (default: serially in this process); started and
            stopped here.

    Raises:
        EdgevaError: bad input (unknown scheme, missing checkpoint or video), before any replay.
    """
    previous_threads = torch.get_num_threads()
    try:
        with executor or SerialExecutor() as ex:
            return _evaluate(cfg, ex, on_progress, log)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(cfg: EvalConfig, executor: Executor, on_progress: Progress | None, log: Callable[[str], None]) -> EvalResult:
    start = time.perf_counter()
    if unknown := [name for name in cfg.configs if name not in cfg.schemes]:
        raise ConfigError(f"configurations given for {unknown[0]}, which is not among the schemes evaluated ({', '.join(cfg.schemes)})")
    checkpoint_ids = _check_checkpoints(cfg, log)
    with executor.pool(EvalWorker, cfg, checkpoint_ids) as pool:
        records, failures = _run(cfg, pool, on_progress, log)
    return EvalResult(records, pick_best(records, cfg.target_f1), cfg, time.perf_counter() - start, failures)


def _run(cfg: EvalConfig, pool: WorkerPool, on_progress: Progress | None, log: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """References, then replays, on ``pool``: (records in plan order, failures)."""
    videos, failures = _references(pool.map("reference", [(spec,) for spec in cfg.videos]), cfg.videos, log)
    tasks: list[tuple[VideoPlan, str, dict]] = []
    calls, steps = [], []
    for video in videos:
        handle = pool.share(video)  # the reference travels once per worker, not once per task
        step = on_progress(f"{video.name} ({video.frames} frames)", len(video.plan)) if on_progress else (lambda: None)
        for name, config in video.plan:
            tasks.append((video, name, config))
            calls.append((handle, name, config))
            steps.append(step)

    def done(index: int, result: object) -> None:
        if isinstance(result, TaskFailure):
            video, name, config = tasks[index]
            label = ", ".join(f"{k}={v}" for k, v in config.items()) or "default"
            log(f"failed: {video.name} / {name} / {label}: {result.error}")
        steps[index]()

    records = []
    for (video, name, config), result in zip(tasks, pool.map("replay", calls, on_done=done), strict=True):
        if isinstance(result, TaskFailure):
            failures.append({"video": video.name, "scheme": name, "config": config or {"default": True}, "error": result.error})
        else:
            records.append(result)
    return records, failures


def _references(results: list, specs: Sequence[str], log: Callable[[str], None]) -> tuple[list[VideoPlan], list[dict]]:
    """The videos whose reference task succeeded; bad input (a missing or corrupt video) is
    raised as its one-line error, any other failure recorded against the video."""
    videos, failures = [], []
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, TaskFailure):
            if isinstance(result.exception, EdgevaError):
                raise result.exception
            log(f"failed: {spec} / reference: {result.error}")
            failures.append({"video": spec, "scheme": "reference", "config": {}, "error": result.error})
        else:
            videos.append(result)
    return videos, failures
