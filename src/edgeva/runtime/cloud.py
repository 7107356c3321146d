"""The cloud server (EdgeCam): the golden model behind an inference queue, whole-frame and
region-level inference, and the labelling + retraining service of continuous learning.

Besides the ``Ingest`` and ``Inference`` services every node has (a camera fails over to
the cloud when its edges are gone), the cloud answers ``Cloud.InferRegions`` (crops of the
regions an edge was unsure about), ``Cloud.Retrain`` (label drift frames with the golden
model, fine-tune the edge's FastestDet on them, return the new weights) and
``Cloud.AdaptSelector`` (an ``accmpeg`` camera's high-quality frame: AccGrad with the golden
model, the camera's selector head fine-tuned on its frames so far, the weights returned;
:mod:`edgeva.accmpeg.adapt`).
"""

from __future__ import annotations

import io
import logging
import threading
import time

import grpc
import torch

from edgeva.errors import EdgevaError
from edgeva.models import create_detector
from edgeva.runtime.admission import Deadline, Overloaded
from edgeva.runtime.config import CLOUD, MAX_EPOCHS, MAX_LEARNING_RATE, ClusterConfig
from edgeva.runtime.learning import fine_tune
from edgeva.runtime.node import Node
from edgeva.runtime.rpc import pb
from edgeva.runtime.wire import BadMessage, detections_to_pb
from edgeva.runtime.worker import DetectorWorker, create_worker

__all__ = ["CloudNode", "build_cloud", "MAX_RETRAIN_FRAMES"]

log = logging.getLogger(__name__)

MAX_RETRAIN_FRAMES = 256  # most drift frames one Retrain call may send


class CloudNode(Node):
    """The cloud: golden-model inference for edges and cameras, labelling and retraining."""

    def __init__(self, config: ClusterConfig, worker):
        super().__init__(config, config.cloud, CLOUD, worker)
        self._training = threading.Lock()  # one fine-tuning job at a time
        self._selectors: dict[tuple[str, int], object] = {}  # (run, camera) -> HeadServer
        self._accgrad_model = None  # the golden model's own instance for AccGrad (gradients), built on first use

    def services(self) -> dict[str, dict]:
        services = super().services()
        services["Cloud"] = {"InferRegions": self.infer_regions, "Retrain": self.retrain, "AdaptSelector": self.adapt_selector}
        return services

    def infer_regions(self, request: pb.RegionsRequest, context: grpc.ServicerContext) -> pb.InferReply:
        """Each crop inferred on its own; detections in the crop's pixels, one set per crop."""
        deadline = Deadline.within(context.time_remaining())
        crops = [self._decode(chunk)[0] for chunk in request.regions]
        if not crops:
            raise BadMessage("InferRegions: no regions")
        inferences = self.infer_admitted(crops, deadline)
        return pb.InferReply(
            detections=[detections_to_pb(i.detections) for i in inferences],
            started=inferences[0].started, finished=inferences[-1].finished,
            model_version=inferences[-1].model_version, status=self.status(),
        )

    def _label(self, frames: list, deadline: Deadline) -> list:
        """Golden detections of ``frames``, in slices the queue can admit."""
        step = self.admission.capacity
        return [i.detections for start in range(0, len(frames), step)
                for i in self.infer_admitted(frames[start : start + step], deadline)]

    def retrain(self, request: pb.RetrainRequest, context: grpc.ServicerContext) -> pb.RetrainReply:
        """Label the drift frames with the golden model, fine-tune the sent FastestDet weights."""
        origin = request.origin or "an unnamed node"
        if not 1 <= len(request.frames) <= MAX_RETRAIN_FRAMES:
            raise BadMessage(f"Retrain from {origin}: {len(request.frames)} frames outside 1..{MAX_RETRAIN_FRAMES}")
        if not 1 <= request.epochs <= MAX_EPOCHS:
            raise BadMessage(f"Retrain from {origin}: epochs={request.epochs} outside 1..{MAX_EPOCHS}")
        rate = request.learning_rate or 5e-4
        if not 0 < rate <= MAX_LEARNING_RATE:  # also false for NaN
            raise BadMessage(f"Retrain from {origin}: learning_rate={rate} outside (0, {MAX_LEARNING_RATE}]")
        deadline = Deadline.within(context.time_remaining())
        frames = [self._decode(chunk)[0] for chunk in request.frames]
        device = self.worker.detector.device if isinstance(self.worker, DetectorWorker) else "cpu"
        model = create_detector("fastestdet", device=str(device))  # fine-tuned where the golden model runs
        try:
            model.load_state_dict(torch.load(io.BytesIO(request.weights), map_location="cpu", weights_only=True))
        except Exception as exc:  # not a FastestDet state dict
            raise BadMessage(f"Retrain from {origin}: weights are not a FastestDet state dict ({type(exc).__name__})") from None
        labels = self._label(frames, deadline)
        if not self._training.acquire(timeout=deadline.remaining()):
            raise Overloaded(f"{self.name}: another retraining round is still running")
        try:
            result = fine_tune(model, frames, labels, epochs=request.epochs, learning_rate=rate)
        finally:
            self._training.release()
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        log.info("cloud: fine-tuned %s's model on %d frames (%d objects): loss %.3f -> %.3f in %.1f s",
                 origin, len(frames), result.objects, result.loss_before, result.loss_after, result.seconds)
        return pb.RetrainReply(weights=buffer.getvalue(), version=request.version + 1, labelled_objects=result.objects,
                               loss_before=result.loss_before, loss_after=result.loss_after, train_s=result.seconds)


    def _head_server(self, run: str, camera_id: int):
        """The (run, camera)'s selector head on the server side, created on its first frame."""
        from edgeva.accmpeg.adapt import AdaptOptions, HeadServer
        from edgeva.accmpeg.selector import load_selector

        key = (run, camera_id)
        if key not in self._selectors:
            try:
                encoding = self.config.camera(camera_id).encoding
            except EdgevaError:
                raise BadMessage(f"AdaptSelector: no camera {camera_id} in the cluster config") from None
            if encoding.scheme != "accmpeg" or not encoding.adapt_every:
                raise BadMessage(f"AdaptSelector: camera {camera_id} does not adapt a selector (encoding.adapt_every)")
            if self._accgrad_model is None:
                self._accgrad_model = create_detector(self.node.model)
            selector = load_selector(encoding.checkpoint)
            self._selectors[key] = HeadServer(selector, self._accgrad_model, AdaptOptions(every=encoding.adapt_every))
        return self._selectors[key]

    def adapt_selector(self, request: pb.SelectorRequest, context: grpc.ServicerContext) -> pb.SelectorReply:
        """One adaptation round for a camera's selector: its frame's AccGrad, the head fine-tuned."""
        deadline = Deadline.within(context.time_remaining())
        frames = self._decode(request.frame)
        if len(frames) != 1:
            raise BadMessage(f"AdaptSelector: {len(frames)} frames, expected one")
        if not self._training.acquire(timeout=deadline.remaining()):
            raise Overloaded(f"{self.name}: another training job is still running")
        try:
            server = self._head_server(request.run, request.camera)
            start = time.perf_counter()
            weights = server.adapt(frames[0])
            seconds = time.perf_counter() - start
        finally:
            self._training.release()
        log.info("cloud: adapted camera %d's selector (round %d) in %.1f s", request.camera, server.rounds, seconds)
        return pb.SelectorReply(weights=weights, round=server.rounds, train_s=seconds)


def build_cloud(config: ClusterConfig) -> CloudNode:
    """The cloud node with its golden model on its ``device`` (not started).

    Raises:
        ConfigError: the cloud's ``device`` is a GPU torch does not see here.
    """
    return CloudNode(config, create_worker("detector", config.cloud, 0.3, device=config.device(CLOUD)))
