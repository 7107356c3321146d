"""The four offloading policies on one topology: the cluster is run once per policy (same
cameras, same heterogeneous edges), and the stored runs are summarised side by side.

All runs share one results database under ``out_dir`` and one pass of the golden model over
the original frames (the references do not depend on the policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgeva.runtime.cluster import run_cluster
from edgeva.runtime.config import ClusterConfig
from edgeva.runtime.policy import list_policies

__all__ = ["bench_policies"]

POLICY_ORDER = ("edge-local", "edge-shortest", "shortest-cloud-threshold", "edge-cloud-assisted")


def bench_policies(config: ClusterConfig, *, policies: list[str] | None = None, out_dir: Path = Path("runs/bench-policies"),
                   progress: Callable | None = None, keep_filter: bool = False,
                   keep_retraining: bool = False) -> list[dict]:
    """One cluster run per policy; rows of the all-cameras summary.

    By default the frame filter and retraining are switched off, so every frame loads the
    edges and every run serves the same models: the runs differ only in the policy.
    """
    names = policies or [p for p in POLICY_ORDER if p in list_policies()]
    out_dir.mkdir(parents=True, exist_ok=True)
    update: dict = {"database": config.database.model_copy(update={"url": str(out_dir / "bench.db")})}
    if not keep_filter:
        update["filter"] = config.filter.model_copy(update={"enabled": False})
        update["cameras"] = [c.model_copy(update={"filter": None}) for c in config.cameras]
    if not keep_retraining:
        update["retraining"] = config.retraining.model_copy(update={"enabled": False})
    config = config.model_copy(update=update)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cache: dict = {}
    rows = []
    for name in names:
        policy = config.policy.model_validate({**config.policy.model_dump(), "name": name})
        run_id = f"bench-{name}-{stamp}"
        summary = run_cluster(config.model_copy(update={"policy": policy}), run_id=run_id,
                              log_dir=out_dir / run_id, progress=progress, reference_cache=cache)
        total = summary["total"]
        rows.append({
            "policy": name, "frames": total["recorded"], "inferred": total["inferred"], "reused": total["reused"],
            "dropped": total["dropped"], "home": total["at_home"], "other edge": total["at_other_edge"],
            "cloud": total["at_cloud"], "assisted": total["at_assisted"], "seconds": total["seconds"],
            "throughput_fps": total["fps"], "latency_ms": total["latency_ms"], "p95_ms": total["p95_ms"],
            "f1": total["f1"],
        })
    return rows
