"""A cluster spread over network namespaces (one per host: cloud, two edges, a camera) joined
by a bridge, each node listening on its own address, with TLS and a shared token: nothing
goes over loopback. Needs root and ``ip netns``; where the namespaces cannot be created, the
skip reason says why."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from edgeva.runtime.config import SecurityConfig, load_config
from edgeva.runtime.rpc import Peer, RemoteError, wait_ready
from edgeva.runtime.store import FrameRow, open_store

HOSTS = ("cloud", "edge1", "edge2", "cam")
PORT = 7443  # every host has its own port space: the same port on each address


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _why_no_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"edgeva-probe-{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@contextlib.contextmanager
def namespaces():
    """``{host: address}``: one namespace per host on a private /24, all on one bridge."""
    reason = _why_no_namespaces()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    subnet = f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(250) + 1}"
    bridge = f"eb{tag}"
    made: list[str] = []
    try:
        for args in (["link", "add", bridge, "type", "bridge"], ["addr", "add", f"{subnet}.254/24", "dev", bridge],
                     ["link", "set", bridge, "up"]):
            subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)
        addresses = {}
        for i, host in enumerate(HOSTS, start=1):
            ns, outside, inside = f"edgeva-{tag}-{host}", f"e{tag}{i}", f"i{tag}{i}"
            for args in (["netns", "add", ns], ["link", "add", outside, "type", "veth", "peer", "name", inside],
                         ["link", "set", inside, "netns", ns], ["link", "set", outside, "master", bridge],
                         ["link", "set", outside, "up"],
                         ["-n", ns, "addr", "add", f"{subnet}.{i}/24", "dev", inside],
                         ["-n", ns, "link", "set", inside, "up"], ["-n", ns, "link", "set", "lo", "up"]):
                subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)
                if args[:2] == ["netns", "add"]:
                    made.append(ns)
            addresses[host] = (ns, f"{subnet}.{i}")
        yield addresses
    finally:
        for ns in made:
            _ip("netns", "del", ns)  # removes the veth pairs with it
        _ip("link", "del", bridge)


def _certificate(folder: Path, addresses: list[str]) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the cluster's certificate")
    cert, key = folder / "cluster.pem", folder / "cluster.key"
    san = ",".join(f"IP:{a}" for a in addresses)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=edgeva-cluster", "-addext", f"subjectAltName={san}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_a_cluster_across_network_namespaces_with_tls_and_a_token(tmp_path):
    with namespaces() as hosts:
        cert, key = _certificate(tmp_path, [address for _, address in hosts.values()])
        token = secrets.token_urlsafe(16)
        env = {**os.environ, "EDGEVA_TOKEN": token}
        data = {
            "database": {"url": str(tmp_path / "results.db"), "flush_s": 0.2},
            "security": {"token_env": "EDGEVA_TOKEN", "tls_cert": str(cert), "tls_key": str(key)},
            "policy": {"name": "edge-shortest"},
            "filter": {"enabled": False},
            "cloud": {"host": hosts["cloud"][1], "port": PORT, "link": {"rtt_ms": 0}},
            "edges": [{"id": 1, "host": hosts["edge1"][1], "port": PORT}, {"id": 2, "host": hosts["edge2"][1], "port": PORT}],
            "cameras": [{"id": 1, "source": "store-aisle-detection", "edge": 1, "frames": 20, "fps": 0}],
        }
        path = tmp_path / "cluster.yaml"
        path.write_text(yaml.safe_dump(data))
        os.environ["EDGEVA_TOKEN"] = token  # for load_config's check of token_env, in this process
        try:
            config = load_config(path)
        finally:
            del os.environ["EDGEVA_TOKEN"]
        common = ["--config", str(path), "--run", "netns"]
        logs = {h: (tmp_path / f"{h}.log").open("w") for h in HOSTS}
        procs = {}

        def spawn(host: str, *args: str) -> subprocess.Popen:
            ns = hosts[host][0]
            return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "edgeva.cli", *args, *common],
                                    env=env, stdout=logs[host], stderr=subprocess.STDOUT, start_new_session=True)

        try:
            procs["cloud"] = spawn("cloud", "cloud")
            procs["edge1"] = spawn("edge1", "edge", "--id", "1")
            procs["edge2"] = spawn("edge2", "edge", "--id", "2")
            security = SecurityConfig(token=token, tls_cert=cert, tls_key=key)
            for name in ("cloud", "edge-1", "edge-2"):  # reached from the bridge's address, through TLS
                peer = Peer(name, config.node(name).address, security)
                try:
                    wait_ready(peer, timeout=240)
                finally:
                    peer.close()
            anonymous = Peer("edge-1", config.node("edge-1").address, SecurityConfig(tls_cert=cert, tls_key=key))
            with pytest.raises(RemoteError, match="UNAUTHENTICATED"):
                anonymous.status()
            anonymous.close()
            camera = spawn("cam", "camera", "--id", "1")
            assert camera.wait(300) == 0, (tmp_path / "cam.log").read_text()[-2000:]
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for fh in logs.values():
                fh.close()
    with open_store(config.database.url)() as session:
        rows = session.scalars(select(FrameRow).where(FrameRow.run_id == "netns").order_by(FrameRow.frame)).all()
    assert [r.frame for r in rows] == list(range(20))
    assert all(r.state == "inferred" for r in rows), [r.reason for r in rows if r.state != "inferred"]
    assert {r.where for r in rows} <= {"edge-1", "edge-2", "cloud"} and any(r.where == "edge-1" for r in rows)
    edge_log = (tmp_path / "edge1.log").read_text()
    assert f"serving on {hosts['edge1'][1]}:{PORT}" in edge_log  # bound to its own address, not loopback
