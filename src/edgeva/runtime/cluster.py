"""Run services: one in this process (``edgeva cloud|edge|camera``), or the whole topology
as local processes on loopback (``edgeva cluster``).

``run_cluster`` gives every node with ``port: 0`` a free loopback port, writes the resolved
config beside the logs, starts the cloud and the edges, waits until each answers, starts the
cameras, waits for them to read their videos to the end, stops the nodes gracefully
(SIGTERM, then SIGKILL after a grace period), computes the golden model's reference on the
original frames, and returns the run's summary. Ctrl-C stops the cameras first (frames
already read are still answered and recorded), then the nodes.

Secrets never reach a file or the database: the config written beside the logs and the
copy stored with the run show an inline ``security.token`` (and a database password) as
asterisks; the services started here get the token through an environment variable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgeva.errors import EdgevaError
from edgeva.runtime.config import CLOUD, ClusterConfig
from edgeva.runtime.ops import NodeOps, resolve_ops_ports
from edgeva.runtime.rpc import Peer, RemoteError, wait_ready
from edgeva.runtime.store import CameraRow, finish_run, open_store, start_run, write_references
from edgeva.runtime.summary import summarize
from edgeva.video.source import is_network

__all__ = ["serve_node", "run_camera", "run_cluster", "resolve_ports", "evaluate_run", "reference_frames", "new_run_id",
           "TOKEN_ENV"]

log = logging.getLogger(__name__)

TOKEN_ENV = "EDGEVA_CLUSTER_TOKEN"  # how `edgeva cluster` hands an inline token to the services it starts


def new_run_id(config_name: str) -> str:
    return f"{Path(config_name).stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _on_signals(handler: Callable[[], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: handler())


def serve_node(config: ClusterConfig, role: str, *, edge_id: int | None = None, run_id: str) -> None:
    """Serve the cloud (``role="cloud"``) or one edge until SIGINT/SIGTERM."""
    import torch

    node_config = config.cloud if role == CLOUD else config.edge(edge_id)
    torch.set_num_threads(node_config.threads)
    if role == CLOUD:
        from edgeva.runtime.cloud import build_cloud

        node = build_cloud(config)
    else:
        from edgeva.runtime.edge import build_edge

        node = build_edge(config, edge_id, run_id)
    _on_signals(lambda: threading.Thread(target=node.stop, daemon=True).start())
    node.start()
    ops = NodeOps(config, node).start()  # /metrics, MQTT availability, the cloud's dashboard
    node.wait()
    ops.close()


def run_camera(config: ClusterConfig, camera_id: int, *, run_id: str, connect_timeout: float = 10.0):
    """Run one camera to the end of its video; SIGINT/SIGTERM stop reading early."""
    from edgeva.runtime.camera import CameraAgent

    sessions = open_store(config.database.url)
    start_run(sessions, run_id, policy=config.policy.name, config_json=config.redacted_json())
    stop = threading.Event()
    _on_signals(stop.set)
    return CameraAgent(config, camera_id, run_id, sessions).run(stop, connect_timeout=connect_timeout)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def resolve_ports(config: ClusterConfig) -> ClusterConfig:
    """The config with a free port for every node configured with ``port: 0``."""
    cloud = config.cloud if config.cloud.port else config.cloud.model_copy(update={"port": _free_port(config.cloud.host)})
    edges = [e if e.port else e.model_copy(update={"port": _free_port(e.host)}) for e in config.edges]
    return resolve_ops_ports(config.model_copy(update={"cloud": cloud, "edges": edges}), _free_port)


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def _spawn(name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> _Process:
    log_path = log_dir / f"{name}.log"
    with log_path.open("w") as fh:
        # A session of its own: Ctrl-C reaches only the launcher, which stops the children in order.
        proc = subprocess.Popen([sys.executable, "-m", "edgeva.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    return _Process(name, proc, log_path)


def _child_config(config: ClusterConfig) -> tuple[str, dict[str, str]]:
    """The config the services read (YAML, an inline token moved to an environment
    variable) and the environment that carries it."""
    env = dict(os.environ)
    security = config.security
    if security.token is not None:
        env[TOKEN_ENV] = security.token.get_secret_value()
        security = security.model_copy(update={"token": None, "token_env": TOKEN_ENV})
    data = json.loads(config.model_copy(update={"security": security}).model_dump_json())
    return yaml.safe_dump(data, sort_keys=False), env


def _stop(processes: list[_Process], grace: float = 10.0) -> None:
    for p in processes:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", p.name, grace)
            p.proc.kill()
            p.proc.wait()


def reference_frames(camera: CameraRow):
    """The original frames a camera read (same source, start, step, size and count)."""
    from edgeva import assets
    from edgeva.video import open_video

    size = (camera.width, camera.height) if camera.width else None
    return open_video(assets.resolve_video(camera.source), start=camera.start, step=camera.step, size=size,
                      limit=camera.frames_read)


def evaluate_run(sessions, run_id: str, model: str, *, threads: int = 1, device: str = "cpu", progress: Callable | None = None,
                 cache: dict | None = None) -> None:
    """Store the golden model's detections on the original frames of every camera of a run.

    ``cache`` (keyed by source, start, step, size and frame count) lets several runs over the
    same videos share one inference pass.
    """
    import torch
    from sqlalchemy import select

    from edgeva.models import create_detector

    torch.set_num_threads(threads)  # more threads than free cores slows torch down several-fold
    detector = None
    with sessions() as session:
        cameras = session.scalars(select(CameraRow).where(CameraRow.run_id == run_id)).all()
    for cam in cameras:
        if is_network(cam.source):  # a live stream cannot be read again for a reference
            log.warning("camera %d reads a live stream (%s): no golden reference, no F1", cam.camera, cam.source)
            continue
        key = (cam.source, cam.start, cam.step, cam.width, cam.height, cam.frames_read)
        if cache is None or key not in cache:
            detector = detector or create_detector(model, device=device)
            frames = reference_frames(cam)
            items = progress(frames, f"golden {model} on camera {cam.camera}", cam.frames_read) if progress else frames
            refs = {f.index: detector.detect([f.image])[0] for f in items}  # one at a time: sources may be long
            if cache is not None:
                cache[key] = refs
        write_references(sessions, run_id, cam.camera, cache[key] if cache is not None else refs)


def _wait_nodes(config: ClusterConfig, nodes: list[_Process], timeout: float) -> None:
    for p in nodes:
        node = config.node(p.name)
        peer = Peer(p.name, node.address, config.security)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if p.proc.poll() is not None:
                    raise EdgevaError(f"{p.name} exited with status {p.proc.returncode} while starting: {p.tail()}")
                try:
                    wait_ready(peer, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
                    break
                except RemoteError:
                    if time.monotonic() > deadline:
                        raise EdgevaError(f"{p.name} at {node.address} did not answer within {timeout:.0f} s: {p.tail()}") from None
        finally:
            peer.close()


def run_cluster(config: ClusterConfig, *, run_id: str, log_dir: Path, evaluate: bool = True,
                progress: Callable | None = None, reference_cache: dict | None = None,
                on_started: Callable[[dict[str, _Process]], None] | None = None, start_timeout: float = 180.0) -> dict:
    """Run the topology to the end of every camera's video; returns :func:`summarize` of the run.

    Args:
        config: the cluster config.
        run_id: id the run is stored under.
        log_dir: where each service's log and the resolved config are written.
        evaluate: compute the golden model's references on the original frames (for F1).
        progress: ``progress(iterable, description, total)`` wrapper for long loops.
        reference_cache: shared by runs over the same videos (see :func:`evaluate_run`).
        on_started: called with ``{name: process}`` once every service runs (tests kill one).
        start_timeout: seconds each node may take to answer.
    """
    config = resolve_ports(config).model_copy(update={"run": run_id})
    devices = {name: config.device(name) for name in [CLOUD, *(e.name for e in config.edges)]}  # one line, before any start
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "config.yaml"
    text, env = _child_config(config)
    path.write_text(text)
    sessions = open_store(config.database.url)  # creates the tables before any service writes
    start_run(sessions, run_id, policy=config.policy.name, config_json=config.redacted_json())
    common = ["--config", str(path), "--run", run_id]
    nodes = [_spawn(CLOUD, ["cloud", *common], log_dir, env)]
    nodes += [_spawn(e.name, ["edge", *common, "--id", str(e.id)], log_dir, env) for e in config.edges]
    cameras: list[_Process] = []
    status = "failed"
    try:
        _wait_nodes(config, nodes, start_timeout)
        cameras = [_spawn(c.name, ["camera", *common, "--id", str(c.id)], log_dir, env) for c in config.cameras]
        if on_started:
            on_started({p.name: p for p in nodes + cameras})
        try:
            while any(p.proc.poll() is None for p in cameras):
                time.sleep(0.2)
            status = "finished"
        except KeyboardInterrupt:
            log.warning("interrupted: stopping the cameras (frames already read are still answered), then the nodes")
            status = "interrupted"
            _stop(cameras, grace=120.0)
        failed = [p for p in cameras if p.proc.returncode not in (0, -signal.SIGTERM)]
        if failed and status == "finished":
            status = "failed"
            log.error("; ".join(f"{p.name} exited with {p.proc.returncode}: {p.tail(2)}" for p in failed))
    finally:
        _stop(cameras)
        _stop(nodes[1:], grace=90.0)  # edges first: a retraining round in progress still needs the cloud
        _stop(nodes[:1])
        finish_run(sessions, run_id, status)
    if status == "failed":
        raise EdgevaError(f"run {run_id} failed; logs in {log_dir}")
    if evaluate:
        evaluate_run(sessions, run_id, config.cloud.model, threads=config.cloud.threads, progress=progress,
                     cache=reference_cache, device=devices[CLOUD])
    return summarize(sessions, run_id)
