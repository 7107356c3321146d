"""A partial chunk leaves the camera after ``max_chunk_wait_s`` even when every later frame is
filtered: before the fix it waited for the next sent frame, here the end of the video."""

from __future__ import annotations

from sqlalchemy import select

from edgeva.runtime.camera import CameraAgent
from edgeva.runtime.store import FrameRow, open_store, start_run
from runtime_support import cluster_config
from test_runtime_services import running


def test_a_partial_chunk_is_sent_while_frames_are_filtered(tmp_path, yolox, fastestdet):
    cameras = [{"id": 1, "source": "bottle-detection", "edge": 1, "frames": 60, "fps": 10,
                "filter": {"enabled": True, "feature": "pixel", "threshold": 1.0},  # nothing after frame 0 is sent
                "encoding": {"chunk_frames": 5, "max_chunk_wait_s": 0.3}}]
    config = cluster_config(tmp_path, edges=1, cameras=cameras)
    with running(config, yolox, fastestdet) as (config, _):
        sessions = open_store(config.database.url)
        start_run(sessions, "wait", policy="edge-local", config_json=config.model_dump_json())
        CameraAgent(config, 1, "wait", sessions).run()
    with sessions() as session:
        rows = {r.frame: r for r in session.scalars(select(FrameRow).where(FrameRow.run_id == "wait"))}
    assert rows[0].state == "inferred" and all(rows[i].state == "reused" for i in range(1, 60))
    assert rows[0].t_send < rows[30].t_capture  # sent about 0.3 s in, not after the 6 s video
