"""The balancers on one scenario: the cluster is run once per balancer (same cameras, same
heterogeneous edges, same content), while a monitor polls every edge's status each
interval (the imbalance over time); the stored runs give throughput, latency and F1.

The scenario (``configs/balancers.yaml``) makes balancing matter: edges of different speed
(``delay_factor``), a busy and an idle camera on the wrong edges, and a camera that starts
late. Policy ``edge-local``, so frames are inferred where their chunks land and only the
balancer moves load. For comparison, rows named after a per-frame offloading policy
(``edge-shortest``: each frame to the edge with the shortest queue; ``edge-local``: the same
as ``none``) run the same scenario with that policy and no balancer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from edgeva.runtime.balance.optimizer import imbalance
from edgeva.runtime.cluster import resolve_ports, run_cluster
from edgeva.runtime.config import ClusterConfig
from edgeva.runtime.policy import OFFLOAD_POLICIES
from edgeva.runtime.rpc import Peer
from edgeva.runtime.store import FrameRow, open_store

__all__ = ["bench_balancers", "plot_balancers", "BALANCER_ORDER"]

BALANCER_ORDER = ("none", "distream", "neuromesh", "edge-shortest")  # "none" runs policy edge-local


class _Monitor:
    """Polls every edge's queue every ``interval_s``: loads (seconds of work) and imbalance."""

    def __init__(self, config: ClusterConfig, interval_s: float):
        self.peers = [Peer(e.name, e.address, config.security) for e in config.edges]
        self.interval_s, self.samples = interval_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                statuses = [p.status(timeout=1.0) for p in self.peers]
            except Exception:
                continue  # not up yet, or already stopping
            loads = [s.queue_length * s.service_s for s in statuses]
            self.samples.append({"t": time.time(), "loads": loads, "imbalance": imbalance(loads, [1.0] * len(loads))})

    def __enter__(self) -> _Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for peer in self.peers:
            peer.close()


def _latency_series(url: str, run_id: str, start: float) -> list[list[float]]:
    """[seconds since start, latency ms] of every inferred frame, by capture time."""
    with open_store(url)() as session:
        rows = session.execute(select(FrameRow.t_capture, FrameRow.t_done).where(
            FrameRow.run_id == run_id, FrameRow.state == "inferred")).all()
    return sorted([round(c - start, 3), round((d - c) * 1000, 1)] for c, d in rows if c is not None and d is not None)


def _scenario(config: ClusterConfig, name: str) -> ClusterConfig:
    """``config`` under balancer ``name``, or under offloading policy ``name`` without a balancer."""
    if name in OFFLOAD_POLICIES.names():
        balancer, policy = "none", config.policy.model_copy(update={"name": name})
    else:
        balancer, policy = name, config.policy
    section = config.balancer.model_validate({**config.balancer.model_dump(), "name": balancer})
    return config.model_copy(update={"balancer": section, "policy": policy})


SUMMED = ("frames_read", "frames_accounted", "inferred", "dropped")  # added up over repeats; the rest averaged
AVERAGED = ("throughput_fps", "latency_mean_ms", "latency_p95_ms", "f1", "seconds", "imbalance_mean")


def _run_once(config: ClusterConfig, name: str, run_id: str, out_dir: Path, cache: dict, progress: Callable | None) -> dict:
    """One cluster run of the scenario under ``name``: its all-cameras summary and series."""
    run_config = resolve_ports(_scenario(config, name))
    started = time.time()
    with _Monitor(run_config, config.balancer.interval_s) as monitor:
        summary = run_cluster(run_config, run_id=run_id, log_dir=out_dir / run_id, progress=progress, reference_cache=cache)
    total = summary["total"]
    series = [[round(s["t"] - started, 2), round(s["imbalance"], 3)] for s in monitor.samples]
    values = [i for _, i in series]
    return {
        "balancer": name, "policy": run_config.policy.name, "throughput_fps": total["fps"], "latency_mean_ms": total["latency_ms"],
        "latency_p95_ms": total["p95_ms"], "f1": total["f1"], "frames_read": total["read"],
        "frames_accounted": total["recorded"], "inferred": total["inferred"], "dropped": total["dropped"],
        "seconds": total["seconds"], "imbalance_mean": float(np.mean(values)) if values else None,
        "imbalance_over_time": series,
        "loads_over_time": [[round(s["t"] - started, 2), *(round(x, 4) for x in s["loads"])] for s in monitor.samples],
        "latency_over_time": _latency_series(run_config.database.url, run_id, started),
    }


def _combine(runs: list[dict]) -> dict:
    """One row from repeated runs: frame counts added up, rates and latencies averaged, the
    first run's series, and every run's figures under ``runs``."""
    if len(runs) == 1:
        return runs[0]
    row = dict(runs[0])
    for key in SUMMED:
        row[key] = sum(r[key] for r in runs)
    for key in AVERAGED:
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = round(float(np.mean(values)), 3) if values else None
    row["runs"] = [{k: r[k] for k in ("throughput_fps", "latency_mean_ms", "latency_p95_ms", "f1", "imbalance_mean")} for r in runs]
    return row


def bench_balancers(config: ClusterConfig, *, balancers: list[str] | None = None, repeat: int = 1,
                    out_dir: Path = Path("runs/bench-balancers"), progress: Callable | None = None) -> list[dict]:
    """``repeat`` cluster runs per balancer (interleaved: every balancer once, then again, so a
    change in the machine's load falls on all of them); one row each (see :func:`_combine`)."""
    if repeat < 1:
        raise ValueError(f"repeat: must be at least 1, got {repeat}")
    out_dir.mkdir(parents=True, exist_ok=True)
    config = config.model_copy(update={"database": config.database.model_copy(update={"url": str(out_dir / "bench.db")})})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cache: dict = {}
    names = balancers or list(BALANCER_ORDER)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(repeat):
        for name in names:
            run_id = f"bench-{name}-{stamp}" + (f"-{round_ + 1}" if repeat > 1 else "")
            runs[name].append(_run_once(config, name, run_id, out_dir, cache, progress))
    return [_combine(runs[name]) for name in names]


def plot_balancers(rows: list[dict], path: Path) -> Path:
    """Imbalance (top) and per-frame latency (bottom) over time, one line per balancer (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for row in rows:
        if row["imbalance_over_time"]:
            t, i = zip(*row["imbalance_over_time"], strict=True)
            top.plot(t, i, label=row["balancer"])
        if row["latency_over_time"]:
            t, lat = zip(*row["latency_over_time"], strict=True)
            bottom.plot(t, lat, ".", markersize=3, label=row["balancer"])
    top.set_ylabel("imbalance I")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since the run started (by capture time)")
    top.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def record_load_trace(config: ClusterConfig, out: Path, *, interval_s: float = 0.25) -> dict:
    """Run ``config`` once and write each edge's load (seconds of queued work) every ``interval_s``.

    The file (JSON: ``interval_s``, ``loads`` by edge name) is what the predictors are compared on.
    """
    config = resolve_ports(config)
    with _Monitor(config, interval_s) as monitor:
        run_cluster(config, run_id=f"trace-{time.strftime('%Y%m%d-%H%M%S')}", log_dir=out.parent / "trace-logs",
                    evaluate=False)
    names = [e.name for e in config.edges]
    data = {"interval_s": interval_s, "loads": {n: [round(s["loads"][i], 4) for s in monitor.samples]
                                                for i, n in enumerate(names)}}
    out.write_text(json.dumps(data))
    return data
