"""What edge nodes and the cloud have in common: an inference queue served by a worker, a
gRPC server (request handler) and the ``Ingest`` / ``Inference`` services.

A node answers a camera's chunk (``Ingest.Submit``) by decoding it and handing every frame
to :meth:`Node.process`, which the edge overrides with its offloading policy; the reply
carries one result per frame with the node's time stamps. Requests are admitted as a whole
or refused as a whole, every piece of work carries the caller's deadline, and a repeated
``Submit`` of the same frames joins the work already done or running (:mod:`.admission`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import grpc
import numpy as np

from edgeva.models import Detections
from edgeva.runtime import metrics
from edgeva.runtime.admission import Admission, Deadline, FrameLedger, Overloaded
from edgeva.runtime.config import ClusterConfig, NodeConfig
from edgeva.runtime.rpc import add_service, make_server, pb
from edgeva.runtime.wire import BadMessage, decode_frames, detections_to_pb
from edgeva.runtime.worker import Inference, InferenceQueue, InferenceWorker

__all__ = ["Outcome", "Node"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Where and how one frame was inferred."""

    detections: Detections
    where: str
    started: float
    finished: float
    model_version: int
    scale: float = 1.0
    crf: int = 0

    @classmethod
    def local(cls, inference: Inference, where: str) -> Outcome:
        return cls(inference.detections, where, inference.started, inference.finished, inference.model_version)


class Node:
    """Base of :class:`~edgeva.runtime.edge.EdgeNode` and :class:`~edgeva.runtime.cloud.CloudNode`.

    Args:
        config: the whole cluster's config.
        node: this node's section of it.
        name: "edge-<id>" or "cloud".
        worker: the inference worker (already built: loading a model takes seconds).
    """

    def __init__(self, config: ClusterConfig, node: NodeConfig, name: str, worker: InferenceWorker):
        self.config, self.node, self.name = config, node, name
        self.worker = worker
        # Admitted frames never exceed the queue's bound, so queueing an admitted frame never blocks.
        self.admission = Admission(node.queue_size, name)
        self.queue = InferenceQueue(worker, queue_size=node.queue_size, delay_factor=node.delay_factor,
                                    fps_cap=node.fps_cap, name=name)
        self.ledger = FrameLedger(keep=max(1024, 16 * node.queue_size))
        self.server: grpc.Server | None = None
        self.port = 0
        self.stopping = threading.Event()  # background loops end when set
        self.stopped = threading.Event()  # set once the server and worker are down

    # -- lifecycle --------------------------------------------------------------------------
    def services(self) -> dict[str, dict]:
        """gRPC services this node serves: ``{service: {method: handler(request, context)}}``."""
        return {
            "Ingest": {"Submit": self.submit},
            "Inference": {"Infer": self.infer, "Status": lambda request, context: self.status()},
        }

    def start(self) -> int:
        """Serve; returns the bound port."""

        def add(server: grpc.Server) -> None:
            for service, handlers in self.services().items():
                add_service(server, service, handlers)

        self.server, self.port = make_server(self.node, self.config.security, add, max_workers=32)
        log.info("%s serving on %s:%d (model %s)", self.name, self.node.listen or self.node.host, self.port, self.node.model)
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        """Finish calls in progress (up to ``grace`` seconds), then stop the worker."""
        self.stopping.set()
        if self.server is not None:
            self.server.stop(grace).wait()
        self.release()
        self.queue.stop()
        self.stopped.set()

    def release(self) -> None:
        """Hook: free what the node holds besides its server and worker (after the server stopped)."""

    def wait(self) -> None:
        """Block until :meth:`stop` has finished."""
        self.stopped.wait()

    # -- inference --------------------------------------------------------------------------
    def admit(self, frames: int, deadline: Deadline) -> Callable[[], None]:
        """Room for ``frames`` frames (see :class:`~.admission.Admission`); returns ``release``.

        Raises:
            Overloaded: refused as a whole.
        """
        return self.admission.admit(frames, min(self.node.admit_wait_s, deadline.remaining()))

    def infer_local(self, image: np.ndarray, deadline: Deadline | None = None) -> Future:
        """Queue a frame on this node's own worker; resolves to an :class:`Outcome` (or fails
        with ``Expired`` if ``deadline`` passes before it starts)."""
        out: Future = Future()

        def done(inference: Future) -> None:
            try:
                result = inference.result()
            except Exception as exc:
                out.set_exception(exc)
                return
            self.on_inferred([image], [result])
            out.set_result(Outcome.local(result, self.name))

        self.queue.submit(image, timeout=self.config.policy.offload_timeout_s, deadline=deadline).add_done_callback(done)
        return out

    def process(self, image: np.ndarray, deadline: Deadline | None = None) -> Future:
        """Where a camera's frame goes; the base node infers everything itself."""
        return self.infer_local(image, deadline)

    def status(self) -> pb.NodeStatus:
        return pb.NodeStatus(node=self.name, queue_length=len(self.queue), service_s=self.queue.service_s,
                             model_version=self.worker.version, time=time.time(), arrival_fps=self.queue.arrival_fps)

    # -- handlers -----------------------------------------------------------------------------
    def _decode(self, chunk: pb.Chunk) -> list[np.ndarray]:
        return decode_frames(chunk, max_pixels=self.config.security.max_chunk_pixels)

    def submit(self, request: pb.ChunkRequest, context: grpc.ServicerContext) -> pb.ChunkReply:
        """A camera's chunk: every frame placed by :meth:`process`, answered together.

        Frames this node already answered or is working on for the same (run, camera) are
        joined, not queued again; the rest are admitted together or the call is refused
        (``RESOURCE_EXHAUSTED``) with nothing queued. The reply leaves just before the call's
        deadline at the latest (so the caller gets it): frames not answered by then are
        answered dropped, and their work is skipped if it has not started; a frame that
        fails is answered dropped too, with the reason.
        """
        received = time.time()
        if len(request.frames) != request.chunk.frame_count or len(request.captured) != len(request.frames):
            raise BadMessage(f"chunk of {request.chunk.frame_count} frames lists {len(request.frames)} "
                             f"indices and {len(request.captured)} capture times")
        if len(set(request.frames)) != len(request.frames):
            raise BadMessage(f"chunk lists frame indices more than once: {list(request.frames)}")
        deadline = Deadline.within(context.time_remaining()).answer_by()
        # A frame is named by its camera's run, index and capture time: a retry re-sends the
        # same request; a camera restarted under the same run id has new capture times.
        keys = [(request.run, request.camera, int(f), t) for f, t in zip(request.frames, request.captured, strict=True)]
        futures, fresh = self.ledger.claim(keys, deadline)
        if fresh:
            self._start(request, [keys[i] for i in fresh], [futures[i] for i in fresh], fresh, deadline)
        wait_futures(futures, timeout=deadline.remaining())
        results = [self._result(index, future, received) for index, future in zip(request.frames, futures, strict=True)]
        for result in results:
            metrics.node_frame(self.name, result.where or None)
        return pb.ChunkReply(results=results)

    def _start(self, request: pb.ChunkRequest, keys: list[tuple], outs: list[Future], positions: list[int],
               deadline: Deadline) -> None:
        """Decode the chunk and start the work of its fresh frames (admitted together)."""
        try:
            images = self._decode(request.chunk)
            release = self.admit(len(keys), deadline)
        except (BadMessage, Overloaded) as exc:
            self.ledger.abandon(keys, exc)
            raise
        for key, out, position in zip(keys, outs, positions, strict=True):
            try:
                work = self.process(images[position], self.ledger.deadline(key))
            except Exception as exc:  # placing the frame failed: it is answered dropped
                work = Future()
                work.set_exception(exc)
            work.add_done_callback(lambda done, out=out: _settle(out, done, release))

    def _result(self, index: int, future: Future, received: float) -> pb.FrameResult:
        result = pb.FrameResult(frame=index, received=received)
        if not future.done():
            result.dropped = f"{self.name}: no answer before the call's deadline"
            return result
        try:
            outcome: Outcome = future.result(timeout=0)
        except Exception as exc:  # the frame's own failure: dropped, with why
            result.dropped = f"{self.name}: {type(exc).__name__}: {exc}"[:300]
            return result
        result.where, result.started, result.finished = outcome.where, outcome.started, outcome.finished
        result.model_version, result.scale, result.crf = outcome.model_version, outcome.scale, outcome.crf
        result.detections.CopyFrom(detections_to_pb(outcome.detections))
        return result

    def infer(self, request: pb.InferRequest, context: grpc.ServicerContext) -> pb.InferReply:
        """Frames offloaded by an edge: admitted as a whole (or refused), inferred here,
        answered with this node's queue state."""
        deadline = Deadline.within(context.time_remaining())
        images = self._decode(request.chunk)
        inferences = self.infer_admitted(images, deadline)
        self.on_inferred(images, inferences)
        return pb.InferReply(
            detections=[detections_to_pb(i.detections) for i in inferences],
            started=inferences[0].started, finished=inferences[-1].finished,
            model_version=inferences[-1].model_version, status=self.status(),
        )

    def infer_admitted(self, images: list[np.ndarray], deadline: Deadline) -> list[Inference]:
        """Admit ``images`` together, infer them on this node's queue, wait (bounded).

        Raises:
            Overloaded: refused as a whole; TimeoutError or Expired: not done by ``deadline``.
        """
        release = self.admit(len(images), deadline)
        futures = [self.queue.submit(image, deadline=deadline) for image in images]
        for future in futures:
            future.add_done_callback(lambda _: release())
        return [future.result(timeout=deadline.remaining()) for future in futures]

    def on_inferred(self, images: list[np.ndarray], inferences: list[Inference]) -> None:
        """Hook after this node's own worker inferred frames (the edge's drift collector)."""


def _settle(out: Future, done: Future, release) -> None:
    """Copy a frame's result into the ledger's future and give its room back."""
    release()
    if out.done():
        return
    exc = done.exception()
    if exc is None:
        out.set_result(done.result())
    else:
        out.set_exception(exc)
