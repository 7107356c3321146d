"""A shared-uplink model: when does each chunk arrive at the server?

N camera streams share an uplink of B Mbit/s with a round-trip time RTT. Two disciplines:

* ``fair``: the link is split into N equal shares (B/N each); every stream queues its own
  chunks FIFO on its share. This is the AccMPEG evaluation's assumption (5 streams share
  2.5 Mbit/s), and it lets one video be replayed alone.
* ``fifo``: one queue at the full rate B, served in order of send time across streams;
  give the other streams' transfers too, or they are not there.

A chunk's delay = queueing + transmission + one-way latency (RTT / 2). Pure: the same
input always gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Link", "LinkQueue", "Transfer", "Delivery", "simulate", "Exchange", "ChunkTiming", "chunk_timings"]


@dataclass(frozen=True)
class Link:
    bandwidth_mbps: float = 2.5  # total uplink capacity shared by all streams
    streams: int = 5  # number of camera streams sharing it
    rtt_ms: float = 100.0  # round-trip time; one-way latency is half of it
    discipline: Literal["fair", "fifo"] = "fair"

    def __post_init__(self) -> None:
        if self.bandwidth_mbps <= 0:
            raise ValueError(f"bandwidth_mbps={self.bandwidth_mbps}: must be positive")
        if self.streams < 1:
            raise ValueError(f"streams={self.streams}: must be at least 1")
        if self.rtt_ms < 0:
            raise ValueError(f"rtt_ms={self.rtt_ms}: must not be negative")
        if self.discipline not in ("fair", "fifo"):
            raise ValueError(f"discipline={self.discipline!r}: choose 'fair' or 'fifo'")

    @property
    def one_way_s(self) -> float:
        return self.rtt_ms / 2000.0

    @property
    def rtt_s(self) -> float:
        return self.rtt_ms / 1000.0

    def rate_bytes_per_s(self) -> float:
        """Service rate of one queue: a stream's share (fair) or the whole link (fifo)."""
        share = self.streams if self.discipline == "fair" else 1
        return self.bandwidth_mbps * 1e6 / 8 / share


class LinkQueue:
    """One FIFO queue served at a fixed rate: the link model every part of edgeva shares.

    ``transmit(ready, nbytes)`` returns when a message that is ready at ``ready`` starts
    going out (after everything queued before it) and when its last byte has left; the
    queue stays busy until then. Times are seconds on any clock the caller keeps to (the
    simulation's, or ``time.monotonic()`` for the runtime's emulated links).
    """

    def __init__(self, rate_bytes_per_s: float):
        if rate_bytes_per_s <= 0:
            raise ValueError(f"rate_bytes_per_s={rate_bytes_per_s}: must be positive")
        self.rate = rate_bytes_per_s
        self.busy_until = float("-inf")

    def transmit(self, ready: float, nbytes: int) -> tuple[float, float]:
        """``(start, done)`` of a message of ``nbytes`` ready at ``ready``."""
        start = max(ready, self.busy_until)
        self.busy_until = start + nbytes / self.rate
        return start, self.busy_until


@dataclass(frozen=True)
class Transfer:
    send_time: float  # seconds: when the chunk is ready to send
    nbytes: int
    stream: int = 0


@dataclass(frozen=True)
class Delivery:
    transfer: Transfer
    queue_s: float  # waiting behind earlier chunks
    transmit_s: float  # serialisation at the queue's rate
    propagation_s: float  # one-way latency

    @property
    def delay_s(self) -> float:
        return self.queue_s + self.transmit_s + self.propagation_s

    @property
    def arrival_time(self) -> float:
        return self.transfer.send_time + self.delay_s


def simulate(transfers: Sequence[Transfer], link: Link) -> list[Delivery]:
    """Deliveries for ``transfers``, in the same order as given."""
    order = sorted(range(len(transfers)), key=lambda i: (transfers[i].send_time, i))
    queues: dict[int, LinkQueue] = {}  # a stream's share (fair) or the one queue (fifo)
    deliveries: list[Delivery | None] = [None] * len(transfers)
    for i in order:
        t = transfers[i]
        if t.nbytes < 0:
            raise ValueError(f"transfer {i}: nbytes={t.nbytes} must not be negative")
        if link.discipline == "fair" and not 0 <= t.stream < link.streams:
            raise ValueError(f"transfer {i}: stream {t.stream} outside 0..{link.streams - 1}")
        key = t.stream if link.discipline == "fair" else 0
        queue = queues.setdefault(key, LinkQueue(link.rate_bytes_per_s()))
        start, done = queue.transmit(t.send_time, t.nbytes)
        deliveries[i] = Delivery(t, start - t.send_time, done - start, link.one_way_s)
    return deliveries  # type: ignore[return-value]


@dataclass(frozen=True)
class Exchange:
    """One upload of a chunk: camera compute, then bytes over the link, then the server."""

    camera_s: float
    nbytes: int
    server_s: float


@dataclass(frozen=True)
class ChunkTiming:
    """Where a chunk's time went, from the moment its last frame was captured."""

    camera_s: float  # all camera compute on the critical path
    network_s: float  # queueing + transmission + one-way latency of every upload
    feedback_s: float  # server work and answers the camera had to wait for between uploads
    server_s: float  # inference on the final upload (reported separately, as AccMPEG does)

    @property
    def delay_s(self) -> float:
        """Camera + network + feedback: when the server holds the chunk's final input."""
        return self.camera_s + self.network_s + self.feedback_s


def chunk_timings(ready_times: Sequence[float], exchanges: Sequence[Sequence[Exchange]], link: Link) -> list[ChunkTiming]:
    """Timings of chunks that may need several exchanges (DDS: a second upload after the
    server's feedback). Uploads of all chunks share one queue and are served in the order
    they become ready, so a late second round queues behind the next chunk's first.

    Args:
        ready_times: when each chunk's last frame was captured (seconds).
        exchanges: per chunk, its uploads in order; upload r + 1 starts after the server's
            answer to upload r arrives back at the camera (server time + one-way latency).
        link: the uplink; one camera's queue runs at its share (``fair``) or the whole
            link (``fifo`` with no other stream's transfers given).
    """
    import heapq

    if len(ready_times) != len(exchanges):
        raise ValueError(f"{len(ready_times)} ready times for {len(exchanges)} chunks")
    queue = LinkQueue(link.rate_bytes_per_s())
    parts = [{"camera": 0.0, "network": 0.0, "feedback": 0.0, "server": 0.0} for _ in exchanges]
    # Events: (time the camera starts this exchange, chunk, exchange index).
    events = [(t, c, 0) for c, t in enumerate(ready_times) if exchanges[c]]
    heapq.heapify(events)
    while events:
        start, c, r = heapq.heappop(events)
        ex = exchanges[c][r]
        send = start + ex.camera_s
        arrival = queue.transmit(send, ex.nbytes)[1] + link.one_way_s
        part = parts[c]
        part["camera"] += ex.camera_s
        part["network"] += arrival - send
        if r + 1 < len(exchanges[c]):
            part["feedback"] += ex.server_s + link.one_way_s
            heapq.heappush(events, (arrival + ex.server_s + link.one_way_s, c, r + 1))
        else:
            part["server"] = ex.server_s
    return [ChunkTiming(p["camera"], p["network"], p["feedback"], p["server"]) for p in parts]
