"""The dashboard's app on a finished run, opened read-only: counts, live-view JPEG with the
stored boxes, series, recent frames; and one-line errors for a missing or foreign database."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from edgeva.dashboard.server import create_app
from edgeva.errors import ConfigError
from edgeva.models import Detections
from edgeva.runtime.store import (
    FrameRecord,
    ResultWriter,
    finish_run,
    open_store,
    record_camera,
    record_model_update,
    start_run,
)
from edgeva.store import connect_readonly
from runtime_support import cluster_config
from store_support import run_cli


def _finished_run(tmp_path) -> str:
    """A stored run of 12 frames of store-aisle: 8 inferred (2 boxes each), 3 reused, 1 dropped."""
    config = cluster_config(tmp_path, edges=2, cameras=[{"id": 1, "source": "store-aisle-detection", "edge": 1}])
    url = config.database.url
    sessions = open_store(url)
    start_run(sessions, "done", policy="edge-shortest", config_json=config.model_dump_json())
    record_camera(sessions, "done", 1, source="store-aisle-detection", start=0, step=1, width=None, height=None,
                  frames_read=12, started=100.0, finished=None, status="running")
    writer = ResultWriter(sessions, "done", batch_size=4, flush_s=0.1)
    boxes = Detections(np.array([[10, 20, 110, 220], [200, 30, 260, 200]], np.float32), np.array([0.9, 0.7], np.float32),
                       np.array([0, 39], np.int64))
    for i in range(12):
        t = 100.0 + i / 10
        if i in (3, 4, 9):
            writer.put(FrameRecord(1, i, "reused", t, t + 0.01, reuses=i - 1))
        elif i == 11:
            writer.put(FrameRecord(1, i, "dropped", t, t + 0.5, reason="backlog: 4 chunks in flight"))
        else:
            where = "edge-1" if i < 6 else "edge-2"
            writer.put(FrameRecord(1, i, "inferred", t, t + 0.3, where=where, detections=boxes, model_version=0,
                                   nbytes=1000, t_send=t + 0.05, t_receive=t + 0.1, t_start=t + 0.1, t_end=t + 0.2))
    writer.close()
    record_model_update(sessions, "done", "edge-1", version=1, frames=8, objects=11, epochs=20, loss_before=0.8,
                        loss_after=0.2, train_s=12.0, swapped=101.0)
    record_camera(sessions, "done", 1, finished=101.5, status="finished")
    finish_run(sessions, "done", "finished")
    return url


def _digest(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_finished_run_read_only(tmp_path):
    url = _finished_run(tmp_path)
    before = _digest(url)
    with TestClient(create_app(url)) as client:
        stats = client.get("/api/stats").json()
        cam = stats["cameras"]["camera-1"]
        assert (cam["frames_read"], cam["inferred"], cam["reused"], cam["dropped"]) == (12, 8, 3, 1)
        assert cam["where"] == {"edge-1": 4, "edge-2": 4} and cam["last_inferred_frame"] == 10 and cam["boxes"] == 2
        assert stats["run"]["status"] == "finished" and stats["service"]["read_only"]
        assert stats["nodes"]["edge-1"]["model_version"] == 1 and stats["nodes"]["edge-1"]["inferred"] == 4
        assert stats["nodes"]["edge-1"]["retraining"][0]["loss_after"] == 0.2
        assert set(stats["nodes"]) == {"edge-1", "edge-2", "cloud"}
        picture = client.get("/api/cameras/1/latest.jpg")
        assert picture.headers["X-Edgeva-Frame"] == "10" and picture.headers["X-Edgeva-Boxes"] == "2"
        image = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (270, 480)
        series = client.get("/api/cameras/1/series", params={"bucket": 0.5}).json()
        assert sum(series["frames"]) == 12 and series["t"][0] == 0.0
        assert series["kbps"][0] == pytest.approx(3 * 1000 * 8 / 1000 / 0.5)  # frames 0-4: 3 sent, 1000 B each
        frames = client.get("/api/cameras/1/frames", params={"last": 5}).json()
        assert [f["frame"] for f in frames] == [7, 8, 9, 10, 11] and frames[-1]["state"] == "dropped"
        assert client.get("/").status_code == 200 and "app.js" in client.get("/").text
        assert client.get("/api/stats", params={"run": "nope"}).status_code == 404
        assert client.get("/api/runs").json()[0]["id"] == "done"
    assert _digest(url) == before  # nothing written
    _, sessions = connect_readonly(url, table="runtime_runs")
    with sessions() as session, pytest.raises(OperationalError, match="readonly"):
        session.execute(text("DELETE FROM runtime_frames"))
        session.commit()


def test_bad_databases_are_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="no such results database"):
        create_app(str(tmp_path / "missing.db"))
    (tmp_path / "other.db").write_bytes(b"")
    with pytest.raises(ConfigError, match="not an edgeva results database"):
        create_app(str(tmp_path / "other.db"))
    status, err = run_cli(monkeypatch, capsys, "dashboard", "--db", str(tmp_path / "missing.db"))
    assert status == 2 and err.strip().count("\n") == 0
    assert err.startswith("edgeva: error: ") and "missing.db: no such results database" in err


def test_a_dashboard_that_cannot_start_leaves_the_cloud_serving(tmp_path, caplog):
    import logging
    import socket
    from types import SimpleNamespace

    from edgeva.runtime.ops import NodeOps

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = cluster_config(tmp_path, dashboard={"enabled": True, "port": port})
        cloud = SimpleNamespace(name="cloud", node=config.cloud, queue=[], worker=SimpleNamespace(version=0))
        with caplog.at_level(logging.ERROR, logger="edgeva.runtime.ops"):
            ops = NodeOps(config, cloud).start()  # no exception: the node goes on serving
    assert ops.dashboard is None
    assert [r.getMessage() for r in caplog.records] == [
        f"cloud: dashboard not started: dashboard: cannot listen on 127.0.0.1:{port} (Address already in use)"]
    ops.close()
