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

__all__ = ["Link", "Transfer", "Delivery", "simulate"]


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
    rate = link.rate_bytes_per_s()
    order = sorted(range(len(transfers)), key=lambda i: (transfers[i].send_time, i))
    busy_until: dict[int, float] = {}  # queue key -> time its last transmission ends
    deliveries: list[Delivery | None] = [None] * len(transfers)
    for i in order:
        t = transfers[i]
        if t.nbytes < 0:
            raise ValueError(f"transfer {i}: nbytes={t.nbytes} must not be negative")
        if link.discipline == "fair" and not 0 <= t.stream < link.streams:
            raise ValueError(f"transfer {i}: stream {t.stream} outside 0..{link.streams - 1}")
        queue = t.stream if link.discipline == "fair" else 0
        start = max(t.send_time, busy_until.get(queue, float("-inf")))
        transmit = t.nbytes / rate
        busy_until[queue] = start + transmit
        deliveries[i] = Delivery(t, start - t.send_time, transmit, link.one_way_s)
    return deliveries  # type: ignore[return-value]
