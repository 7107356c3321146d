"""Network models."""

from edgeva.net.link import ChunkTiming, Delivery, Exchange, Link, Transfer, chunk_timings, simulate

__all__ = ["ChunkTiming", "Delivery", "Exchange", "Link", "Transfer", "chunk_timings", "simulate"]
