"""The balancer in a real cluster (processes on loopback): load moves off a slow edge, and
every frame a camera reads is still recorded once, including chunks in flight at the move."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from edgeva.runtime.cluster import run_cluster
from edgeva.runtime.store import STATES, FrameRow, open_store
from runtime_support import cluster_config


@pytest.mark.parametrize("split", [False, True], ids=["whole-cameras", "split"])
def test_load_moves_off_the_slow_edge_and_every_frame_is_recorded(tmp_path, split):
    cameras = [
        {"id": 1, "source": "store-aisle-detection", "edge": 1, "frames": 60, "fps": 15, "encoding": {"chunk_frames": 3}},
        {"id": 2, "source": "people-detection", "edge": 1, "frames": 20, "fps": 15, "encoding": {"chunk_frames": 3}},
    ]
    config = cluster_config(tmp_path, edges=2, cameras=cameras, policy="edge-local",
                            filter={"enabled": True, "feature": "pixel", "threshold": 0.005},
                            balancer={"name": "neuromesh", "interval_s": 0.3, "min_gain": 0.01, "split": split})
    edges = [e.model_copy(update={"delay_factor": d}) for e, d in zip(config.edges, (8.0, 1.0), strict=True)]
    config = config.model_copy(update={"edges": edges})
    summary = run_cluster(config, run_id="moved", log_dir=tmp_path / "logs", evaluate=False)

    with open_store(config.database.url)() as session:
        rows = session.scalars(select(FrameRow).where(FrameRow.run_id == "moved")).all()
    by_camera = {1: sorted(r.frame for r in rows if r.camera == 1), 2: sorted(r.frame for r in rows if r.camera == 2)}
    assert by_camera == {1: list(range(60)), 2: list(range(20))}  # every frame read, once
    assert all(r.state in STATES for r in rows)
    assert summary["total"]["recorded"] == 80
    inferred = [r for r in rows if r.state == "inferred"]
    moved = [r for r in inferred if r.where.startswith("edge-2")]
    assert moved, "no camera's chunks went to the idle edge"
    first_move = min(r.t_send for r in moved)
    in_flight = [r for r in inferred if r.where.startswith("edge-1") and r.t_send < first_move < r.t_done]
    assert in_flight, "no chunk was in flight on the slow edge when load moved"


def test_a_split_sends_its_share_of_chunks_to_the_other_edge(tmp_path):
    """``retarget(edge, share)``: a smooth round robin sends exactly that share of the next
    chunks there and the rest to the current edge; share 1 moves the camera; a failing split
    edge is dropped from the split (see ``_deliver``)."""
    from edgeva.runtime.camera import CameraAgent

    cameras = [{"id": 1, "source": "people-detection", "edge": 1, "frames": 5}]
    config = cluster_config(tmp_path, edges=2, cameras=cameras, balancer={"name": "neuromesh", "split": True})
    agent = CameraAgent(config, 1, "split", sessions=None)
    agent.retarget("edge-2", 0.25)
    picks = [agent.route[agent._pick()] for _ in range(8)]
    assert picks.count("edge-2") == 2 and picks[3] == picks[7] == "edge-2" and agent.current_node() == "edge-1"
    assert agent.split() == ("edge-2", 0.25)
    agent.retarget("edge-2", 0.0)
    assert agent.split() is None and {agent.route[agent._pick()] for _ in range(4)} == {"edge-1"}
    agent.retarget("edge-2", 1.0)
    assert agent.current_node() == "edge-2" and agent.split() is None
