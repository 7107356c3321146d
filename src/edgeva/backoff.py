"""Retry with exponential back-off: the one loop every retrying part of edgeva uses.

An operation is called until it succeeds; an exception the caller says is worth retrying
waits ``first_s``, ``factor * first_s``, ... (at most ``max_s``) and tries again, until a
number of attempts, a deadline or a stop event says to give up, when the last exception is
raised. Used by the runtime's gRPC calls and node polling, the results database writer and
live video sources reconnecting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Backoff", "retrying"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``first_s``, then ``factor`` times longer each time, capped."""

    first_s: float = 0.1
    factor: float = 2.0
    max_s: float = 5.0

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.factor < 1 or self.max_s < self.first_s:
            raise ValueError(f"back-off {self}: need first_s > 0, factor >= 1, max_s >= first_s")

    def delays(self) -> Iterator[float]:
        """The endless sequence of waits."""
        delay = self.first_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)


def retrying(operation: Callable[[], T], *, backoff: Backoff, should_retry: Callable[[Exception], bool],
             attempts: int | None = None, deadline: float | None = None, stop: threading.Event | None = None,
             on_retry: Callable[[Exception, int, float], None] | None = None) -> T:
    """``operation()``, retried with back-off.

    Args:
        operation: what to call; its return value is returned.
        backoff: the waits between attempts.
        should_retry: whether an exception is worth another attempt (others propagate at once).
        attempts: give up after this many calls (None: no limit).
        deadline: ``time.monotonic()`` after which no new attempt starts (None: none).
        stop: give up as soon as this event is set (also interrupts a wait).
        on_retry: called as ``on_retry(exc, attempt, delay)`` before each wait (for logs).

    Raises:
        The last exception of ``operation`` when giving up, or any it should not retry.
    """
    attempt = 0
    for delay in backoff.delays():
        attempt += 1
        try:
            return operation()
        except Exception as exc:
            if not should_retry(exc) or (attempts is not None and attempt >= attempts):
                raise
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            if stop is not None and stop.is_set():
                raise
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover  (delays() never ends)
