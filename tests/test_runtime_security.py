"""Security of the runtime: mutual TLS between nodes (a client certificate from another CA
is refused), the shared token read from an environment variable, no plain-text listening on
a non-loopback address unless allowed, secrets kept out of files and the database, and the
bounds a node puts on ``Retrain``."""

from __future__ import annotations

import io
import json
import uuid

import grpc
import pytest
import torch
import yaml

from conftest import frames_of
from edgeva.errors import ConfigError
from edgeva.runtime.cluster import _child_config
from edgeva.runtime.config import NodeConfig, SecurityConfig, is_loopback, load_config
from edgeva.runtime.rpc import Peer, RemoteError, make_server, pb
from edgeva.runtime.wire import encode_frame
from runtime_support import chunk_request, cluster_config, make_ca, make_cert, running


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(tmp_path, yolox, fastestdet, monkeypatch):
    ca = make_ca(tmp_path, "cluster")
    node_cert, node_key = make_cert(tmp_path, "node", ca)
    stranger_cert, stranger_key = make_cert(tmp_path, "stranger", make_ca(tmp_path, "other"))
    variable = f"EDGEVA_TEST_TOKEN_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(variable, "t0ken-from-the-environment")
    security = {"tls_cert": str(node_cert), "tls_key": str(node_key), "tls_ca": str(ca[0]), "mutual_tls": True,
                "token_env": variable}
    config = cluster_config(tmp_path, security=security)
    with running(config, yolox, fastestdet, edges=False) as (config, _):
        address = config.cloud.address
        member = Peer("cloud", address, config.security)
        assert member.status().node == "cloud"  # the token_env route with the cluster's certificate
        reply = member.call("Ingest", "Submit", chunk_request(frames_of("people-detection", 2)), timeout=60)
        assert [r.where for r in reply.results] == ["cloud", "cloud"]
        member.close()
        refused = {
            "stranger": config.security.model_copy(update={"tls_cert": stranger_cert, "tls_key": stranger_key}),
            "no client certificate": config.security.model_copy(update={"mutual_tls": False}),
        }
        for name, security in refused.items():
            peer = Peer("cloud", address, security)
            with pytest.raises(RemoteError) as info:
                peer.status(timeout=5)
            assert info.value.code == grpc.StatusCode.UNAVAILABLE, name  # the TLS handshake fails
            peer.close()
        monkeypatch.setenv(variable, "a-guess")
        guessing = Peer("cloud", address, config.security)  # right certificate, wrong token
        with pytest.raises(RemoteError) as info:
            guessing.status(timeout=5)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        guessing.close()


def test_mutual_tls_needs_its_ca(tmp_path):
    with pytest.raises(ConfigError, match="mutual_tls needs tls_cert, tls_key and tls_ca"):
        cluster_config(tmp_path, security={"mutual_tls": True})


def _listening_on(tmp_path, address: str, **security):
    data = json.loads(cluster_config(tmp_path).model_dump_json())
    data["edges"][0]["listen"] = address
    data["security"].update(security)
    path = tmp_path / "public.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_no_plain_text_on_a_non_loopback_address_unless_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"edges\[0\]\.listen: 0\.0\.0\.0 is not a loopback address"):
        _listening_on(tmp_path, "0.0.0.0")
    assert _listening_on(tmp_path, "0.0.0.0", allow_insecure=True).edges[0].listen == "0.0.0.0"
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0:0 without TLS"):  # the server checks too
        make_server(NodeConfig(model="fastestdet", listen="0.0.0.0"), SecurityConfig(), lambda server: None)
    for host in ("127.0.0.1", "localhost"):
        server, port = make_server(NodeConfig(model="fastestdet", listen=host), SecurityConfig(), lambda server: None)
        assert port > 0
        server.stop(0)
    assert is_loopback("::1") and is_loopback("127.0.0.2") and not is_loopback("10.0.0.1") and not is_loopback("::")


def test_an_inline_token_and_a_database_password_are_never_written(tmp_path):
    secret, password = "inline-s3cret-token", "db-pa55word"
    config = cluster_config(tmp_path, security={"token": secret})
    config = config.model_copy(update={"database": config.database.model_copy(
        update={"url": f"postgresql://edgeva:{password}@127.0.0.1:5432/results"})})
    assert config.security.shared_token() == secret
    for text in (repr(config), str(config.security), config.model_dump_json(), config.redacted_json()):
        assert secret not in text
    assert password not in config.redacted_json() and "***" in config.redacted_json()
    text, env = _child_config(config)  # what `edgeva cluster` writes beside the logs for its services
    assert secret not in text and "token_env: EDGEVA_CLUSTER_TOKEN" in text
    assert env["EDGEVA_CLUSTER_TOKEN"] == secret


def test_retrain_bounds_epochs_learning_rate_and_frames(tmp_path, yolox, fastestdet):
    with pytest.raises(ConfigError, match=r"retraining\.epochs: Input should be less than or equal to 50"):
        cluster_config(tmp_path, retraining={"epochs": 51})
    with pytest.raises(ConfigError, match=r"retraining\.learning_rate"):
        cluster_config(tmp_path, retraining={"learning_rate": 0.5})
    frame = encode_frame(frames_of("people-detection", 1)[0])
    with running(cluster_config(tmp_path), yolox, fastestdet, edges=False) as (config, _):
        peer = Peer("cloud", config.cloud.address, config.security)
        weights = _weights(fastestdet)
        cases = [
            (dict(epochs=10**6, learning_rate=1e-4), "epochs=1000000 outside 1..50"),
            (dict(epochs=1, learning_rate=10.0), "learning_rate=10.0 outside"),
            (dict(epochs=1, learning_rate=float("nan")), "learning_rate=nan outside"),
        ]
        for fields, message in cases:
            request = pb.RetrainRequest(origin="edge-9", frames=[frame], weights=weights, **fields)
            with pytest.raises(RemoteError, match=message) as info:
                peer.call("Cloud", "Retrain", request, timeout=60)
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "edge-9" in str(info.value)
        with pytest.raises(RemoteError, match="0 frames outside 1..256"):
            peer.call("Cloud", "Retrain", pb.RetrainRequest(origin="edge-9", weights=weights, epochs=1), timeout=60)
        peer.close()


def _weights(detector) -> bytes:
    buffer = io.BytesIO()
    torch.save(detector.state_dict(), buffer)
    return buffer.getvalue()
