"""The runtime's configuration: one YAML file describing the whole topology.

Typed pydantic models, one comment per field; unknown keys are errors. ``load_config`` maps
a file onto them and turns every validation problem into one :class:`ConfigError` line that
names the key (``edges[1].delay_factor: ...``). EdgeCam's knobs keep their meaning: filter
feature and threshold, offloading policy, the retraining window, number of collected frames
and epochs, the database connection, edge ids and destinations.

Relative paths (database file, TLS files, video files) are relative to the current folder.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeva.errors import ConfigError
from edgeva.filtering import Feature
from edgeva.net.link import Link
from edgeva.quality import QUALITY_POLICIES
from edgeva.runtime.balance.complexity import ESTIMATORS
from edgeva.runtime.balance.optimizer import BALANCERS
from edgeva.runtime.balance.predictor import PREDICTORS
from edgeva.runtime.opsconfig import DashboardConfig, MetricsConfig, MqttConfig
from edgeva.runtime.policy import OFFLOAD_POLICIES
from edgeva.runtime.worker import WORKERS

__all__ = [
    "LinkConfig", "SecurityConfig", "BalancerConfig", "DatabaseConfig", "FilterConfig", "PolicyConfig", "RetrainConfig",
    "NodeConfig", "CloudConfig", "EdgeConfig", "EncodingConfig", "CameraConfig", "ClusterConfig",
    "load_config", "resolve_config_path", "redact_url", "is_loopback", "host_port", "CLOUD", "MAX_EPOCHS", "MAX_LEARNING_RATE",
]

CLOUD = "cloud"  # the cloud's name wherever a node is named (fail-over lists, the `where` column)
MAX_EPOCHS = 50  # most fine-tuning epochs a retraining round may ask for (config and the cloud's service)
MAX_LEARNING_RATE = 0.01  # largest fine-tuning learning rate
REDACTED = "**********"  # what stored and printed copies of a secret show


def redact_url(url: str) -> str:
    """A database URL with its password replaced by asterisks (for logs and stored configs)."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy understands: leave it, it will fail with its own error
        return url
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:5000``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinkConfig(_Strict):
    """An emulated network link into a node (all nodes share one machine's loopback)."""

    bandwidth_mbps: float | None = Field(None, gt=0)  # None: not emulated (loopback speed)
    rtt_ms: float = Field(0.0, ge=0)  # round-trip time added to every call

    def as_link(self) -> Link | None:
        if self.bandwidth_mbps is None and self.rtt_ms == 0:
            return None
        return Link(bandwidth_mbps=self.bandwidth_mbps or 1e6, streams=1, rtt_ms=self.rtt_ms, discipline="fifo")


class SecurityConfig(_Strict):
    token_env: str | None = None  # environment variable holding the shared token (preferred)
    token: SecretStr | None = None  # the shared token itself; every call must carry it (stored and printed as asterisks)
    tls_cert: Path | None = None  # PEM certificate of the services (enables TLS); with mutual_tls also each client's
    tls_key: Path | None = None  # PEM private key of tls_cert
    tls_ca: Path | None = None  # PEM root clients trust; default: tls_cert itself (self-signed); with mutual_tls also the clients' CA
    mutual_tls: bool = False  # services demand a client certificate signed by tls_ca; nodes and cameras present tls_cert
    allow_insecure: bool = False  # let a node listen on a non-loopback address without TLS and a token (or mutual TLS)
    max_message_mb: float = Field(16.0, gt=0, le=1024)  # larger messages are rejected
    max_chunk_mpixels: float = Field(64.0, gt=0, le=4096)  # most decoded pixels in one chunk (frames x width x height), millions

    @model_validator(mode="after")
    def _pairs(self) -> SecurityConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.token is not None and self.token_env is not None:
            raise ValueError("give token or token_env, not both")
        if self.mutual_tls and (self.tls_cert is None or self.tls_ca is None):
            raise ValueError("mutual_tls needs tls_cert, tls_key and tls_ca (the CA that signs every client's certificate)")
        for name in ("tls_cert", "tls_key", "tls_ca"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        if self.token_env is not None and not os.environ.get(self.token_env):
            raise ValueError(f"token_env: environment variable {self.token_env} is not set")
        return self

    def shared_token(self) -> str | None:
        if self.token_env:
            return os.environ[self.token_env]
        return self.token.get_secret_value() if self.token is not None else None

    @property
    def secure(self) -> bool:
        """Encrypted and authenticated: TLS plus a token or client certificates."""
        return self.tls_cert is not None and (self.shared_token() is not None or self.mutual_tls)

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)

    @property
    def max_chunk_pixels(self) -> int:
        return int(self.max_chunk_mpixels * 1e6)


class DatabaseConfig(_Strict):
    url: str = "runs/edgeva-runtime.db"  # SQLAlchemy URL, or a SQLite file path
    batch_size: int = Field(64, ge=1)  # frames per committed batch
    flush_s: float = Field(0.5, gt=0)  # commit at least this often
    commit_attempts: int = Field(4, ge=1)  # tries of one batch (back-off 0.1 s doubling) before it goes to the journal
    close_wait_s: float = Field(30.0, ge=0)  # a camera ending with records journalled offers them this long before an error
    journal_dir: Path | None = None  # unwritten batches wait here for the database; default: <SQLite file>.pending/ or runs/pending/


class FilterConfig(_Strict):
    enabled: bool = True  # False: every frame is sent
    feature: Feature = "pixel"  # pixel | area | edge | corner (EdgeCam's filter features)
    threshold: float = Field(0.01, ge=0, le=1)  # send when the difference to the last sent frame is >= this


class PolicyConfig(_Strict):
    name: str = "edge-shortest"  # offloading policy (see edgeva.runtime.policy)
    cloud_threshold: int = Field(4, ge=1)  # shortest-cloud-threshold: cloud once every edge queue is this long
    confidence: float = Field(0.5, gt=0, le=1)  # edge-cloud-assisted: edge objects below go to the cloud
    region_floor: float = Field(0.15, gt=0, le=1)  # edge-cloud-assisted: weakest edge score that marks a region
    latency_budget_ms: float = Field(400.0, gt=0)  # offload quality is chosen to arrive within this
    info_interval_s: float = Field(0.1, gt=0)  # how often edges exchange queue lengths
    offload_timeout_s: float = Field(20.0, gt=0)  # deadline of an offloaded frame or region, and of waiting for a queue slot

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return OFFLOAD_POLICIES.check(name)

    @model_validator(mode="after")
    def _floor(self) -> PolicyConfig:
        if self.region_floor > self.confidence:
            raise ValueError(f"region_floor {self.region_floor} must not exceed confidence {self.confidence}")
        return self


class BalancerConfig(_Strict):
    """NeuroMesh's workload optimizer (docs/balancing.md); `none` keeps every camera on its home edge."""

    name: str = "none"  # neuromesh | distream | none (edgeva.runtime.balance registry)
    interval_s: float = Field(0.5, gt=0)  # edges report load and the balancer decides this often
    predictor: str = "last"  # next-interval load predictor: last | ema | gru
    estimator: str = "filter-objects"  # camera content complexity (edgeva.runtime.balance.complexity registry)
    capacities: dict[str, Annotated[float, Field(gt=0)]] | None = None  # C_i by edge name; default: 1 / delay_factor
    patience: int = Field(2, ge=1)  # neuromesh: stop after this many iterations that do not lower I
    unit: float = Field(2.0, gt=0)  # distream: load units moved per step
    target: float = Field(0.3, ge=0)  # distream: stop once I <= this
    min_gain: float = Field(0.05, ge=0)  # move a camera only when it lowers I by at least this
    # L_i: `queued` = queue length x seconds per frame (the backlog); `queued-arriving` adds the frames arriving
    # per second x interval_s (NeuroMesh's "work queued and arriving"; measured no better here: docs/balancing.md)
    load: Literal["queued", "queued-arriving"] = "queued"
    # split: a camera sends the share of its chunks that carries the plan's amount to the plan's target
    # (the rest stays); false: whole cameras move, whatever the amount
    split: bool = False
    # B_ij between edges in Mbit/s, {edge-1: {edge-2: 100, edge-3: 50}, ...}: neuromesh scales a move
    # by B_ij / max(B). One direction per pair is enough (symmetric); every pair once given. Default: all equal.
    bandwidth_mbps: dict[str, dict[str, Annotated[float, Field(gt=0)]]] | None = None

    def bandwidth_matrix(self, edges: list[str]) -> np.ndarray | None:
        """B_ij for ``edges`` (in that order; 0 on the diagonal), or None when not configured."""
        if not self.bandwidth_mbps:
            return None
        matrix = np.zeros((len(edges), len(edges)))
        for a, links in self.bandwidth_mbps.items():
            for b, mbps in links.items():
                if a in edges and b in edges:
                    matrix[edges.index(a), edges.index(b)] = matrix[edges.index(b), edges.index(a)] = mbps
        return matrix

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return BALANCERS.check(name)

    @field_validator("predictor")
    @classmethod
    def _known_predictor(cls, name: str) -> str:
        return PREDICTORS.check(name)

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, name: str) -> str:
        return ESTIMATORS.check(name)


class RetrainConfig(_Strict):
    enabled: bool = False  # collect drift frames and fine-tune the edge model
    window: int = Field(100, ge=2)  # locally inferred frames per collection window
    frames: int = Field(10, ge=1)  # lowest-confidence frames kept from each window
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)  # fine-tuning epochs over the collected frames (batch 8)
    learning_rate: float = Field(5e-4, gt=0, le=MAX_LEARNING_RATE)
    max_rounds: int | None = Field(None, ge=1)  # stop after this many rounds per edge (None: no limit)
    validation_frames: int = Field(20, ge=0)  # golden-labelled frames an update is checked on before the swap (0: no check)
    validation_every: int = Field(5, ge=2)  # every n-th locally inferred frame goes to the validation set (never trained on)

    @model_validator(mode="after")
    def _fits(self) -> RetrainConfig:
        if self.frames > self.window:
            raise ValueError(f"frames {self.frames} must not exceed window {self.window}")
        return self


class NodeConfig(_Strict):
    """What edges and the cloud share: where they listen and how fast they may compute."""

    host: str = "127.0.0.1"  # address other services use to reach this node
    listen: str | None = None  # address to bind; default: host (loopback unless configured)
    port: int = Field(0, ge=0, le=65535)  # 0: `edgeva cluster` picks a free port
    model: str  # detector name (edgeva.models registry)
    input_size: tuple[int, int] | None = None  # detector input (height, width); None: the model's default
    threads: int = Field(1, ge=1)  # torch threads for inference
    device: str = "cpu"  # torch device for this node's models: auto (a GPU when torch sees one) | cpu | cuda | cuda:N
    delay_factor: float = Field(1.0, ge=1.0)  # emulated compute budget: each inference takes this many times longer
    fps_cap: float | None = Field(None, gt=0)  # emulated compute budget: at most this many frames a second
    queue_size: int = Field(64, ge=1)  # frames held at once; a request that finds no room waits, then is refused
    admit_wait_s: float = Field(2.0, ge=0)  # how long a request may wait for room before it is refused (0: at once)
    link: LinkConfig = LinkConfig()  # emulated link from other nodes into this one
    metrics_port: int = Field(0, ge=0, le=65535)  # /metrics port when metrics are enabled (0: a free one)

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, device: str) -> str:
        from edgeva.device import check_device

        return check_device(device)  # whether torch sees it is checked where the node runs


class CloudConfig(NodeConfig):
    model: str = "yolox-nano"  # the golden model
    link: LinkConfig = LinkConfig(bandwidth_mbps=20.0, rtt_ms=40.0)  # the edges' WAN uplink to the cloud


class EdgeConfig(NodeConfig):
    id: int = Field(ge=1)  # edge id (EdgeCam's edge_id); the node is called "edge-<id>"
    model: str = "fastestdet"  # the lightweight model
    worker: str = "detector"  # inference worker kind (edgeva.runtime.worker registry)
    offload_workers: int = Field(4, ge=1)  # offloading thread pool size
    apps_dir: Path | None = None  # worker "apps": a Mainstream apps folder (`edgeva apps train`)
    apps_budget_ms: float | None = Field(None, gt=0)  # worker "apps": compute budget, ms per second of video
    apps_scheduler: str = "mainstream"  # worker "apps": mainstream | f1-per-cost | maxsharing | exhaustive

    @property
    def name(self) -> str:
        return f"edge-{self.id}"

    @field_validator("worker")
    @classmethod
    def _known_worker(cls, worker: str) -> str:
        return WORKERS.check(worker)

    @model_validator(mode="after")
    def _apps_worker(self) -> EdgeConfig:
        if self.worker == "apps":
            if self.device != "cpu":
                raise ValueError(f"device: {self.device}: worker apps runs on the CPU (device: cpu)")
            if self.apps_dir is None or self.apps_budget_ms is None:
                raise ValueError("worker apps needs `apps_dir: PATH` and `apps_budget_ms: MS`")
            if not (self.apps_dir / "manifest.json").is_file():
                raise ValueError(f"apps_dir: {self.apps_dir} is not an apps folder (no manifest.json)")
        return self


class EncodingConfig(_Strict):
    scheme: str = "uniform"  # chunk quality policy (edgeva.quality registry): uniform | accmpeg
    crf: int = Field(28, ge=0, le=63)  # uniform: CRF of every block
    checkpoint: Path | None = None  # accmpeg: the selector checkpoint
    alpha: float = Field(0.2, ge=0, le=1)  # accmpeg: high quality where selector probability >= alpha
    gamma: int | None = Field(None, ge=0)  # accmpeg: dilation in blocks (None: edgeva's default)
    adapt_every: int = Field(0, ge=0)  # accmpeg: every this many chunks a frame goes to the cloud, which adapts the selector (0: off)
    codec: str = "h264"  # h264 | hevc | vp9
    preset: str = "veryfast"  # x264/x265 preset
    chunk_frames: int = Field(5, ge=1, le=120)  # sent frames per chunk
    max_chunk_wait_s: float = Field(1.0, gt=0)  # send a partial chunk once its first frame is this old

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, scheme: str) -> str:
        return QUALITY_POLICIES.check(scheme)

    @model_validator(mode="after")
    def _selector_given(self) -> EncodingConfig:
        if self.scheme == "accmpeg":
            if self.checkpoint is None:
                raise ValueError("scheme accmpeg needs `checkpoint: PATH` (a selector from `edgeva selector train`)")
            if not self.checkpoint.is_file():
                raise ValueError(f"checkpoint {self.checkpoint}: no such selector checkpoint")
        elif self.adapt_every:
            raise ValueError(f"adapt_every: adapts AccMPEG's selector, but scheme is {self.scheme}")
        return self

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, codec: str) -> str:
        from edgeva.video import CODECS

        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r} (available: {', '.join(CODECS)})")
        return codec


class CameraConfig(_Strict):
    id: int = Field(ge=1)  # camera id
    source: str  # video file, image pattern (dir/%06d.png), RTSP/HTTP URL or sample-video name
    edge: int  # id of the camera's home edge
    failover: list[str] | None = None  # nodes to try when the home edge fails ("edge-2", "cloud"); default: other edges, then the cloud
    start: int = Field(0, ge=0)  # first source frame
    frames: int | None = Field(None, ge=1)  # read at most this many frames (None: to the end)
    step: int = Field(1, ge=1)  # read every step-th frame
    size: tuple[int, int] | None = None  # (width, height) to resize to
    fps: float | None = Field(None, ge=0)  # pace reading at this rate; None: the source's rate; 0: as fast as possible
    max_inflight: int = Field(4, ge=1)  # chunks sent and not yet answered
    backlog: Literal["wait", "drop"] = "wait"  # when max_inflight chunks are out: wait, or drop new frames
    encoding: EncodingConfig = EncodingConfig()
    filter: FilterConfig | None = None  # overrides the cluster's filter for this camera
    retries: int = Field(3, ge=0)  # attempts per node before failing over
    backoff_s: float = Field(0.2, gt=0)  # first retry delay; doubles each attempt
    deadline_s: float = Field(60.0, gt=0)  # per-call deadline of a chunk
    metrics_port: int = Field(0, ge=0, le=65535)  # /metrics port when metrics are enabled (0: a free one)
    live: bool | None = None  # reconnect when the source breaks, recording the gap (default: for RTSP/HTTP/... URLs)
    watchdog_s: float = Field(5.0, gt=0)  # live source: no frame for this long -> reopen it
    source_backoff_s: float = Field(0.5, gt=0)  # live source: first wait before reconnecting; doubles up to 10 s
    start_after_s: float = Field(0.0, ge=0)  # wait this long after the camera starts before opening its source (a late camera)

    @property
    def name(self) -> str:
        return f"camera-{self.id}"


class ClusterConfig(_Strict):
    run: str | None = None  # run id for the results database; `edgeva cluster` makes a fresh one
    database: DatabaseConfig = DatabaseConfig()
    security: SecurityConfig = SecurityConfig()
    policy: PolicyConfig = PolicyConfig()
    filter: FilterConfig = FilterConfig()
    retraining: RetrainConfig = RetrainConfig()
    balancer: BalancerConfig = BalancerConfig()  # moves cameras between edges (docs/balancing.md)
    cloud: CloudConfig = CloudConfig()
    edges: list[EdgeConfig] = Field(min_length=1)
    cameras: list[CameraConfig] = Field(default_factory=list)
    metrics: MetricsConfig = MetricsConfig()  # Prometheus /metrics on every node and camera (opsconfig.py)
    mqtt: MqttConfig = MqttConfig()  # object events and availability over MQTT (opsconfig.py)
    dashboard: DashboardConfig = DashboardConfig()  # web dashboard served by the cloud (opsconfig.py)

    @model_validator(mode="after")
    def _references(self) -> ClusterConfig:
        edge_ids = [e.id for e in self.edges]
        if len(set(edge_ids)) != len(edge_ids):
            raise ValueError(f"edges: duplicate edge ids {edge_ids}")
        camera_ids = [c.id for c in self.cameras]
        if len(set(camera_ids)) != len(camera_ids):
            raise ValueError(f"cameras: duplicate camera ids {camera_ids}")
        if self.retraining.enabled:
            for i, edge in enumerate(self.edges):
                if edge.model != "fastestdet":
                    raise ValueError(f"edges[{i}].model: retraining fine-tunes fastestdet, not {edge.model!r}")
        self._listen_safely()
        for name in self.balancer.capacities or {}:
            if name not in {e.name for e in self.edges}:
                raise ValueError(f"balancer.capacities.{name}: no such edge (edges: {', '.join(e.name for e in self.edges)})")
        self._bandwidth_pairs()
        nodes = {e.name for e in self.edges} | {CLOUD}
        for i, cam in enumerate(self.cameras):
            if cam.edge not in edge_ids:
                raise ValueError(f"cameras[{i}].edge: no edge with id {cam.edge} (edges: {edge_ids})")
            for name in cam.failover or []:
                if name not in nodes:
                    raise ValueError(f"cameras[{i}].failover: unknown node {name!r} (nodes: {', '.join(sorted(nodes))})")
        return self

    def _bandwidth_pairs(self) -> None:
        """``balancer.bandwidth_mbps`` names edges, no edge twice, and every pair of edges once."""
        given = self.balancer.bandwidth_mbps
        if not given:
            return
        names = [e.name for e in self.edges]
        pairs: dict[frozenset, float] = {}
        for a, links in given.items():
            for b, mbps in links.items():
                for where, name in ((f"balancer.bandwidth_mbps.{a}", a), (f"balancer.bandwidth_mbps.{a}.{b}", b)):
                    if name not in names:
                        raise ValueError(f"{where}: no such edge (edges: {', '.join(names)})")
                if a == b:
                    raise ValueError(f"balancer.bandwidth_mbps.{a}.{b}: an edge has no link to itself")
                if pairs.setdefault(frozenset((a, b)), mbps) != mbps:
                    raise ValueError(f"balancer.bandwidth_mbps.{a}.{b}: {mbps} differs from {b}.{a} ({pairs[frozenset((a, b))]})")
        missing = [f"{a}-{b}" for i, a in enumerate(names) for b in names[i + 1:] if frozenset((a, b)) not in pairs]
        if missing:
            raise ValueError(f"balancer.bandwidth_mbps: no bandwidth for {', '.join(missing)} (give every pair of edges)")

    def _listen_safely(self) -> None:
        if self.security.allow_insecure or self.security.secure:
            return
        for where, node in [("cloud", self.cloud), *((f"edges[{i}]", e) for i, e in enumerate(self.edges))]:
            key, address = ("listen", node.listen) if node.listen else ("host", node.host)
            if not is_loopback(address):
                raise ValueError(
                    f"{where}.{key}: {address} is not a loopback address; listening there needs security.tls_cert/tls_key "
                    "and token_env (or mutual_tls), or `security.allow_insecure: true` to accept plain text")

    def redacted_json(self) -> str:
        """The config as JSON with its secrets masked: the token and a database password."""
        data = json.loads(self.model_dump_json())  # SecretStr fields dump as asterisks
        data["database"]["url"] = redact_url(self.database.url)
        return json.dumps(data)

    def edge(self, edge_id: int) -> EdgeConfig:
        for edge in self.edges:
            if edge.id == edge_id:
                return edge
        raise ConfigError(f"--id {edge_id}: no edge with that id (edges: {[e.id for e in self.edges]})")

    def camera(self, camera_id: int) -> CameraConfig:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise ConfigError(f"--id {camera_id}: no camera with that id (cameras: {[c.id for c in self.cameras]})")

    def camera_filter(self, camera: CameraConfig) -> FilterConfig:
        return camera.filter or self.filter

    def route(self, camera: CameraConfig) -> list[str]:
        """Nodes a camera tries in order: its home edge, then its fail-over list."""
        home = f"edge-{camera.edge}"
        rest = camera.failover if camera.failover is not None else [e.name for e in self.edges if e.name != home] + [CLOUD]
        return [home] + [n for n in rest if n != home]

    def device(self, name: str, *, cuda_count: int | None = None) -> str:
        """The torch device node ``name`` runs its models on, resolved against what torch sees
        on this machine (``cpu`` or ``cuda:N``; ``cuda_count`` overrides it, for tests).

        Raises:
            ConfigError: a CUDA device torch does not see, naming the key (``edges[1].device``).
        """
        from edgeva.device import resolve_device

        node = self.node(name)
        key = f"{CLOUD}.device" if name == CLOUD else f"edges[{self.edges.index(node)}].device"
        return resolve_device(node.device, cuda_count=cuda_count, key=key)

    def node(self, name: str) -> NodeConfig:
        if name == CLOUD:
            return self.cloud
        return self.edge(int(name.removeprefix("edge-")))


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _explain(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = _location(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def resolve_config_path(spec: str | Path) -> Path:
    """A config argument: a file path, or the name of a config shipped with edgeva (``cluster``)."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = resources.files("edgeva") / "configs" / f"{path.stem}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return Path(str(shipped))
    raise ConfigError(f"{spec}: no such config file")


def load_config(spec: str | Path, **overrides: object) -> ClusterConfig:
    """Read and validate a cluster config; ``overrides`` replace top-level keys.

    Raises:
        ConfigError: missing or unreadable file, bad YAML, or a bad key or value (named).
    """
    path = resolve_config_path(spec)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_explain(exc)}") from None
