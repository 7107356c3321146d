"""What edge nodes and the cloud have in common: an inference queue served by a worker, a
gRPC server (request handler) and the ``Ingest`` / ``Inference`` services.

A node answers a camera's chunk (``Ingest.Submit``) by decoding it and handing every frame
to :meth:`Node.process`, which the edge overrides with its offloading policy; the reply
carries one result per frame with the node's time stamps.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

import grpc
import numpy as np

from edgeva.models import Detections
from edgeva.runtime import metrics
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
        self.queue = InferenceQueue(worker, queue_size=node.queue_size, delay_factor=node.delay_factor,
                                    fps_cap=node.fps_cap, name=name)
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
    def infer_local(self, image: np.ndarray) -> Future:
        """Queue a frame on this node's own worker; resolves to an :class:`Outcome`."""
        out: Future = Future()

        def done(inference: Future) -> None:
            try:
                result = inference.result()
            except Exception as exc:
                out.set_exception(exc)
                return
            self.on_inferred([image], [result])
            out.set_result(Outcome.local(result, self.name))

        self.queue.submit(image, timeout=self.config.policy.offload_timeout_s).add_done_callback(done)
        return out

    def process(self, image: np.ndarray) -> Future:
        """Where a camera's frame goes; the base node infers everything itself."""
        return self.infer_local(image)

    def status(self) -> pb.NodeStatus:
        return pb.NodeStatus(node=self.name, queue_length=len(self.queue), service_s=self.queue.service_s,
                             model_version=self.worker.version, time=time.time())

    # -- handlers -----------------------------------------------------------------------------
    def submit(self, request: pb.ChunkRequest, context: grpc.ServicerContext) -> pb.ChunkReply:
        """A camera's chunk: every frame placed by :meth:`process`, answered together."""
        received = time.time()
        if len(request.frames) != request.chunk.frame_count or len(request.captured) != len(request.frames):
            raise BadMessage(f"chunk of {request.chunk.frame_count} frames lists {len(request.frames)} "
                             f"indices and {len(request.captured)} capture times")
        images = decode_frames(request.chunk)
        futures = [self.process(image) for image in images]
        remaining = context.time_remaining()
        wait_futures(futures, timeout=remaining)
        results = []
        for index, future in zip(request.frames, futures, strict=True):
            result = pb.FrameResult(frame=index, received=received)
            try:
                outcome: Outcome = future.result(timeout=0)
            except Exception as exc:  # the frame's own failure, e.g. a full queue: dropped, with why
                result.dropped = f"{self.name}: {type(exc).__name__}: {exc}"[:300]
            else:
                result.where, result.started, result.finished = outcome.where, outcome.started, outcome.finished
                result.model_version, result.scale, result.crf = outcome.model_version, outcome.scale, outcome.crf
                result.detections.CopyFrom(detections_to_pb(outcome.detections))
            metrics.node_frame(self.name, result.where or None)
            results.append(result)
        return pb.ChunkReply(results=results)

    def infer(self, request: pb.InferRequest, context: grpc.ServicerContext) -> pb.InferReply:
        """Frames offloaded by an edge: inferred here, answered with this node's queue state."""
        images = decode_frames(request.chunk)
        inferences = self.queue.infer_now(images, timeout=context.time_remaining())
        self.on_inferred(images, inferences)
        return pb.InferReply(
            detections=[detections_to_pb(i.detections) for i in inferences],
            started=inferences[0].started, finished=inferences[-1].finished,
            model_version=inferences[-1].model_version, status=self.status(),
        )

    def on_inferred(self, images: list[np.ndarray], inferences: list[Inference]) -> None:
        """Hook after this node's own worker inferred frames (the edge's drift collector)."""
