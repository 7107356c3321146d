"""An ``accmpeg`` camera's side of online selector adaptation (:mod:`edgeva.accmpeg.adapt`).

Every ``encoding.adapt_every`` chunks the camera encodes the chunk's first frame alone at high
quality and sends it to the cloud (``Cloud.AdaptSelector``), in the background: chunks keep
flowing meanwhile, and at most one round is in flight (a due round finding one still running
is skipped). The cloud computes the frame's AccGrad with the golden model, fine-tunes its copy
of the camera's selector head on every frame it got from this camera so far, and answers with
the adapted weights; the camera applies them before choosing the quality of its next chunk
(in its reading thread, never while the selector runs). A failed round is logged and costs
nothing else: the camera keeps the selector it has.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from edgeva.accmpeg.adapt import AdaptOptions, apply_payload
from edgeva.runtime.config import CLOUD, CameraConfig, ClusterConfig
from edgeva.runtime.rpc import Peer, RemoteError, pb
from edgeva.runtime.wire import chunk_to_pb
from edgeva.video import EncoderSettings, encode_chunk

__all__ = ["CameraAdaptation", "AdaptationStats"]

log = logging.getLogger(__name__)


@dataclass
class AdaptationStats:
    rounds: int = 0  # weights received and applied (or waiting for the next chunk)
    skipped: int = 0  # due rounds skipped because one was still in flight
    failed: int = 0
    up_bytes: int = 0  # uploaded frames
    down_bytes: int = 0  # weights received


class CameraAdaptation:
    """Uploads frames for adaptation and applies the weights that come back.

    Args:
        config: the cluster config (where the cloud is).
        cam: this camera's section (``encoding.adapt_every``).
        run_id: the run, sent with each frame (the cloud keeps one selector per run and camera).
        policy: the camera's :class:`~edgeva.accmpeg.camera.AccMPEGQuality` (its ``selector`` is updated).
    """

    def __init__(self, config: ClusterConfig, cam: CameraConfig, run_id: str, policy):
        node = config.node(CLOUD)
        self.peer = Peer(CLOUD, node.address, config.security, node.link.as_link())
        self.cam, self.run_id, self.policy = cam, run_id, policy
        self.options = AdaptOptions(every=cam.encoding.adapt_every)
        self.stats = AdaptationStats()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"{cam.name}-adapt")
        self._lock = threading.Lock()
        self._weights: bytes | None = None
        self._busy = False
        self._chunks = 0

    def apply(self) -> bool:
        """Before a chunk's quality is chosen: install weights that arrived; whether any did."""
        with self._lock:
            weights, self._weights = self._weights, None
        if weights is None:
            return False
        apply_payload(self.policy.selector, weights, self.options.layers)
        return True

    def after_chunk(self, image: np.ndarray, settings: EncoderSettings) -> None:
        """After a chunk was sent (``image``: its first frame): start a round if one is due."""
        self._chunks += 1
        if not self.options.due(self._chunks - 1):
            return
        with self._lock:
            if self._busy:
                self.stats.skipped += 1
                return
            self._busy = True
        chunk = encode_chunk([image], self.options.crf, settings, first_frame=0)
        self._pool.submit(self._round, pb.SelectorRequest(run=self.run_id, camera=self.cam.id, frame=chunk_to_pb(chunk)), chunk.nbytes)

    def _round(self, request: pb.SelectorRequest, nbytes: int) -> None:
        with self._lock:
            self.stats.up_bytes += nbytes  # sent, whatever the answer
        try:
            reply = self.peer.call("Cloud", "AdaptSelector", request, timeout=self.cam.deadline_s)
        except RemoteError as exc:
            log.warning("%s: selector adaptation round failed (%s); keeping the selector", self.cam.name, exc)
            with self._lock:
                self.stats.failed += 1
                self._busy = False
            return
        with self._lock:
            self._weights, self._busy = reply.weights, False
            self.stats.rounds += 1
            self.stats.down_bytes += len(reply.weights)

    def close(self) -> None:
        """Wait for a round in flight, then close the connection."""
        self._pool.shutdown(wait=True)
        self.peer.close()
