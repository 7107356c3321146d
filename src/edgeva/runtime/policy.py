"""The decision engine of an edge node: where each frame is inferred, and at what quality.

Offloading policies (EdgeCam's four, looked up by name; a new one registers itself):

* ``edge-local``: every frame of a camera is inferred by its home edge.
* ``edge-shortest``: each frame goes to the edge with the shortest inference queue.
* ``shortest-cloud-threshold``: to the cloud once every edge queue has reached a threshold,
  otherwise to the edge with the shortest queue.
* ``edge-cloud-assisted``: the home edge infers first; regions it is unsure about (objects
  scored between ``region_floor`` and ``confidence``) are cropped and re-inferred by the
  cloud's golden model, and the results are merged.

A policy sees a :class:`ClusterView`: the home edge's own queue exactly, the other nodes'
queues as last reported by the info updater, plus the frames this edge has sent them since.

:class:`OffloadQuality` picks the resolution and CRF of a frame (or region) that leaves the
edge: the best level whose estimated transfer time fits the latency budget left after the
expected wait in the target's queue, on the target's (emulated) link (but never less than a
quarter of the budget: shrinking a frame cannot shorten a queue).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edgeva.net.link import Link
from edgeva.registry import Registry

if TYPE_CHECKING:
    from edgeva.runtime.config import PolicyConfig

__all__ = [
    "NodeState", "ClusterView", "Policy", "OFFLOAD_POLICIES", "register_policy", "create_policy", "list_policies",
    "EdgeLocal", "EdgeShortest", "ShortestCloudThreshold", "EdgeCloudAssisted", "OffloadQuality", "LEVELS",
]

CLOUD = "cloud"


@dataclass
class NodeState:
    name: str
    queue_length: int = 0  # as last reported
    service_s: float = 0.0  # seconds per frame, as last reported
    reported: float = 0.0  # when (epoch seconds)
    alive: bool = True
    sent_since: int = 0  # frames this edge sent it since that report


class ClusterView:
    """What one edge knows about the nodes it may use.

    Args:
        me: this edge's name.
        edges: the other edges' names.
        local_queue: this edge's queue length, read live.
        local_service: this edge's seconds per frame, read live.
    """

    def __init__(self, me: str, edges: list[str], local_queue: Callable[[], int], local_service: Callable[[], float]):
        self.me = me
        self._local_queue, self._local_service = local_queue, local_service
        self._nodes = {name: NodeState(name) for name in [*edges, CLOUD]}
        self._lock = threading.Lock()

    def report(self, name: str, queue_length: int, service_s: float) -> None:
        """A fresh status from a node (the info updater, or piggy-backed on a reply)."""
        with self._lock:
            node = self._nodes[name]
            node.queue_length, node.service_s, node.reported = queue_length, service_s, time.time()
            node.alive, node.sent_since = True, 0

    def mark_down(self, name: str) -> None:
        with self._lock:
            self._nodes[name].alive = False

    def sent(self, name: str) -> None:
        with self._lock:
            if name in self._nodes:
                self._nodes[name].sent_since += 1

    def alive(self, name: str) -> bool:
        return name == self.me or self._nodes[name].alive

    def queue_length(self, name: str) -> int:
        """Expected queue length: live for this edge; last report plus frames sent since for others."""
        if name == self.me:
            return self._local_queue()
        node = self._nodes[name]
        return node.queue_length + node.sent_since

    def service_s(self, name: str) -> float:
        return self._local_service() if name == self.me else self._nodes[name].service_s

    def wait_s(self, name: str) -> float:
        """Expected time a new frame waits in ``name``'s queue."""
        return self.queue_length(name) * self.service_s(name)

    def edges(self) -> list[str]:
        """This edge and the other edges currently believed alive, this edge first."""
        with self._lock:
            return [self.me] + [n.name for n in self._nodes.values() if n.name != CLOUD and n.alive]


class Policy(Protocol):
    """Places each frame arriving at a home edge."""

    cloud_assist: bool  # True: the home edge's unsure regions are re-inferred by the cloud

    def place(self, view: ClusterView) -> str:
        """Name of the node that infers the next frame (``view.me``, another edge, or ``cloud``)."""
        ...


def _shortest(view: ClusterView) -> str:
    edges = view.edges()
    return min(edges, key=lambda n: (view.queue_length(n), n != view.me))  # ties stay home


class EdgeLocal:
    cloud_assist = False

    def place(self, view: ClusterView) -> str:
        return view.me


class EdgeShortest:
    cloud_assist = False

    def place(self, view: ClusterView) -> str:
        return _shortest(view)


class ShortestCloudThreshold:
    cloud_assist = False

    def __init__(self, threshold: int):
        self.threshold = threshold

    def place(self, view: ClusterView) -> str:
        target = _shortest(view)
        if view.queue_length(target) >= self.threshold and view.alive(CLOUD):
            return CLOUD
        return target


class EdgeCloudAssisted:
    cloud_assist = True

    def __init__(self, confidence: float, region_floor: float):
        self.confidence, self.region_floor = confidence, region_floor

    def place(self, view: ClusterView) -> str:
        return view.me


PolicyFactory = Callable[["PolicyConfig"], Policy]
OFFLOAD_POLICIES: Registry[PolicyFactory] = Registry("policy")
register_policy = OFFLOAD_POLICIES.register  # @register_policy(name): factory(policy_config) -> Policy
list_policies = OFFLOAD_POLICIES.names


def create_policy(config: PolicyConfig) -> Policy:
    return OFFLOAD_POLICIES[config.name](config)


register_policy("edge-local")(lambda config: EdgeLocal())
register_policy("edge-shortest")(lambda config: EdgeShortest())
register_policy("shortest-cloud-threshold")(lambda config: ShortestCloudThreshold(config.cloud_threshold))
register_policy("edge-cloud-assisted")(lambda config: EdgeCloudAssisted(config.confidence, config.region_floor))

# (resolution scale, CRF) of a frame leaving the edge, best first. A single intra-coded frame.
LEVELS: tuple[tuple[float, int], ...] = ((1.0, 23), (1.0, 30), (0.75, 30), (0.5, 32), (0.5, 38))
# Starting guesses of bytes per pixel of one intra-coded frame at each CRF (x264 veryfast,
# measured on the sample videos); replaced by what is measured as frames are sent.
_PRIOR_BYTES_PER_PIXEL = {23: 0.16, 30: 0.07, 32: 0.055, 38: 0.025}
MIN_TRANSFER_SHARE = 0.25


class OffloadQuality:
    """Chooses (scale, CRF) of each offloaded frame or region from link bandwidth and queues.

    Args:
        budget_s: latency budget of an offloaded frame: expected queue wait + transfer + RTT.
        levels: (scale, CRF) pairs, best quality first.
    """

    def __init__(self, budget_s: float, levels: tuple[tuple[float, int], ...] = LEVELS):
        self.budget_s, self.levels = budget_s, levels
        self._bytes_per_pixel = {crf: _PRIOR_BYTES_PER_PIXEL.get(crf, 0.1) for _, crf in levels}
        self._lock = threading.Lock()

    def choose(self, pixels: int, link: Link | None, wait_s: float) -> tuple[float, int]:
        """Level for a frame of ``pixels`` pixels sent on ``link`` to a queue with ``wait_s`` expected wait."""
        if link is None:  # not constrained: send the best
            return self.levels[0]
        # The transfer always gets at least MIN_TRANSFER_SHARE of the budget: a long queue at
        # the target is not something a smaller frame can fix, only a slow link is.
        allowance = max(self.budget_s - wait_s - link.rtt_s, MIN_TRANSFER_SHARE * self.budget_s)
        rate = link.rate_bytes_per_s()
        for scale, crf in self.levels:
            if self._bytes_per_pixel[crf] * pixels * scale * scale / rate <= allowance:
                return scale, crf
        return self.levels[-1]

    def observe(self, crf: int, nbytes: int, pixels: int) -> None:
        """What a frame at ``crf`` actually cost (``pixels`` after scaling)."""
        with self._lock:
            self._bytes_per_pixel[crf] = 0.8 * self._bytes_per_pixel[crf] + 0.2 * nbytes / max(pixels, 1)
