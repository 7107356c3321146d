"""Prometheus /metrics: scraped over HTTP while a camera runs against real in-process nodes;
at the end the frame counters add up to the database's counts."""

from __future__ import annotations

import contextlib
import threading
import urllib.request
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from edgeva.runtime import metrics
from edgeva.runtime.camera import CameraAgent
from edgeva.runtime.ops import NodeOps
from edgeva.runtime.store import FrameRow, open_store, start_run
from runtime_support import cluster_config
from store_support import postgres_available, postgres_database
from test_runtime_services import running


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def camera_counts(sample: dict, camera: int) -> Counter:
    out = Counter()
    for (name, labels), value in sample.items():
        labels = dict(labels)
        if name == "edgeva_camera_frames_total" and labels.get("camera") == str(camera):
            out[labels["state"]] += value
    return out


def test_metrics_add_up_to_the_database(tmp_path, yolox, fastestdet):
    cameras = [{"id": 7, "source": "store-aisle-detection", "edge": 1, "frames": 40, "fps": 20,
                "encoding": {"chunk_frames": 4}}]
    with contextlib.ExitStack() as stack:
        # the results go to a fresh PostgreSQL database when the local server runs (else SQLite)
        database = {"url": stack.enter_context(postgres_database()), "flush_s": 0.2} if postgres_available() is None else None
        _run_and_check(tmp_path, cameras, database, yolox, fastestdet)


def _run_and_check(tmp_path, cameras, database, yolox, fastestdet) -> None:
    config = cluster_config(tmp_path, edges=2, cameras=cameras, policy="edge-shortest",
                            filter={"enabled": True, "feature": "pixel", "threshold": 0.01},
                            metrics={"enabled": True}, **({"database": database} if database else {}))
    url = config.database.url
    with running(config, yolox, fastestdet) as (config, nodes):
        node_ops = [NodeOps(config, node).start() for node in nodes]  # each node's own /metrics
        sessions = open_store(url)
        start_run(sessions, "m", policy="edge-shortest", config_json=config.model_dump_json())
        agent = CameraAgent(config, 7, "m", sessions)
        during: list[Counter] = []
        done = threading.Event()
        thread = threading.Thread(target=lambda: (agent.run(), done.set()), daemon=True)
        thread.start()
        while not done.wait(0.3):
            if agent.ops.metrics_port:  # the camera's /metrics, up once it reached its edge
                during.append(camera_counts(scrape(agent.ops.metrics_port), 7))
        thread.join()
        final = scrape(agent.ops.metrics_port)
        edge_final = scrape(node_ops[1].metrics_port)
        for ops in node_ops:
            ops.close()
    with sessions() as session:
        rows = session.scalars(select(FrameRow).where(FrameRow.run_id == "m", FrameRow.camera == 7)).all()
    db = Counter(r.state for r in rows)
    assert len(rows) == 40 and db["inferred"] > 0 and db["reused"] > 0
    # scraped while the camera ran: the totals only grow and never pass the final count
    totals = [sum(c.values()) for c in during]
    assert len(totals) >= 2 and totals == sorted(totals) and totals[-1] <= 40
    assert any(0 < t < 40 for t in totals), totals
    counts = camera_counts(final, 7)
    assert {k: v for k, v in counts.items() if v} == {k: v for k, v in db.items() if v}
    assert final[("edgeva_camera_frames_read_total", (("camera", "7"),))] == 40
    by_where = Counter(r.where for r in rows if r.state == "inferred")
    for where, n in by_where.items():
        assert final[("edgeva_camera_inferred_frames_total", (("camera", "7"), ("where", where)))] == n
    assert final[("edgeva_camera_bytes_sent_total", (("camera", "7"),))] == agent.stats.bytes_sent > 0
    # the nodes answered every sent frame; their inference histograms count what they ran
    answered = sum(v for (name, labels), v in final.items() if name == "edgeva_node_frames_total"
                   and dict(labels)["node"] in ("edge-1", "edge-2"))
    assert answered >= db["inferred"]
    inferences = sum(v for (name, labels), v in final.items() if name == "edgeva_node_inference_seconds_count"
                     and dict(labels)["node"] in ("edge-1", "edge-2", "cloud"))
    assert inferences >= db["inferred"]
    assert edge_final[("edgeva_node_queue_length", (("node", "edge-1"),))] == 0  # idle at the end
    assert edge_final[("edgeva_node_model_version", (("node", "edge-1"),))] == 0


def test_metric_names_are_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    missing = [name for name in metrics.METRIC_NAMES if f"`{name}`" not in doc]
    assert not missing, f"metrics not listed in docs/operations.md: {missing}"
