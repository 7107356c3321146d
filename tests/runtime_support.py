"""Helpers shared by the runtime tests: small cluster configs on loopback."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgeva.runtime.config import ClusterConfig, load_config


def cluster_config(tmp_path: Path, *, edges: int = 1, cameras: list[dict] | None = None, policy: str = "edge-local",
                   **sections: object) -> ClusterConfig:
    """A validated config written to ``tmp_path/cluster.yaml``: every node on 127.0.0.1, port 0."""
    data = {
        "database": {"url": str(tmp_path / "results.db"), "flush_s": 0.2},
        "policy": {"name": policy},
        "cloud": {"model": "yolox-nano", "link": {"rtt_ms": 0}},
        "edges": [{"id": i + 1, "model": "fastestdet"} for i in range(edges)],
        "cameras": cameras or [],
        **sections,
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)
