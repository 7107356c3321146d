"""Whole topologies as real processes on loopback: 1 cloud + 3 edges + 3 cameras to the end
of their clips (with an inline token that must not reach a file or the database). Faults
injected into real processes are in ``test_runtime_faults.py``."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import select

from edgeva.runtime.cluster import run_cluster
from edgeva.runtime.store import STATES, CameraRow, FrameRow, RunRow, open_store
from runtime_support import cluster_config


def _frames_by_camera(url: str, run_id: str) -> dict[int, list[FrameRow]]:
    with open_store(url)() as session:
        rows = session.scalars(select(FrameRow).where(FrameRow.run_id == run_id)).all()
        cameras = session.scalars(select(CameraRow).where(CameraRow.run_id == run_id)).all()
    out = {c.camera: [] for c in cameras}
    for row in rows:
        out[row.camera].append(row)
    return out


def test_cluster_records_every_frame_once(tmp_path):
    cameras = [
        {"id": 1, "source": "store-aisle-detection", "edge": 1, "frames": 30, "fps": 15},
        {"id": 2, "source": "people-detection", "edge": 2, "fps": 15},
        {"id": 3, "source": "fruit-and-vegetable-detection", "edge": 3, "frames": 30, "fps": 15, "backlog": "drop", "max_inflight": 1},
    ]
    secret = "inline-t0ken-never-stored"
    config = cluster_config(tmp_path, edges=3, cameras=cameras, policy="edge-shortest",
                            filter={"enabled": True, "feature": "pixel", "threshold": 0.01}, security={"token": secret})
    edges = [e.model_copy(update={"delay_factor": d}) for e, d in zip(config.edges, (1.0, 2.0, 4.0), strict=True)]
    config = config.model_copy(update={"edges": edges})
    summary = run_cluster(config, run_id="full", log_dir=tmp_path / "logs")

    frames = _frames_by_camera(config.database.url, "full")
    expected = {1: set(range(30)), 2: set(range(23)), 3: set(range(30))}
    assert {c: {r.frame for r in rows} for c, rows in frames.items()} == expected
    for rows in frames.values():
        assert all(r.state in STATES for r in rows)
        for r in rows:
            if r.state == "inferred":
                assert r.where and r.t_capture <= r.t_send <= r.t_receive <= r.t_start <= r.t_end <= r.t_done
            elif r.state == "reused":
                assert r.reuses < r.frame
            else:
                assert r.reason
    assert sum(r.state == "inferred" for rows in frames.values() for r in rows) > 0
    assert summary["status"] == "finished" and summary["total"]["recorded"] == 83
    assert summary["total"]["f1"] is not None and 0 < summary["total"]["f1"] <= 1
    by_camera = {row["camera"]: row for row in summary["cameras"]}
    assert by_camera[1]["read"] == 30 and by_camera[1]["inferred"] + by_camera[1]["reused"] + by_camera[1]["dropped"] == 30

    for path in (tmp_path / "logs").iterdir():  # the services got the token, no file holds it
        assert secret not in path.read_text(errors="replace"), path
    with open_store(config.database.url)() as session:
        assert secret not in session.get(RunRow, "full").config
    proc = subprocess.run([sys.executable, "-m", "edgeva.cli", "results", "--db", config.database.url, "--run", "full"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "policy edge-shortest" in proc.stdout and "store-aisle-detection" in proc.stdout
