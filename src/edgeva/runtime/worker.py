"""Inference on a node: the worker interface, its registry, and the standalone worker queue.

An :class:`InferenceWorker` turns frames into detections. The default one (``detector``)
wraps an edgeva detector; another runner, e.g. a shared-stem multi-application runner,
registers itself with :func:`register_worker` and is picked by ``edges[].worker``.

:class:`InferenceQueue` is EdgeCam's standalone worker: one thread that takes frames from a
bounded queue and runs the worker on them. It also emulates a node's compute budget on a
shared machine: each inference is stretched to ``delay_factor`` times its measured time
and to at least ``1 / fps_cap`` seconds, so three "edges" on two cores can differ in speed.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from edgeva.models import Detections, Detector
from edgeva.registry import Registry
from edgeva.runtime import metrics
from edgeva.runtime.admission import Deadline, Expired

if TYPE_CHECKING:
    from edgeva.runtime.config import NodeConfig

__all__ = [
    "InferenceWorker", "Retrainable", "DetectorWorker", "WORKERS", "register_worker", "create_worker", "list_workers",
    "Inference", "InferenceQueue", "QueueFull",
]

log = logging.getLogger(__name__)


@runtime_checkable
class InferenceWorker(Protocol):
    """What a node's standalone worker runs."""

    version: int  # model version; goes up with every hot swap

    def infer(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections for RGB uint8 frames (any sizes), one per frame."""
        ...


@runtime_checkable
class Retrainable(Protocol):
    """A worker whose weights continuous learning may replace while it serves."""

    version: int

    def infer(self, images: list[np.ndarray]) -> list[Detections]: ...

    def weights(self) -> bytes: ...

    def candidate(self, blob: bytes) -> Detector:
        """A second model with these weights, not serving yet (to be checked, then swapped in)."""
        ...

    def swap_in(self, model: Detector, version: int) -> None: ...

    def load_weights(self, blob: bytes, version: int) -> None: ...


class DetectorWorker:
    """An edgeva detector as an inference worker; weights can be hot-swapped.

    Args:
        model: detector name (``fastestdet``, ``yolox-nano``).
        score_threshold: keep objects at least this confident.
        input_size: detector input (height, width), or None for the model's default.
        detector: an already built detector of that name (else one is built).
        device: resolved torch device (``cpu``, ``cuda:N``) the detector and its candidates run on.
    """

    def __init__(self, model: str, *, score_threshold: float = 0.3, input_size: tuple[int, int] | None = None,
                 detector: Detector | None = None, device: str = "cpu"):
        from edgeva.models import create_detector

        self.model_name = model
        self._kwargs: dict = {"score_threshold": score_threshold, "device": device}
        if input_size is not None:
            self._kwargs["input_size"] = input_size
        self.detector = detector if detector is not None else create_detector(model, **self._kwargs)
        self.version = 0

    def infer(self, images: list[np.ndarray]) -> list[Detections]:
        detector = self.detector  # one reference per call: a swap never splits a batch
        return [detector.detect([image])[0] for image in images]

    def weights(self) -> bytes:
        import torch

        buffer = io.BytesIO()
        torch.save(self.detector.state_dict(), buffer)
        return buffer.getvalue()

    def candidate(self, blob: bytes) -> Detector:
        """A second model with the new weights (the serving one is untouched).

        Raises:
            ModelError: ``blob`` is not a state dict of this model.
        """
        import torch

        from edgeva.errors import ModelError
        from edgeva.models import create_detector

        fresh = create_detector(self.model_name, **self._kwargs)
        try:
            fresh.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
        except Exception as exc:  # a truncated or foreign blob
            raise ModelError(f"new {self.model_name} weights do not load ({type(exc).__name__})") from None
        fresh.eval()
        return fresh

    def swap_in(self, model: Detector, version: int) -> None:
        """Serve ``model`` from the next inference on (requests keep flowing)."""
        self.detector, self.version = model, version

    def load_weights(self, blob: bytes, version: int) -> None:
        """Build a second model with the new weights, then swap it in."""
        self.swap_in(self.candidate(blob), version)


WorkerFactory = Callable[["NodeConfig", float], InferenceWorker]
WORKERS: Registry[WorkerFactory] = Registry("inference worker")
register_worker = WORKERS.register  # @register_worker(name): factory(node_config, score_threshold) -> InferenceWorker
list_workers = WORKERS.names


def create_worker(name: str, node: NodeConfig, score_threshold: float, *, device: str = "cpu") -> InferenceWorker:
    """The worker ``name`` for ``node``, its models on ``device`` (resolved: ``cpu`` or ``cuda:N``)."""
    return WORKERS[name](node.model_copy(update={"device": device}), score_threshold)


@register_worker("detector")
def _detector_worker(node: NodeConfig, score_threshold: float) -> InferenceWorker:
    return DetectorWorker(node.model, score_threshold=score_threshold, input_size=node.input_size, device=node.device)


@register_worker("apps")
def _apps_worker(node: NodeConfig, score_threshold: float) -> InferenceWorker:
    # Mainstream's shared-stem multi-app runner; imported here so configs can name it.
    from edgeva.mainstream.runner import AppsWorker

    folder, budget = getattr(node, "apps_dir", None), getattr(node, "apps_budget_ms", None)
    if folder is None or budget is None:
        from edgeva.errors import ConfigError

        raise ConfigError(f"{getattr(node, 'name', 'node')}: worker apps needs apps_dir and apps_budget_ms")
    return AppsWorker(str(folder), budget, getattr(node, "apps_scheduler", "mainstream"))


class QueueFull(Exception):
    """The inference queue stayed full for the whole wait."""


@dataclass(frozen=True)
class Inference:
    detections: Detections
    started: float  # epoch seconds
    finished: float
    model_version: int


class InferenceQueue:
    """A bounded queue of frames served by one thread (EdgeCam's standalone worker).

    Args:
        worker: what runs on each frame.
        queue_size: frames that may wait; ``submit`` blocks while it is full.
        delay_factor: stretch each inference to this many times its measured time.
        fps_cap: and to at least ``1 / fps_cap`` seconds.
        name: for logs and thread names.
    """

    def __init__(self, worker: InferenceWorker, *, queue_size: int = 64, delay_factor: float = 1.0,
                 fps_cap: float | None = None, name: str = "worker"):
        self.worker = worker
        self.delay_factor, self.fps_cap, self.name = delay_factor, fps_cap, name
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._busy = 0
        self._lock = threading.Lock()
        self.service_s = 0.0  # smoothed seconds per frame, emulated budget included
        self.served = 0
        self.expired = 0  # frames skipped because their deadline passed while queued
        self._arrivals: deque[float] = deque()  # monotonic times of the frames queued in the last ARRIVAL_WINDOW_S
        self._thread = threading.Thread(target=self._run, name=f"{name}-infer", daemon=True)
        self._stopping = threading.Event()
        self._thread.start()

    def __len__(self) -> int:
        """Frames waiting or being inferred (the queue length policies compare)."""
        with self._lock:
            return self._queue.qsize() + self._busy

    ARRIVAL_WINDOW_S = 1.0  # the arrival rate counts frames queued this long ago at most

    @property
    def arrival_fps(self) -> float:
        """Frames queued per second over the last :attr:`ARRIVAL_WINDOW_S` (the work arriving)."""
        with self._lock:
            self._trim_arrivals(time.monotonic())
            return len(self._arrivals) / self.ARRIVAL_WINDOW_S

    def _trim_arrivals(self, now: float) -> None:
        while self._arrivals and self._arrivals[0] < now - self.ARRIVAL_WINDOW_S:
            self._arrivals.popleft()

    def submit(self, image: np.ndarray, *, timeout: float | None = None, deadline: Deadline | None = None) -> Future:
        """Queue a frame; the future resolves to an :class:`Inference`, or fails with
        :class:`~edgeva.runtime.admission.Expired` if ``deadline`` passes before it starts.

        Raises:
            QueueFull: the queue stayed full for ``timeout`` seconds.
        """
        future: Future = Future()
        try:
            self._queue.put((image, future, deadline), timeout=timeout)
        except queue.Full:
            raise QueueFull(f"{self.name}: inference queue full ({self._queue.maxsize} frames)") from None
        with self._lock:
            now = time.monotonic()
            self._arrivals.append(now)
            self._trim_arrivals(now)
        return future

    def infer_now(self, images: list[np.ndarray], *, timeout: float | None = None,
                  deadline: Deadline | None = None) -> list[Inference]:
        """Queue frames and wait for all of them (at most ``timeout`` seconds, or until ``deadline``).

        Raises:
            TimeoutError: not all answered in time (the rest are skipped once the deadline passes).
        """
        if deadline is not None:
            timeout = deadline.remaining() if timeout is None else min(timeout, deadline.remaining())
        futures = [self.submit(image, timeout=timeout, deadline=deadline) for image in images]
        end = None if timeout is None else time.monotonic() + timeout
        return [f.result(timeout=None if end is None else max(0.0, end - time.monotonic())) for f in futures]

    def _budget(self, measured: float) -> float:
        target = measured * self.delay_factor
        if self.fps_cap:
            target = max(target, 1.0 / self.fps_cap)
        return target

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                image, future, deadline = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                self._busy = 1
            try:
                if not future.set_running_or_notify_cancel():
                    continue
                if deadline is not None and deadline.expired():  # nobody waits for it any more
                    self.expired += 1
                    future.set_exception(Expired(f"{self.name}: deadline passed while queued"))
                    continue
                started = time.time()
                t0 = time.perf_counter()
                try:
                    detections = self.worker.infer([image])[0]
                except Exception as exc:  # a bad frame must not kill the worker thread
                    log.exception("%s: inference failed", self.name)
                    future.set_exception(exc)
                    continue
                measured = time.perf_counter() - t0
                budget = self._budget(measured)
                if budget > measured:
                    time.sleep(budget - measured)
                metrics.inference_done(self.name, measured, budget)
                self.service_s = budget if self.served == 0 else 0.8 * self.service_s + 0.2 * budget
                self.served += 1
                future.set_result(Inference(detections, started, time.time(), self.worker.version))
            finally:
                with self._lock:
                    self._busy = 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the frame in progress; frames still queued fail with ``QueueFull``."""
        self._stopping.set()
        self._thread.join(timeout)
        while True:
            try:
                _, future, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            if future.set_running_or_notify_cancel():
                future.set_exception(QueueFull(f"{self.name}: stopped"))
