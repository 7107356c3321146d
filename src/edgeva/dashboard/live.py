"""Live state of a cluster's nodes for the dashboard: queue length and model version, from
each node's ``Inference.Status`` call (the same the edges' info updaters use)."""

from __future__ import annotations

import logging
import threading

from edgeva.runtime.config import CLOUD, ClusterConfig

__all__ = ["NodePoller"]

log = logging.getLogger(__name__)


class NodePoller:
    """Asks every node of ``config`` for its status every ``interval_s`` on a thread."""

    def __init__(self, config: ClusterConfig, interval_s: float = 1.0):
        from edgeva.runtime.rpc import Peer

        names = [e.name for e in config.edges] + [CLOUD]
        self.peers = {n: Peer(n, config.node(n).address, config.security) for n in names}
        self.interval_s = interval_s
        self.status: dict[str, dict] = {n: {"alive": None, "queue_length": None, "model_version": None} for n in names}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-nodes", daemon=True)

    def start(self) -> NodePoller:
        self._thread.start()
        return self

    def _run(self) -> None:
        from edgeva.runtime.rpc import RemoteError

        while not self._stop.is_set():
            for name, peer in self.peers.items():
                try:
                    status = peer.status(timeout=max(0.5, self.interval_s))
                except RemoteError:
                    self.status[name] = {**self.status[name], "alive": False, "queue_length": None}
                    continue
                self.status[name] = {"alive": True, "queue_length": status.queue_length,
                                     "model_version": status.model_version, "service_s": round(status.service_s, 4)}
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for peer in self.peers.values():
            peer.close()
