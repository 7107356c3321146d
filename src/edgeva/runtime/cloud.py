"""The cloud server (EdgeCam): the golden model behind an inference queue, whole-frame and
region-level inference, and the labelling + retraining service of continuous learning.

Besides the ``Ingest`` and ``Inference`` services every node has (a camera fails over to
the cloud when its edges are gone), the cloud answers ``Cloud.InferRegions`` (crops of the
regions an edge was unsure about) and ``Cloud.Retrain`` (label drift frames with the golden
model, fine-tune the edge's FastestDet on them, return the new weights).
"""

from __future__ import annotations

import io
import logging
import threading

import grpc
import torch

from edgeva.models import create_detector
from edgeva.runtime.config import CLOUD, ClusterConfig
from edgeva.runtime.learning import fine_tune
from edgeva.runtime.node import Node
from edgeva.runtime.rpc import pb
from edgeva.runtime.wire import BadMessage, decode_frames, detections_to_pb
from edgeva.runtime.worker import create_worker

__all__ = ["CloudNode", "build_cloud"]

log = logging.getLogger(__name__)


class CloudNode(Node):
    """The cloud: golden-model inference for edges and cameras, labelling and retraining."""

    def __init__(self, config: ClusterConfig, worker):
        super().__init__(config, config.cloud, CLOUD, worker)
        self._training = threading.Lock()  # one fine-tuning job at a time

    def services(self) -> dict[str, dict]:
        services = super().services()
        services["Cloud"] = {"InferRegions": self.infer_regions, "Retrain": self.retrain}
        return services

    def infer_regions(self, request: pb.RegionsRequest, context: grpc.ServicerContext) -> pb.InferReply:
        """Each crop inferred on its own; detections in the crop's pixels, one set per crop."""
        crops = [decode_frames(chunk)[0] for chunk in request.regions]
        if not crops:
            raise BadMessage("InferRegions: no regions")
        inferences = self.queue.infer_now(crops, timeout=context.time_remaining())
        return pb.InferReply(
            detections=[detections_to_pb(i.detections) for i in inferences],
            started=inferences[0].started, finished=inferences[-1].finished,
            model_version=inferences[-1].model_version, status=self.status(),
        )

    def retrain(self, request: pb.RetrainRequest, context: grpc.ServicerContext) -> pb.RetrainReply:
        """Label the drift frames with the golden model, fine-tune the sent FastestDet weights."""
        frames = [decode_frames(chunk)[0] for chunk in request.frames]
        if not frames:
            raise BadMessage("Retrain: no frames")
        if request.epochs < 1:
            raise BadMessage(f"Retrain: epochs={request.epochs} must be >= 1")
        model = create_detector("fastestdet")
        try:
            model.load_state_dict(torch.load(io.BytesIO(request.weights), map_location="cpu", weights_only=True))
        except Exception as exc:  # not a FastestDet state dict
            raise BadMessage(f"Retrain: weights are not a FastestDet state dict ({type(exc).__name__})") from None
        labels = [i.detections for i in self.queue.infer_now(frames, timeout=context.time_remaining())]
        with self._training:
            result = fine_tune(model, frames, labels, epochs=request.epochs, learning_rate=request.learning_rate or 5e-4)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        log.info("cloud: fine-tuned %s's model on %d frames (%d objects): loss %.3f -> %.3f in %.1f s",
                 request.origin, len(frames), result.objects, result.loss_before, result.loss_after, result.seconds)
        return pb.RetrainReply(weights=buffer.getvalue(), version=request.version + 1, labelled_objects=result.objects,
                               loss_before=result.loss_before, loss_after=result.loss_after, train_s=result.seconds)


def build_cloud(config: ClusterConfig) -> CloudNode:
    """The cloud node with its golden model (not started)."""
    return CloudNode(config, create_worker("detector", config.cloud, 0.3))
