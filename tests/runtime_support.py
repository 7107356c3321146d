"""Helpers shared by the runtime tests: small cluster configs on loopback, nodes served in
the test's process, chunk requests, and certificates made with openssl."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeva.runtime.cloud import CloudNode
from edgeva.runtime.cluster import resolve_ports
from edgeva.runtime.config import ClusterConfig, load_config
from edgeva.runtime.edge import EdgeNode
from edgeva.runtime.rpc import pb
from edgeva.runtime.wire import chunk_to_pb
from edgeva.runtime.worker import DetectorWorker
from edgeva.video import encode_chunk


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


@contextlib.contextmanager
def running(config, yolox, fastestdet, *, edges: bool = True):
    """Cloud and edges of ``config`` served here; always stopped."""
    config = resolve_ports(config)
    nodes = [CloudNode(config, DetectorWorker("yolox-nano", detector=yolox))]
    if edges:
        nodes += [EdgeNode(config, e.id, "test", DetectorWorker("fastestdet", detector=fastestdet)) for e in config.edges]
    try:
        for node in nodes:
            node.start()
        yield config, nodes
    finally:
        for node in nodes:
            node.stop(grace=0.5)


def chunk_request(frames: list[np.ndarray], first: int = 0, *, camera: int = 1) -> pb.ChunkRequest:
    chunk = encode_chunk(frames, 28, first_frame=first)
    indices = list(range(first, first + len(frames)))
    return pb.ChunkRequest(run="test", camera=camera, frames=indices, captured=[time.time()] * len(frames),
                           sent=time.time(), chunk=chunk_to_pb(chunk))


def wait_for(condition, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds (a test waits for states, never for a fixed time)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate authority: (certificate, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make certificates (make sysdeps)")
    cert, key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
             "-subj", f"/CN={name} test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_cert(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca``, usable by servers and clients: (certificate, key)."""
    cert, key, csr, ext = (folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.ext")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return cert, key
