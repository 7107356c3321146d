"""Measured event F1 of schedules on held-out video, and the budget / app-count tables.

Measured event F1 replays each app's held-out scores (written by training; the runner
computes the very same scores, see the tests) at the app's scheduled frame rate:

* an event (a run of positive labels at the stream rate) is detected when any sampled frame
  inside it fires;
* the event-free stretches are cut into windows of the app's event length ``L``; a window
  with any firing sampled frame is a false positive;
* precision = detected / (detected + false-positive windows), recall = detected / events.

Achieved cost is measured by running the schedule on held-out frames with the real runner
(``measure_cost``): shared schedules through one :class:`SharedRunner`, no-sharing through
one runner per app (each pays its whole network), in ms of compute per second of video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeva.errors import ConfigError
from edgeva.mainstream.apps import AppsFolder
from edgeva.mainstream.runner import FIRE, is_due
from edgeva.mainstream.scheduler import Schedule, schedule

__all__ = ["score_videos", "measure_cost", "measure_event_f1", "evaluate_schedule", "budget_table", "app_count_table", "plot_tables", "BASELINES"]

BASELINES = ("mainstream", "f1-per-cost", "nosharing", "maxsharing")


def measure_event_f1(labels: np.ndarray, scores: np.ndarray, video: np.ndarray, fps: float, stream_fps: float,
                     window: int) -> dict[str, float]:
    """Event-level recall / precision / F1 of one app sampled at ``fps`` (see the module docstring)."""
    detected = events = alarms = windows = 0
    for v in np.unique(video):
        lab, sc = labels[video == v], scores[video == v]
        fired = np.array([is_due(i, fps, stream_fps) for i in range(len(lab))]) & (sc >= FIRE)
        edges = np.diff(np.concatenate([[0], lab.astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            events += 1
            detected += bool(fired[a:b].any())
        neg = np.diff(np.concatenate([[0], (~lab).astype(np.int8), [0]]))
        for a, b in zip(np.flatnonzero(neg == 1), np.flatnonzero(neg == -1)):
            for start in range(a, b, window):
                windows += 1
                alarms += bool(fired[start : min(b, start + window)].any())
    recall = detected / events if events else 0.0
    precision = detected / (detected + alarms) if detected + alarms else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": recall, "precision": precision, "f1": f1, "events": events, "detected": detected,
            "false_alarm_windows": alarms, "negative_windows": windows}


def score_videos(folder: AppsFolder, videos: Sequence[str], base, *, limit: int | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Labels and every app's scores at every freeze point on whole other videos, in the
    shape of :meth:`AppsFolder.heldout`; and the stream frames (for measuring cost)."""
    from edgeva.mainstream.train import base_features, branch_scores, load_stream

    stream = load_stream(videos, folder.stream_fps, limit=limit)
    feats = base_features(base, stream.images)
    points = folder.freeze_points
    scores = np.zeros((len(folder.specs), len(points), len(stream.video)), dtype=np.float32)
    for a in range(len(folder.specs)):
        for j, k in enumerate(points):
            scores[a, j] = branch_scores(folder.load_branch(a, k, base), feats[k])
    labels = np.stack([spec.labels(stream.counts) for spec in folder.specs])
    return {"labels": labels, "scores": scores, "video": stream.video}, stream.images


def measure_cost(folder: AppsFolder, sched: Schedule, apps: Sequence[int], images: np.ndarray, base) -> float:
    """Measured ms of compute per second of video of ``sched`` on ``images`` (stream frames)."""
    from edgeva.mainstream.runner import SharedRunner

    branches = [folder.load_branch(a, c.freeze, base) for a, c in zip(apps, sched.choices)]
    fps = [c.fps for c in sched.choices]
    if sched.scheduler == "nosharing":
        runners = [SharedRunner(base, [b], [f], folder.stream_fps) for b, f in zip(branches, fps)]
    else:
        runners = [SharedRunner(base, branches, fps, folder.stream_fps)]
    for runner in runners:
        for i, image in enumerate(images):
            runner.step(image, i)
    return sum(r.stats.compute_ms for r in runners) / (len(images) / folder.stream_fps)


def evaluate_schedule(folder: AppsFolder, sched: Schedule, apps: Sequence[int], heldout: dict[str, np.ndarray]) -> dict:
    """The schedule (for the apps ``apps``) with per-app measured event F1."""
    points = folder.freeze_points
    row = sched.to_dict([folder.names[a] for a in apps])
    measured = []
    for entry, a, choice in zip(row["apps"], apps, sched.choices):
        window = max(1, int(round(folder.manifest["apps"][a]["stats"]["event_length_s"] * folder.stream_fps)))
        m = measure_event_f1(heldout["labels"][a], heldout["scores"][a, points.index(choice.freeze)], heldout["video"],
                             choice.fps, folder.stream_fps, window)
        entry["measured"] = m
        measured.append(m["f1"])
    row["measured_f1"] = float(np.mean(measured))
    return row


def _run(folder: AppsFolder, name: str, budget: float, apps: list[int], units: str, heldout: dict,
         images: np.ndarray | None, base, fractional: bool) -> dict:
    try:
        sched = schedule(name, folder.problem(apps, units=units, fractional=fractional), budget)
    except ConfigError as exc:  # a budget below this scheduler's cheapest schedule: a gap in the table
        return {"scheduler": name, "budget": budget, "infeasible": str(exc)}
    row = evaluate_schedule(folder, sched, apps, heldout)
    row["budget"] = budget
    row["measured_cost"] = measure_cost(folder, sched, apps, images, base) if images is not None else None
    return row


def budget_table(folder: AppsFolder, budgets: Sequence[float], *, schedulers: Sequence[str] = BASELINES,
                 units: str = "stream", tick: Callable[[], None] | None = None, images: np.ndarray | None = None,
                 base=None, fractional: bool = False, heldout: dict | None = None) -> list[dict]:
    """One row per (budget, scheduler) over all apps of the folder; with ``images`` (held-out
    stream frames) and ``base``, the achieved cost is measured on them. ``heldout``: labels
    and scores to measure F1 on (default: the folder's held-out part of its videos)."""
    heldout, apps = heldout or folder.heldout(), list(range(len(folder.specs)))
    rows = []
    for budget in budgets:
        for name in schedulers:
            rows.append(_run(folder, name, budget, apps, units, heldout, images, base, fractional))
            if tick:
                tick()
    return rows


def app_count_table(folder: AppsFolder, budget: float, counts: Sequence[int], *, schedulers: Sequence[str] = BASELINES,
                    units: str = "stream", tick: Callable[[], None] | None = None, images: np.ndarray | None = None,
                    base=None, fractional: bool = False, heldout: dict | None = None) -> list[dict]:
    """One row per (number of apps, scheduler) at a fixed budget; the first ``n`` apps are used."""
    heldout = heldout or folder.heldout()
    rows = []
    for n in counts:
        if n > len(folder.specs):
            raise ConfigError(f"--app-counts {n}: the apps folder has only {len(folder.specs)} apps")
        for name in schedulers:
            row = _run(folder, name, budget, list(range(n)), units, heldout, images, base, fractional)
            row["apps_count"] = n
            rows.append(row)
            if tick:
                tick()
    return rows


def plot_tables(budget_rows: list[dict], count_rows: list[dict], path: str | Path) -> None:
    """Measured (solid) and predicted (dashed) mean event F1 vs budget and vs number of apps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if count_rows else 1, figsize=(11 if count_rows else 6, 4), squeeze=False)
    panels = [(axes[0][0], budget_rows, "budget", "budget (ms of compute per s of video)")]
    if count_rows:
        panels.append((axes[0][1], count_rows, "apps_count", "number of apps"))
    for ax, rows, key, label in panels:
        for name in dict.fromkeys(r["scheduler"] for r in rows):
            ok = [r for r in rows if r["scheduler"] == name and "infeasible" not in r]
            xs = [r[key] for r in ok]
            line = ax.plot(xs, [r["measured_f1"] for r in ok], marker="o", label=f"{name} (measured)")[0]
            ax.plot(xs, [r["mean_f1"] for r in ok], ls="--", color=line.get_color(), alpha=0.6)
        ax.set_xlabel(label)
        ax.set_ylabel("mean event F1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
