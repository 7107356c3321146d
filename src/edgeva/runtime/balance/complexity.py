"""Content complexity: a camera's expected work per second, from its content.

A camera whose content is busy sends more frames past its frame filter and holds more
objects, so it weighs more in the balancer. An estimator is fed, frame by frame, whether
the frame filter sent the frame and, when its result comes back, how many objects it had;
``load()`` is the expected work per second over the last ``window_s`` seconds, in frames of
inference (the load unit the balancer moves).

* ``filter-rate``: frames the filter sends per second.
* ``filter-objects``: that, times 1 + ``per_object`` x the mean objects per inferred frame
  (NMS, cloud-assisted regions and retraining grow with the objects).

NeuroMesh's own estimate (the share of tubelets its sampler keeps, or its reconstruction
error) belongs to its compression part: register it here as ``neuromesh`` when it lands.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from edgeva.registry import Registry

__all__ = ["ComplexityEstimator", "FilterRate", "FilterObjects", "ESTIMATORS", "create_estimator"]


class ComplexityEstimator:
    """Work per second of one camera over a sliding window (thread safe)."""

    def __init__(self, window_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s: must be > 0, got {window_s}")
        self.window_s, self.clock = window_s, clock
        self._sent: deque[float] = deque()  # times the filter sent a frame
        self._objects: deque[tuple[float, int]] = deque()  # (time, objects) per inferred frame
        self._start = clock()
        self._lock = threading.Lock()

    def frame(self, sent: bool) -> None:
        """A frame was read; ``sent``: the filter sent it (else it was reused)."""
        if sent:
            with self._lock:
                self._sent.append(self.clock())

    def result(self, objects: int) -> None:
        """An inferred frame's result came back with ``objects`` detections."""
        with self._lock:
            self._objects.append((self.clock(), objects))

    def _trim(self, now: float) -> None:
        while self._sent and self._sent[0] < now - self.window_s:
            self._sent.popleft()
        while self._objects and self._objects[0][0] < now - self.window_s:
            self._objects.popleft()

    def sent_rate(self) -> float:
        now = self.clock()
        with self._lock:
            self._trim(now)
            span = min(self.window_s, max(now - self._start, 1e-3))
            return len(self._sent) / span

    def mean_objects(self) -> float:
        with self._lock:
            self._trim(self.clock())
            return sum(n for _, n in self._objects) / len(self._objects) if self._objects else 0.0

    def load(self) -> float:
        raise NotImplementedError


class FilterRate(ComplexityEstimator):
    def load(self) -> float:
        return self.sent_rate()


class FilterObjects(ComplexityEstimator):
    def __init__(self, window_s: float = 2.0, per_object: float = 0.05, clock: Callable[[], float] = time.monotonic):
        super().__init__(window_s, clock)
        self.per_object = per_object

    def load(self) -> float:
        return self.sent_rate() * (1.0 + self.per_object * self.mean_objects())


ESTIMATORS: Registry[Callable[..., ComplexityEstimator]] = Registry("complexity estimator")
ESTIMATORS.register("filter-rate")(FilterRate)
ESTIMATORS.register("filter-objects")(FilterObjects)


def create_estimator(name: str, **options) -> ComplexityEstimator:
    return ESTIMATORS[name](**options)
