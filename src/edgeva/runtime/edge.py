"""An edge node (EdgeCam): request handler, standalone worker, decision engine, offloading
workers, info updater, drift collector and retraining worker.

Each frame of a camera's chunk is placed by the offloading policy (:mod:`.policy`): on this
edge's own queue, or through the bounded offloading pool to another edge or the cloud, as a
single intra-coded frame whose resolution and CRF :class:`~.policy.OffloadQuality` picks
from the target's link and queue. An offload that fails falls back to this edge, so a dead
peer costs time, not frames. Under ``edge-cloud-assisted`` the unsure regions of the edge's
result are cropped, re-inferred by the cloud and merged in.

With retraining on, every window of locally inferred frames yields its least confident
frames; the retraining worker sends them and the current weights to the cloud, which labels
them with the golden model and fine-tunes. The new weights are checked on the edge's
validation set (every n-th inferred frame, never trained on, labelled by the cloud's golden
model) and swapped in between two inferences only if F1 there does not drop; a refused
update is recorded with both F1 values, and the edge keeps serving its model.

Every piece of work carries the deadline of the camera's call (:mod:`.admission`): an
offload that would start after it is skipped, and an offload's own call never outlives it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from sqlalchemy.orm import sessionmaker

from edgeva.errors import EdgevaError
from edgeva.models import Detections
from edgeva.runtime import metrics
from edgeva.runtime.admission import Deadline, Expired
from edgeva.runtime.config import CLOUD, ClusterConfig, RetrainConfig
from edgeva.runtime.learning import DriftCollector, GateResult, ValidationSet, gate_update
from edgeva.runtime.node import Node, Outcome
from edgeva.runtime.policy import ClusterView, EdgeCloudAssisted, OffloadQuality, create_policy
from edgeva.runtime.rpc import Peer, RemoteError, pb
from edgeva.runtime.store import open_store, record_model_update
from edgeva.runtime.wire import chunk_to_pb, detections_from_pb, encode_frame
from edgeva.runtime.worker import Inference, InferenceWorker, Retrainable, create_worker
from edgeva.video import encode_chunk

__all__ = ["EdgeNode", "regions_of", "build_edge"]

log = logging.getLogger(__name__)

MAX_REGIONS = 6  # regions of one frame sent to the cloud; more are merged into their bounding box
RETRAIN_DRAIN_S = 60.0  # on stop, how long a retraining round in progress may still take


def regions_of(dets: Detections, frame_size: tuple[int, int], *, margin: float = 0.25, min_side: int = 48) -> list[tuple[int, int, int, int]]:
    """Crop rectangles ``(x1, y1, x2, y2)`` around boxes: each widened by ``margin`` of its size
    (at least ``min_side`` pixels a side), overlapping ones merged, even-sized, inside the frame."""
    height, width = frame_size
    rects = []
    for x1, y1, x2, y2 in dets.boxes.tolist():
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w = max((x2 - x1) * (1 + 2 * margin), min_side) / 2
        half_h = max((y2 - y1) * (1 + 2 * margin), min_side) / 2
        rects.append([max(0.0, cx - half_w), max(0.0, cy - half_h), min(width, cx + half_w), min(height, cy + half_h)])
    merged = True
    while merged:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    rects[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    if len(rects) > MAX_REGIONS:
        rects = [[min(r[0] for r in rects), min(r[1] for r in rects), max(r[2] for r in rects), max(r[3] for r in rects)]]
    out = []
    for x1, y1, x2, y2 in rects:
        x1, y1 = int(x1) // 2 * 2, int(y1) // 2 * 2
        x2, y2 = min(width, -(-int(np.ceil(x2)) // 2) * 2), min(height, -(-int(np.ceil(y2)) // 2) * 2)
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            out.append((x1, y1, x2, y2))
    return out


class EdgeNode(Node):
    """One edge node.

    Args:
        config: the cluster config.
        edge_id: which of ``config.edges`` this is.
        run_id: the run that model updates are recorded under.
        worker: its inference worker (built by :func:`build_edge` from the config).
    """

    def __init__(self, config: ClusterConfig, edge_id: int, run_id: str, worker: InferenceWorker):
        edge = config.edge(edge_id)
        super().__init__(config, edge, edge.name, worker)
        self.run_id = run_id
        self.policy = create_policy(config.policy)
        others = [e for e in config.edges if e.id != edge_id]
        self.view = ClusterView(self.name, [e.name for e in others], lambda: len(self.queue), lambda: self.queue.service_s)
        self.peers = {e.name: Peer(e.name, e.address, config.security, e.link.as_link()) for e in others}
        self.peers[CLOUD] = Peer(CLOUD, config.cloud.address, config.security, config.cloud.link.as_link())
        self.offload_quality = OffloadQuality(config.policy.latency_budget_ms / 1000)
        self.offload_pool = ThreadPoolExecutor(edge.offload_workers, thread_name_prefix=f"{self.name}-offload")
        self._threads = [threading.Thread(target=self._update_info, name=f"{self.name}-info", daemon=True)]
        retraining = config.retraining
        self.drift: DriftCollector | None = None
        self.validation = ValidationSet(retraining.validation_frames, retraining.validation_every)
        self._drift_sets: queue.Queue = queue.Queue(maxsize=1)
        self._round_running = threading.Event()
        self.rounds = 0  # retraining rounds finished (updates swapped in or refused)
        self.refused = 0  # updates the validation gate refused
        self._last_version = worker.version  # versions are never reused, refused ones included
        if retraining.enabled:
            if isinstance(worker, Retrainable):
                self.drift = DriftCollector(retraining.window, retraining.frames)
                self._threads.append(threading.Thread(target=self._retrain, name=f"{self.name}-retrain", daemon=True))
            else:
                log.warning("%s: worker %s cannot be retrained; retraining stays off", self.name, type(worker).__name__)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> int:
        port = super().start()
        for thread in self._threads:
            thread.start()
        return port

    def release(self) -> None:
        if self._round_running.is_set():  # a fine-tuned model on its way is worth waiting for
            log.info("%s: waiting up to %.0f s for the retraining round in progress", self.name, RETRAIN_DRAIN_S)
            self._threads[-1].join(RETRAIN_DRAIN_S)
        self.offload_pool.shutdown(wait=False, cancel_futures=True)
        for peer in self.peers.values():
            peer.close()

    # -- the decision engine ---------------------------------------------------------------
    def process(self, image: np.ndarray, deadline: Deadline | None = None) -> Future:
        deadline = deadline or Deadline.within(None)
        target = self.policy.place(self.view)
        if target != self.name:
            self.view.sent(target)
            return self.offload_pool.submit(self._offload, target, image, deadline)
        local = self.infer_local(image, deadline)
        return self._then_assist(image, local, deadline) if self.policy.cloud_assist else local

    def _then_assist(self, image: np.ndarray, local: Future, deadline: Deadline) -> Future:
        """The edge's result, then :meth:`_assist` on an offloading thread."""
        out: Future = Future()

        def copy(done: Future) -> None:
            if done.exception() is None:
                out.set_result(done.result())
            else:
                out.set_exception(done.exception())

        def chain(done: Future) -> None:
            if done.exception() is not None:
                copy(done)
                return
            try:
                self.offload_pool.submit(self._assist, image, done.result(), deadline).add_done_callback(copy)
            except RuntimeError:  # the pool is shut down: the edge is stopping, its own result stands
                copy(done)

        local.add_done_callback(chain)
        return out

    def _send_frame(self, target: str, image: np.ndarray) -> tuple[pb.Chunk, float, int]:
        peer = self.peers[target]
        pixels = image.shape[0] * image.shape[1]
        scale, crf = self.offload_quality.choose(pixels, peer.link.link if peer.link else None, self.view.wait_s(target))
        chunk = encode_frame(image, scale=scale, crf=crf)
        self.offload_quality.observe(crf, sum(len(p.data) for p in chunk.packets), chunk.width * chunk.height)
        return chunk, scale, crf

    def _ask(self, target: str, service: str, method: str, request: Any, fallback: str, deadline: Deadline) -> Any | None:
        """Call another node (within ``deadline``); its reply's queue state updates the view.
        On failure: log what happens instead (``fallback``), mark the node down if it is
        unreachable, return None."""
        timeout = min(self.config.policy.offload_timeout_s, deadline.remaining())
        try:
            reply = self.peers[target].call(service, method, request, timeout=max(timeout, 0.01))
        except RemoteError as exc:
            metrics.offload(self.name, target, method, ok=False)
            log.warning("%s; %s", exc, fallback)
            if exc.retryable:
                self.view.mark_down(target)
            return None
        self.view.report(target, reply.status.queue_length, reply.status.service_s)
        metrics.offload(self.name, target, method, ok=True)
        return reply

    def _offload(self, target: str, image: np.ndarray, deadline: Deadline) -> Outcome:
        """Infer a frame on another node; on failure, here (the frame holds room here)."""
        if deadline.expired():
            raise Expired(f"{self.name}: deadline passed before offloading to {target}")
        chunk, scale, crf = self._send_frame(target, image)
        reply = self._ask(target, "Inference", "Infer", pb.InferRequest(origin=self.name, chunk=chunk),
                          "inferring here instead", deadline)
        if reply is None:
            return self.infer_local(image, deadline).result(timeout=deadline.remaining())
        h, w = image.shape[:2]
        dets = detections_from_pb(reply.detections[0]).scaled(w / chunk.width, h / chunk.height)
        return Outcome(dets, target, reply.started, reply.finished, reply.model_version, scale, crf)

    def _assist(self, image: np.ndarray, outcome: Outcome, deadline: Deadline) -> Outcome:
        """Edge-Cloud-Assisted: re-infer the edge's unsure regions with the cloud, merge."""
        policy = self.policy
        assert isinstance(policy, EdgeCloudAssisted)
        dets = outcome.detections
        sure = dets[dets.scores >= policy.confidence]
        unsure = dets[(dets.scores >= policy.region_floor) & (dets.scores < policy.confidence)]
        if deadline.expired():  # nobody would wait for the cloud's answer: the edge's own result stands
            return outcome
        if not len(unsure):
            return Outcome(sure, outcome.where, outcome.started, outcome.finished, outcome.model_version)
        rects = regions_of(unsure, image.shape[:2])
        crops, scale, crf = [], 1.0, 0
        for x1, y1, x2, y2 in rects:
            chunk, scale, crf = self._send_frame(CLOUD, np.ascontiguousarray(image[y1:y2, x1:x2]))
            crops.append(chunk)
        reply = self._ask(CLOUD, "Cloud", "InferRegions", pb.RegionsRequest(origin=self.name, regions=crops),
                          "keeping the edge's own result", deadline)
        if reply is None:
            return outcome
        parts = [sure]
        for (x1, y1, x2, y2), chunk, found in zip(rects, crops, reply.detections, strict=True):
            region = detections_from_pb(found).scaled((x2 - x1) / chunk.width, (y2 - y1) / chunk.height)
            region.boxes += np.array([x1, y1, x1, y1], np.float32)
            parts.append(region)
        return Outcome(Detections.merge(parts), f"{self.name}+{CLOUD}", outcome.started, time.time(),
                       outcome.model_version, scale, crf)

    # -- info updater -------------------------------------------------------------------------
    def _update_info(self) -> None:
        interval = self.config.policy.info_interval_s
        while not self.stopping.wait(interval):
            for name, peer in self.peers.items():
                try:
                    status = peer.status(timeout=max(0.5, interval * 5))
                except RemoteError as exc:
                    if exc.retryable and self.view.alive(name):
                        log.warning("%s; treating %s as down", exc, name)
                        metrics.peer_state(self.name, name, up=False)
                        self.view.mark_down(name)
                    continue
                if not self.view.alive(name):
                    log.info("%s is back", name)
                    metrics.peer_state(self.name, name, up=True)
                self.view.report(name, status.queue_length, status.service_s)

    # -- continuous learning ---------------------------------------------------------------------
    def on_inferred(self, images: list[np.ndarray], inferences: list[Inference]) -> None:
        if self.drift is None:
            return
        for image, inference in zip(images, inferences, strict=True):
            if self.validation.offer(image):  # a validation frame is never trained on
                continue
            frames = self.drift.add(image, inference.detections)
            if frames is None:
                continue
            try:
                self._drift_sets.put_nowait(frames)
            except queue.Full:
                log.info("%s: a retraining round is still running; this window's drift frames are skipped", self.name)

    def _retrain(self) -> None:
        settings = self.config.retraining
        worker = self.worker
        assert isinstance(worker, Retrainable)
        sessions = open_store(self.config.database.url)
        while not self.stopping.is_set():
            if settings.max_rounds is not None and self.rounds >= settings.max_rounds:
                return
            try:
                frames = self._drift_sets.get(timeout=0.2)
            except queue.Empty:
                continue
            self._round_running.set()
            try:
                self._round(worker, frames, settings, sessions)
            except Exception:  # a failed round must not end continuous learning
                log.exception("%s: retraining round failed; the model in service is kept", self.name)
            finally:
                self._round_running.clear()

    def _golden(self, frames: list[np.ndarray]) -> list[Detections]:
        """The cloud's golden detections of ``frames`` (frames of one size share a chunk).

        Raises:
            RemoteError: the cloud did not answer.
        """
        labels: dict[int, Detections] = {}
        by_size: dict[tuple, list[int]] = {}
        for i, frame in enumerate(frames):
            by_size.setdefault(frame.shape, []).append(i)
        for members in by_size.values():
            for start in range(0, len(members), 8):  # small calls: the cloud admits each as a whole
                part = members[start : start + 8]
                chunk = chunk_to_pb(encode_chunk([frames[i] for i in part], 18))
                reply = self.peers[CLOUD].call("Inference", "Infer", pb.InferRequest(origin=self.name, chunk=chunk),
                                               timeout=120.0)
                for i, found in zip(part, reply.detections, strict=True):
                    labels[i] = detections_from_pb(found)
        return [labels[i] for i in range(len(frames))]

    def _round(self, worker: Retrainable, frames: list[np.ndarray], settings: RetrainConfig, sessions: sessionmaker) -> None:
        """One round: drift frames and current weights to the cloud, fine-tuned weights back,
        then :meth:`consider_update`."""
        request = pb.RetrainRequest(
            origin=self.name, frames=[encode_frame(f, crf=18) for f in frames], weights=worker.weights(),
            epochs=settings.epochs, learning_rate=settings.learning_rate, version=worker.version,
        )
        try:
            reply = self.peers[CLOUD].call("Cloud", "Retrain", request, timeout=600.0)
        except RemoteError as exc:
            log.warning("%s; retraining round skipped", exc)
            metrics.retrained(self.name, "failed")
            return
        self.consider_update(reply, len(frames), sessions)

    def consider_update(self, reply: pb.RetrainReply, frames: int, sessions: sessionmaker) -> bool:
        """Check fine-tuned weights on the validation set; swap them in only if F1 does not
        drop. Recorded in the database either way. Returns whether they were swapped in."""
        worker, settings = self.worker, self.config.retraining
        assert isinstance(worker, Retrainable)
        try:
            candidate = worker.candidate(reply.weights)
            checks = self.validation.label(self._golden) if settings.validation_frames else None
        except (EdgevaError, RemoteError) as exc:
            log.warning("%s: %s; update not checked, not swapped in", self.name, exc)
            return False
        if checks is None:
            gate = GateResult(True, float("nan"), float("nan"), 0, "not checked (validation_frames: 0)")
        else:
            # Frames of different cameras differ in size: the update infers them one at a time, as the worker does.
            gate = gate_update(worker.infer, lambda frames: [candidate.detect([f])[0] for f in frames], *checks)
        self._last_version += 1
        version = self._last_version
        self.rounds += 1
        if gate.accepted:
            worker.swap_in(candidate, version)
        else:
            self.refused += 1
        metrics.retrained(self.name, "swapped" if gate.accepted else "refused")
        log.info("%s: model version %d %s (fine-tuned on %d frames, %d objects, loss %.3f -> %.3f, %.1f s; %s)",
                 self.name, version, "swapped in" if gate.accepted else "REFUSED", frames, reply.labelled_objects,
                 reply.loss_before, reply.loss_after, reply.train_s, gate.reason)
        record_model_update(sessions, self.run_id, self.name, version=version, frames=frames,
                            objects=reply.labelled_objects, epochs=settings.epochs, loss_before=reply.loss_before,
                            loss_after=reply.loss_after, train_s=reply.train_s, swapped=time.time(),
                            accepted=gate.accepted, f1_before=gate.f1_before, f1_after=gate.f1_after,
                            validation_frames=gate.frames)
        return gate.accepted


def build_edge(config: ClusterConfig, edge_id: int, run_id: str) -> EdgeNode:
    """An edge node with the worker its config names, on its ``device`` (not started).

    Raises:
        ConfigError: the edge's ``device`` is a GPU torch does not see here.
    """
    edge = config.edge(edge_id)
    floor = config.policy.region_floor if config.policy.name == "edge-cloud-assisted" else 0.3
    worker = create_worker(edge.worker, edge, min(0.3, floor), device=config.device(edge.name))
    return EdgeNode(config, edge_id, run_id, worker)
