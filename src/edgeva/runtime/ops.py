"""What a running service reports besides its results: Prometheus ``/metrics``, MQTT
availability and object events, and (the cloud) the dashboard.

The runtime's services call a :class:`CameraOps` or :class:`NodeOps` at a handful of points
(a frame read, a frame recorded, a chunk sent, start, stop); everything here is off unless
the cluster config's ``metrics``, ``mqtt`` or ``dashboard`` section enables it, and nothing
here can stall a frame: metrics are in-memory counters, MQTT messages go to a bounded queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edgeva.errors import EdgevaError
from edgeva.runtime import metrics
from edgeva.runtime.config import CLOUD, ClusterConfig
from edgeva.runtime.store import FrameRecord

if TYPE_CHECKING:
    from edgeva.runtime.node import Node

__all__ = ["CameraOps", "NodeOps", "resolve_ops_ports"]

log = logging.getLogger(__name__)


class CameraOps:
    """A camera's metrics and object events.

    Args:
        config: the cluster config.
        camera_id: which camera this process runs.
    """

    def __init__(self, config: ClusterConfig, camera_id: int):
        self.config, self.cam = config, config.camera(camera_id)
        self.metrics_port: int | None = None
        self.publisher = None
        self.events = None
        self._lock = threading.Lock()  # results arrive on several delivery threads

    def start(self) -> CameraOps:
        if self.config.metrics.enabled:
            listen = self.config.metrics.listen or "127.0.0.1"
            self.metrics_port = metrics.serve(listen, self.cam.metrics_port)
            log.info("%s: /metrics on %s:%d", self.cam.name, listen, self.metrics_port)
        if self.config.mqtt.enabled:
            from edgeva.runtime.events import ObjectEvents
            from edgeva.runtime.mqtt import Publisher

            self.publisher = Publisher(self.config.mqtt, self.cam.name).start()
            keep = (self.cam.max_inflight + 2) * self.cam.encoding.chunk_frames
            self.events = ObjectEvents(self.cam.name, self.config.mqtt, self.publisher.publish, keep_frames=keep)
        return self

    def frame_read(self, index: int, image: np.ndarray) -> None:
        metrics.frame_read(self.cam.id)
        if self.events is not None:
            with self._lock:
                self.events.frame_read(index, image)

    def frames_lost(self, count: int) -> None:
        """A live source was down: the ``count`` frames it would have delivered count as read
        (the camera records them dropped, ``source-lost``)."""
        metrics.frame_read(self.cam.id, count)

    def reconnected(self, count: int) -> None:
        metrics.source_reconnected(self.cam.id, count)

    def recorded(self, record: FrameRecord) -> None:
        latency = record.t_done - record.t_capture if record.state == "inferred" else None
        metrics.frame_recorded(self.cam.id, record.state, record.where, latency)
        if self.events is not None:
            with self._lock:
                self.events.recorded(record)

    def chunk_sent(self, nbytes: int, encode_s: float) -> None:
        metrics.chunk_sent(self.cam.id, nbytes, encode_s)

    def failover(self, to: str) -> None:
        metrics.failover(self.cam.id, to)

    def close(self) -> None:
        """End open objects, flush MQTT, keep /metrics up for ``metrics.linger_s``."""
        if self.events is not None:
            with self._lock:
                self.events.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.metrics_port is not None and self.config.metrics.linger_s:
            time.sleep(self.config.metrics.linger_s)


class NodeOps:
    """An edge's or the cloud's metrics endpoint, availability and (cloud) dashboard."""

    def __init__(self, config: ClusterConfig, node: Node):
        self.config, self.node = config, node
        self.metrics_port: int | None = None
        self.publisher = None
        self.dashboard = None

    def start(self) -> NodeOps:
        node, name = self.node, self.node.name
        metrics.watch_node(name, lambda: len(node.queue), lambda: node.worker.version)
        listen = node.node.listen or node.node.host
        if self.config.metrics.enabled:
            self.metrics_port = metrics.serve(self.config.metrics.listen or listen, node.node.metrics_port)
            log.info("%s: /metrics on %s:%d", name, self.config.metrics.listen or listen, self.metrics_port)
        if self.config.mqtt.enabled:
            from edgeva.runtime.mqtt import Publisher

            self.publisher = Publisher(self.config.mqtt, name).start()
        if name == CLOUD and self.config.dashboard.enabled:
            from edgeva.dashboard.server import DashboardServer

            try:
                self.dashboard = DashboardServer.for_cluster(self.config).start()
            except EdgevaError as exc:  # the cloud keeps serving inference without its dashboard
                log.error("%s: dashboard not started: %s", name, exc)
        return self

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.publisher is not None:
            self.publisher.close()


def resolve_ops_ports(config: ClusterConfig, free_port: Callable[[str], int]) -> ClusterConfig:
    """The config with a free port for every enabled ``/metrics`` and the dashboard left at 0,
    so that a launcher knows (and writes into the resolved config) where each one listens."""
    update: dict = {}
    if config.metrics.enabled:
        def fix(node, host: str):
            return node if node.metrics_port else node.model_copy(update={"metrics_port": free_port(host)})

        listen = config.metrics.listen
        update["cloud"] = fix(config.cloud, listen or config.cloud.listen or config.cloud.host)
        update["edges"] = [fix(e, listen or e.listen or e.host) for e in config.edges]
        update["cameras"] = [fix(c, listen or "127.0.0.1") for c in config.cameras]
    if config.dashboard.enabled and not config.dashboard.port:
        host = config.dashboard.listen or config.cloud.listen or config.cloud.host
        update["dashboard"] = config.dashboard.model_copy(update={"port": free_port(host)})
    return config.model_copy(update=update) if update else config
