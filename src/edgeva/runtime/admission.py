"""What a node promises before it starts work: admission of whole requests, deadlines on
every piece of work, and one answer per frame however often a camera asks.

* :class:`Admission`: a node holds at most ``capacity`` frames at a time (queued, being
  inferred, or offloaded and awaited). A request is admitted as a whole or refused as a
  whole (``Overloaded``, answered ``RESOURCE_EXHAUSTED``) after a short bounded wait (the
  node's ``admit_wait_s``), so a refused chunk leaves no frame queued behind it, and an
  admitted frame always finds room in the node's own queue (even when its offload fails and it comes back home).
* :class:`Deadline`: when the caller stops waiting (its gRPC deadline, bounded by
  ``MAX_CALL_S`` for callers that gave none). A camera's chunk is answered just before it
  (frames not done by then are answered dropped), and work whose deadline has passed is
  skipped, not computed for nobody.
* :class:`FrameLedger`: frames of camera chunks by (run, camera, frame, capture time): a
  ``Submit`` repeated after a time-out or a lost reply joins the work already running, or
  gets the answer already computed, instead of queueing the frames again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

__all__ = ["MAX_CALL_S", "REPLY_MARGIN_S", "Deadline", "Expired", "Overloaded", "Admission", "FrameLedger"]

MAX_CALL_S = 300.0  # a handler called without a deadline waits at most this long
REPLY_MARGIN_S = 0.5  # a node answers this much before the caller's deadline (the reply must still arrive)


class Expired(Exception):
    """The work's deadline passed before it started: nobody waits for its result."""


class Overloaded(Exception):
    """A request was refused as a whole: the node holds as many frames as it may."""


@dataclass
class Deadline:
    """A point on ``time.monotonic()`` after which a piece of work is no longer wanted."""

    at: float
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def within(cls, seconds: float | None) -> Deadline:
        """``seconds`` from now (None, e.g. a gRPC call without a deadline: ``MAX_CALL_S``)."""
        bound = MAX_CALL_S if seconds is None else min(max(seconds, 0.0), MAX_CALL_S)
        return cls(time.monotonic() + bound)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def answer_by(self) -> Deadline:
        """When a reply must leave to reach the caller before this deadline: a fifth of the
        time left earlier, at most ``REPLY_MARGIN_S``."""
        return Deadline(self.at - min(REPLY_MARGIN_S, 0.2 * self.remaining()))

    def extend(self, other: Deadline) -> None:
        """Someone else waits for the same work, possibly longer."""
        with self._lock:
            self.at = max(self.at, other.at)


class Admission:
    """At most ``capacity`` frames held by a node; requests take room all at once.

    Args:
        capacity: frames the node may hold (its queue size).
        name: the node's name, for messages.
    """

    def __init__(self, capacity: int, name: str):
        self.capacity, self.name = capacity, name
        self.held = 0
        self.refused = 0  # requests refused so far
        self._cond = threading.Condition()

    def admit(self, frames: int, wait_s: float) -> Callable[[], None]:
        """Reserve room for ``frames`` frames, waiting at most ``wait_s`` seconds.

        Returns:
            ``release()``, to call once per frame when it is answered.

        Raises:
            Overloaded: no room within the wait (nothing is reserved), or a request larger
                than the node could ever hold.
        """
        if frames > self.capacity:
            self.refused += 1
            raise Overloaded(f"{self.name}: a request of {frames} frames exceeds its queue of {self.capacity}")
        end = time.monotonic() + wait_s
        with self._cond:
            while self.held + frames > self.capacity:
                left = end - time.monotonic()
                if left <= 0:
                    self.refused += 1
                    raise Overloaded(f"{self.name}: overloaded ({self.held} of {self.capacity} frames held; "
                                     f"{frames} more refused)")
                self._cond.wait(left)
            self.held += frames

        def release() -> None:
            with self._cond:
                self.held -= 1
                self._cond.notify_all()

        return release


@dataclass
class _Work:
    future: Future
    deadline: Deadline


class FrameLedger:
    """Futures of camera frames by key (the node uses run, camera, frame and capture time):
    running ones and recent answers.

    Args:
        keep: answers remembered (oldest forgotten first); running work is never forgotten.
    """

    def __init__(self, keep: int = 4096):
        self.keep = keep
        self._lock = threading.Lock()
        self._work: OrderedDict[tuple, _Work] = OrderedDict()
        self.joined = 0  # frames answered by work a repeated request joined

    def claim(self, keys: list[tuple], deadline: Deadline) -> tuple[list[Future], list[int]]:
        """Futures for ``keys`` and the positions whose work the caller must start.

        A key with running work or a successful answer joins it (its deadline extended to
        the caller's); a new key, or one whose earlier work failed or expired, gets a fresh
        future the caller must resolve (or :meth:`abandon`).
        """
        futures, fresh = [], []
        with self._lock:
            for i, key in enumerate(keys):
                work = self._work.get(key)
                if work is not None and not (work.future.done() and work.future.exception() is not None):
                    work.deadline.extend(deadline)
                    self._work.move_to_end(key)
                    self.joined += 1
                else:
                    work = _Work(Future(), Deadline(deadline.at))
                    self._work[key] = work
                    fresh.append(i)
                futures.append(work.future)
            self._forget()
        return futures, fresh

    def deadline(self, key: tuple) -> Deadline:
        with self._lock:
            return self._work[key].deadline

    def abandon(self, keys: list[tuple], reason: BaseException) -> None:
        """Fail and forget fresh work that was never started (its request was refused)."""
        with self._lock:
            for key in keys:
                work = self._work.pop(key, None)
                if work is not None and not work.future.done():
                    work.future.set_exception(reason)

    def _forget(self) -> None:
        done = [k for k, w in self._work.items() if w.future.done()]
        for key in done[: max(0, len(self._work) - self.keep)]:
            del self._work[key]
