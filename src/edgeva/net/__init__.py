"""Network models."""

from edgeva.net.link import Delivery, Link, Transfer, simulate

__all__ = ["Delivery", "Link", "Transfer", "simulate"]
