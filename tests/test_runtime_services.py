"""Real gRPC services in this process, on loopback ports chosen at run time: policies,
region-level cloud assistance, hot-swapped retraining, the token, TLS, bounds on messages
and unreachable nodes."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys
import time

import grpc
import pytest
import torch
from sqlalchemy import select

from conftest import frames_of
from edgeva.runtime.cluster import resolve_ports
from edgeva.runtime.config import SecurityConfig
from edgeva.runtime.rpc import Peer, RemoteError, pb, wait_ready
from edgeva.runtime.store import ModelUpdateRow, open_store
from runtime_support import chunk_request, cluster_config, running


def submit(config, frames, *, node: str = "edge-1", security: SecurityConfig | None = None, first: int = 0) -> pb.ChunkReply:
    peer = Peer(node, config.node(node).address, security or config.security)
    try:
        return peer.call("Ingest", "Submit", chunk_request(frames, first), timeout=60)
    finally:
        peer.close()


@pytest.mark.parametrize(
    "policy,edge_delays,expect",
    [
        ("edge-local", (8.0, 1.0), {"edge-1"}),
        ("edge-shortest", (8.0, 1.0), {"edge-2"}),
        ("shortest-cloud-threshold", (8.0, 8.0), {"cloud"}),
        ("edge-cloud-assisted", (1.0, 1.0), {"edge-1+cloud"}),
    ],
)
def test_policies_place_frames(tmp_path, yolox, fastestdet, policy, edge_delays, expect):
    config = cluster_config(tmp_path, edges=2, policy=policy, retraining={"enabled": False})
    edges = [e.model_copy(update={"delay_factor": d}) for e, d in zip(config.edges, edge_delays, strict=True)]
    config = config.model_copy(update={
        "edges": edges, "policy": config.policy.model_copy(update={"cloud_threshold": 1, "info_interval_s": 0.05})})
    frames = frames_of("store-aisle-detection", 10)
    with running(config, yolox, fastestdet) as (config, _):
        reply = submit(config, frames)
    assert [r.frame for r in reply.results] == list(range(10))
    where = {r.where for r in reply.results}
    assert expect <= where, where
    if policy == "edge-local":
        assert where == {"edge-1"}
    for r in reply.results:
        assert not r.dropped and r.received <= r.started <= r.finished
    if policy in ("edge-shortest", "shortest-cloud-threshold"):
        offloaded = [r for r in reply.results if r.where != "edge-1"]
        assert all(r.crf > 0 and r.scale > 0 for r in offloaded)  # re-encoded by the decision engine
    if policy == "edge-cloud-assisted":
        assisted = [r for r in reply.results if r.where == "edge-1+cloud"]
        assert all(min(r.detections.scores, default=1.0) >= 0.3 for r in assisted)


def test_retraining_round_hot_swaps_the_edge_model(tmp_path, yolox, fastestdet):
    """Every 2nd inferred frame goes to the validation set, the others to the drift
    collector; a round whose weights keep validation F1 (a tiny learning rate) is swapped in."""
    retraining = {"enabled": True, "window": 3, "frames": 2, "epochs": 1, "learning_rate": 1e-9, "max_rounds": 1,
                  "validation_frames": 3, "validation_every": 2}
    config = cluster_config(tmp_path, edges=1, retraining=retraining)
    frames = frames_of("bottle-detection", 12, step=5)
    with running(config, yolox, fastestdet) as (config, nodes):
        edge = nodes[1]
        first = submit(config, frames[:6])
        deadline = time.monotonic() + 120
        while edge.rounds < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        second = submit(config, frames[6:], first=6)  # served by the swapped-in model
    assert edge.rounds == 1 and edge.refused == 0 and edge.worker.version == 1
    assert edge.worker.detector is not fastestdet  # a new model object was swapped in
    assert all(not r.dropped for r in [*first.results, *second.results])
    assert {r.model_version for r in second.results} == {1}
    with open_store(config.database.url)() as session:
        update = session.scalars(select(ModelUpdateRow)).one()
    assert update.node == "edge-1" and update.version == 1 and update.frames == 2 and update.loss_after > 0
    assert update.accepted and update.validation_frames == 3 and update.f1_after >= update.f1_before


def _misclassifying(detector) -> bytes:
    """Real FastestDet weights whose class head is shifted by one class: the boxes stay, the
    labels are wrong (what a bad fine-tuning round can do)."""
    state = {k: v.clone() for k, v in detector.state_dict().items()}
    for key in state:
        if key.startswith(("detect_head.cls_layers.conv5x5.3.", "detect_head.cls_layers.conv5x5.4.")) and state[key].ndim:
            state[key] = state[key].roll(1, dims=0)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_an_update_that_lowers_validation_f1_is_refused_and_recorded(tmp_path, yolox, fastestdet):
    retraining = {"enabled": True, "window": 100, "frames": 2, "validation_frames": 4, "validation_every": 2}
    config = cluster_config(tmp_path, edges=1, retraining=retraining)
    with running(config, yolox, fastestdet) as (config, nodes):
        edge = nodes[1]
        peer = Peer("edge-1", config.edges[0].address, config.security)
        for camera, video in ((1, "store-aisle-detection"), (2, "car-detection")):  # two cameras, two frame sizes
            peer.call("Ingest", "Submit", chunk_request(frames_of(video, 4), camera=camera), timeout=60)
        peer.close()
        assert len(edge.validation) == 4 and len({f.shape for f in edge.validation.frames()}) == 2
        sessions = open_store(config.database.url)
        reply = pb.RetrainReply(weights=_misclassifying(fastestdet), version=1, labelled_objects=5, loss_before=1.0,
                                loss_after=0.5, train_s=1.0)
        assert not edge.consider_update(reply, 2, sessions)
        assert edge.worker.version == 0 and edge.worker.detector is fastestdet  # still serving the old model
        assert edge.consider_update(pb.RetrainReply(weights=edge.worker.weights(), version=1), 2, sessions)  # F1 equal: kept
    with sessions() as session:
        refused, kept = session.scalars(select(ModelUpdateRow).order_by(ModelUpdateRow.version)).all()
    assert not refused.accepted and refused.f1_after < refused.f1_before and refused.validation_frames == 4
    assert kept.accepted and kept.version == 2 and edge.worker.version == 2  # versions are never reused


def test_calls_without_the_token_are_rejected(tmp_path, yolox, fastestdet):
    config = cluster_config(tmp_path, security={"token": "s3cret-token"})
    with running(config, yolox, fastestdet, edges=False) as (config, _):
        address = config.cloud.address
        anonymous, wrong = SecurityConfig(), SecurityConfig(token="guess")
        for security in (anonymous, wrong):
            peer = Peer("cloud", address, security)
            with pytest.raises(RemoteError) as info:
                peer.status()
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(RemoteError, match="UNAUTHENTICATED"):
                peer.call("Ingest", "Submit", chunk_request(frames_of("people-detection", 2)), timeout=30)
            peer.close()
        peer = Peer("cloud", address, config.security)
        assert peer.status().node == "cloud"
        peer.close()


def _self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_with_a_self_signed_certificate(tmp_path, yolox, fastestdet):
    cert, key = _self_signed(tmp_path)
    config = cluster_config(tmp_path, security={"tls_cert": str(cert), "tls_key": str(key), "token": "t0ken"})
    with running(config, yolox, fastestdet, edges=False) as (config, _):
        reply = submit(config, frames_of("store-aisle-detection", 3), node="cloud")
        assert [r.where for r in reply.results] == ["cloud"] * 3 and all(len(r.detections.scores) for r in reply.results)
        plaintext = Peer("cloud", config.cloud.address, SecurityConfig(token="t0ken"))
        with pytest.raises(RemoteError) as info:
            plaintext.status(timeout=2)
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        plaintext.close()


def test_oversized_and_malformed_messages_leave_the_server_running(tmp_path, yolox, fastestdet):
    config = cluster_config(tmp_path, security={"max_message_mb": 0.05})
    frames = frames_of("people-detection", 3)
    with running(config, yolox, fastestdet, edges=False) as (config, _):
        peer = Peer("cloud", config.cloud.address, config.security)
        big = chunk_request(frames)
        big.chunk.packets[0].data += bytes(80_000)
        with pytest.raises(RemoteError) as info:
            peer.call("Ingest", "Submit", big, timeout=30)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED

        garbage = peer.channel.unary_unary("/edgeva.runtime.Ingest/Submit")  # raw bytes, not a protobuf
        with pytest.raises(grpc.RpcError) as raw:
            garbage(b"\xff\xff\xff\xff\x0f not a message", timeout=10)
        assert raw.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)

        for mutate in (lambda r: setattr(r.chunk, "codec", "mpeg9"), lambda r: r.frames.append(99),
                       lambda r: setattr(r.chunk.packets[0], "data", b"\x00\x00\x01\x65" + bytes(300))):
            bad = chunk_request(frames)
            mutate(bad)
            with pytest.raises(RemoteError) as info:
                peer.call("Ingest", "Submit", bad, timeout=30)
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT

        reply = peer.call("Ingest", "Submit", chunk_request(frames), timeout=60)  # still serving
        assert len(reply.results) == 3 and not any(r.dropped for r in reply.results)
        peer.close()


def test_unreachable_node_retries_with_backoff_then_fails_clearly(tmp_path, caplog):
    config = resolve_ports(cluster_config(tmp_path))  # nothing listens on these ports
    peer = Peer("edge-1", config.edges[0].address, config.security)
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    with pytest.raises(RemoteError) as info:
        peer.call_with_retry("Inference", "Status", pb.StatusRequest(), timeout=1, retries=2, backoff_s=0.1)
    assert time.monotonic() - start >= 0.3  # 0.1 + 0.2 s of back-off
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and "edge-1 at 127.0.0.1:" in str(info.value)
    assert "retry 1/2" in caplog.text and "retry 2/2" in caplog.text
    with pytest.raises(RemoteError, match="unreachable after .* attempts"):
        wait_ready(peer, timeout=0.5)
    peer.close()


def test_camera_with_no_reachable_node_exits_with_one_line(tmp_path):
    config = resolve_ports(cluster_config(tmp_path, cameras=[{"id": 1, "source": "people-detection", "edge": 1, "failover": []}]))
    path = tmp_path / "ports.yaml"
    import json

    import yaml

    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    proc = subprocess.run([sys.executable, "-m", "edgeva.cli", "camera", "--config", str(path), "--id", "1",
                           "--connect-timeout", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgeva: error: edge-1 at 127.0.0.1:") and "unreachable" in last
    assert "Traceback" not in proc.stderr
