"""Overload and deadlines on real in-process services: a chunk is admitted or refused as a
whole, work whose deadline passed is skipped, a repeated ``Submit`` joins the work instead
of queueing it again, and a camera whose send path fails still records every frame.

Slow edges are made with ``fps_cap`` (each inference takes at least 1/fps_cap seconds), so
the orderings below hold however loaded the machine is: load only makes the edge slower."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from sqlalchemy import select

from conftest import frames_of
from edgeva.runtime.camera import CameraAgent
from edgeva.runtime.rpc import Peer, RemoteError
from edgeva.runtime.store import CameraRow, FrameRow, open_store, start_run
from runtime_support import chunk_request, cluster_config, running, wait_for

pytestmark = pytest.mark.timeout(300)


def _slow_edge(tmp_path, *, queue_size: int, fps_cap: float, **sections):
    config = cluster_config(tmp_path, edges=1, **sections)
    edge = config.edges[0].model_copy(update={"queue_size": queue_size, "fps_cap": fps_cap})
    return config.model_copy(update={"edges": [edge]})


def test_a_chunk_is_admitted_or_refused_as_a_whole(tmp_path, yolox, fastestdet):
    frames = frames_of("store-aisle-detection", 4)
    with running(_slow_edge(tmp_path, queue_size=4, fps_cap=0.5), yolox, fastestdet) as (config, nodes):
        edge = nodes[1]
        peer = Peer("edge-1", config.edges[0].address, config.security)
        with pytest.raises(RemoteError, match="exceeds its queue of 4") as info:  # can never fit
            peer.call("Ingest", "Submit", chunk_request(frames_of("store-aisle-detection", 5)), timeout=30)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and len(edge.queue) == 0
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(peer.call, "Ingest", "Submit", chunk_request(frames[:2]), timeout=60)
            wait_for(lambda: edge.admission.held == 2)  # 2 s per frame: held for about 4 s
            with pytest.raises(RemoteError, match="overloaded") as info:
                peer.call("Ingest", "Submit", chunk_request(frames, first=10), timeout=60)
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert len(edge.queue) <= 2  # nothing of the refused chunk was queued
            reply = first.result()
        peer.close()
    assert [r.where for r in reply.results] == ["edge-1", "edge-1"]
    assert edge.queue.served == 2 and edge.admission.held == 0 and edge.admission.refused == 2


def test_work_past_its_deadline_is_skipped_and_a_repeat_joins_the_rest(tmp_path, yolox, fastestdet):
    frames = frames_of("store-aisle-detection", 6)
    with running(_slow_edge(tmp_path, queue_size=8, fps_cap=1.0), yolox, fastestdet) as (config, nodes):
        edge = nodes[1]
        peer = Peer("edge-1", config.edges[0].address, config.security)
        request = chunk_request(frames)
        first = peer.call("Ingest", "Submit", request, timeout=2.5)  # answered just before its deadline
        late = [r for r in first.results if r.dropped]
        assert len(late) >= 3 and all("no answer before the call's deadline" in r.dropped for r in late)
        wait_for(lambda: edge.admission.held == 0)  # the frames not started are skipped, not inferred
        served, expired = edge.queue.served, edge.queue.expired
        assert served + expired == 6 and 3 <= expired <= len(late), (served, expired, len(late))
        repeat = peer.call("Ingest", "Submit", request, timeout=60)  # e.g. the reply was lost
        peer.close()
    assert all(r.where == "edge-1" and not r.dropped for r in repeat.results)
    assert edge.queue.served == 6  # frames inferred before the deadline were not inferred again
    assert edge.ledger.joined == served


def test_a_repeated_submit_joins_the_running_work(tmp_path, yolox, fastestdet):
    frames = frames_of("store-aisle-detection", 3)
    with running(_slow_edge(tmp_path, queue_size=8, fps_cap=2.0), yolox, fastestdet) as (config, nodes):
        edge = nodes[1]
        peer = Peer("edge-1", config.edges[0].address, config.security)
        request = chunk_request(frames)
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(peer.call, "Ingest", "Submit", request, timeout=60)
            wait_for(lambda: edge.admission.held == 3)
            second = pool.submit(peer.call, "Ingest", "Submit", request, timeout=60)  # a retry after a lost reply
            replies = [first.result(), second.result()]
        third = peer.call("Ingest", "Submit", request, timeout=60)  # after the answer: from the ledger
        peer.close()
    assert edge.queue.served == 3 and edge.ledger.joined == 6
    started = [[r.started for r in reply.results] for reply in [*replies, third]]
    assert started[0] == started[1] == started[2]  # the same inferences, answered three times


class _FailingQuality:
    """A quality policy that fails on one chunk with an unexpected error (a bug)."""

    def __init__(self, failing_first_frame: int):
        self.failing = failing_first_frame

    def quality(self, frames, first_frame):
        if first_frame == self.failing:
            raise RuntimeError("selector crashed")
        return 30


def test_a_failure_in_the_send_path_records_the_chunk_and_frees_its_slot(tmp_path, yolox, fastestdet):
    cameras = [{"id": 1, "source": "people-detection", "edge": 1, "fps": 0, "max_inflight": 1, "backlog": "wait",
                "filter": {"enabled": False}, "encoding": {"chunk_frames": 5}}]
    config = cluster_config(tmp_path, edges=1, cameras=cameras)
    with running(config, yolox, fastestdet) as (config, _):
        sessions = open_store(config.database.url)
        start_run(sessions, "send-path", policy="edge-local", config_json="{}")
        agent = CameraAgent(config, 1, "send-path", sessions)
        agent.scheme = _FailingQuality(failing_first_frame=5)
        result = {}
        thread = threading.Thread(target=lambda: result.update(stats=agent.run()), daemon=True)
        thread.start()
        thread.join(180)  # a leaked in-flight slot would block the next chunk forever
        assert not thread.is_alive(), "the camera hung: its only in-flight slot leaked"
    with sessions() as session:
        rows = {r.frame: r for r in session.scalars(select(FrameRow).where(FrameRow.run_id == "send-path"))}
        camera = session.get(CameraRow, ("send-path", 1))
    assert sorted(rows) == list(range(23)) and camera.frames_read == 23 and camera.status == "finished"
    failed = {f for f, r in rows.items() if r.state == "dropped"}
    assert failed == set(range(5, 10)) and all("RuntimeError: selector crashed" in rows[f].reason for f in failed)
    assert all(rows[f].state == "inferred" for f in rows if f not in failed)
