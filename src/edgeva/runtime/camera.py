"""The camera agent (EdgeCam's video reader + filter engine + encoder): reads a source,
drops redundant frames, encodes the rest in chunks and sends them to its edge node.

Every frame it reads ends in exactly one state in the results database, written by the
camera once the frame's fate is known:

* ``reused``: the filter found it too similar to the last sent frame; it takes that frame's
  result (``reuses``).
* ``inferred``: a node answered with its detections (``where``: ``edge-2``, ``cloud``, ...).
* ``dropped`` with a reason: no node could be reached, the node could not infer it, or
  (``backlog: drop``) too many chunks were already in flight.

Chunks stay with the camera until answered. A call that fails with UNAVAILABLE or
DEADLINE_EXCEEDED is retried with exponential back-off; after the retries the camera fails
over to the next node of its route (its home edge, then the other edges, then the cloud, or
``failover``) and stays there, re-sending the chunk: an edge that dies mid-run costs time,
not frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from edgeva import assets
from edgeva.errors import EdgevaError
from edgeva.filtering import FrameFilter
from edgeva.runtime.config import ClusterConfig
from edgeva.runtime.encoding import create_scheme
from edgeva.runtime.ops import CameraOps
from edgeva.runtime.rpc import Peer, RemoteError, pb, wait_ready
from edgeva.runtime.store import FrameRecord, ResultWriter, record_camera
from edgeva.runtime.wire import BadMessage, chunk_to_pb, detections_from_pb
from edgeva.video import EncoderSettings, encode_chunk, open_video

__all__ = ["CameraAgent", "CameraStats"]

log = logging.getLogger(__name__)


@dataclass
class CameraStats:
    camera: int
    frames_read: int = 0
    states: Counter = field(default_factory=Counter)
    bytes_sent: int = 0
    encode_s: float = 0.0
    node: str = ""  # node answering at the end of the run


@dataclass
class _Pending:
    opened: float = 0.0  # monotonic time its first frame was read
    indices: list[int] = field(default_factory=list)
    captured: list[float] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)


class CameraAgent:
    """One camera.

    Args:
        config: the cluster config.
        camera_id: which of ``config.cameras`` this is.
        run_id: the run its frames are recorded under.
        sessions: session factory of the results database.
    """

    def __init__(self, config: ClusterConfig, camera_id: int, run_id: str, sessions):
        self.config, self.cam = config, config.camera(camera_id)
        self.run_id, self.sessions = run_id, sessions
        self.route = config.route(self.cam)
        self.peers = {}
        for name in self.route:
            node = config.node(name)
            self.peers[name] = Peer(name, node.address, config.security, node.link.as_link())
        self.scheme = create_scheme(self.cam.encoding)
        flt = config.camera_filter(self.cam)
        self.filter = FrameFilter(flt.feature, flt.threshold) if flt.enabled else None
        self._current = 0  # index into route of the node chunks go to
        self._route_lock = threading.Lock()
        self.stats = CameraStats(camera_id)
        self._stats_lock = threading.Lock()
        self.ops = CameraOps(config, camera_id)  # /metrics and MQTT object events (ops.py)

    # -- delivery ----------------------------------------------------------------------------
    def connect(self, timeout: float) -> str:
        """Wait for the first reachable node of the route.

        Raises:
            RemoteError: no node answered within ``timeout`` seconds each.
        """
        errors = []
        for i, name in enumerate(self.route):
            try:
                wait_ready(self.peers[name], timeout=timeout if i == 0 else min(timeout, 2.0))
            except RemoteError as exc:
                log.warning("%s: %s", self.cam.name, exc)
                errors.append(exc)
                if not exc.retryable:
                    raise
                continue
            self._current = i
            return name
        raise errors[0]

    def _record(self, record: FrameRecord) -> None:
        self.writer.put(record)
        self.ops.recorded(record)
        with self._stats_lock:
            self.stats.states[record.state] += 1

    def _drop(self, pending: _Pending, reason: str) -> None:
        now = time.time()
        for index, captured in zip(pending.indices, pending.captured, strict=True):
            self._record(FrameRecord(self.cam.id, index, "dropped", captured, now, reason=reason[:300]))

    def _deliver(self, request: pb.ChunkRequest, pending: _Pending, nbytes: int) -> None:
        """Send a chunk along the route until a node answers; record every frame."""
        last_error = "no node configured"
        tried = 0
        while tried < len(self.route):
            with self._route_lock:
                index = self._current
            name = self.route[index]
            try:
                reply = self.peers[name].call_with_retry(
                    "Ingest", "Submit", request, timeout=self.cam.deadline_s, retries=self.cam.retries, backoff_s=self.cam.backoff_s)
            except RemoteError as exc:
                last_error = str(exc)
                if not exc.retryable:
                    log.error("%s: %s", self.cam.name, exc)
                    self._drop(pending, last_error)
                    return
                tried += 1
                with self._route_lock:
                    if self._current == index:
                        self._current = (index + 1) % len(self.route)
                        log.warning("%s: %s; failing over to %s", self.cam.name, exc, self.route[self._current])
                        self.ops.failover(self.route[self._current])
                continue
            self._record_reply(reply, pending, nbytes, request.sent)
            return
        self._drop(pending, f"unreachable: {last_error}")

    def _deliver_or_drop(self, request: pb.ChunkRequest, pending: _Pending, nbytes: int) -> None:
        try:
            self._deliver(request, pending, nbytes)
        except Exception as exc:  # a bug must not make frames vanish: record them as dropped
            log.exception("%s: delivering frames %s failed", self.cam.name, pending.indices)
            self._drop(pending, f"internal error: {type(exc).__name__}: {exc}")

    def _record_reply(self, reply: pb.ChunkReply, pending: _Pending, nbytes: int, sent: float) -> None:
        done = time.time()
        results = {r.frame: r for r in reply.results}
        share = nbytes // max(1, len(pending.indices))
        for index, captured in zip(pending.indices, pending.captured, strict=True):
            result = results.get(index)
            if result is None:
                self._record(FrameRecord(self.cam.id, index, "dropped", captured, done, reason="no result in the reply"))
                continue
            if result.dropped:
                self._record(FrameRecord(self.cam.id, index, "dropped", captured, done, reason=result.dropped, nbytes=share,
                                         t_send=sent, t_receive=result.received))
                continue
            try:
                detections = detections_from_pb(result.detections)
            except BadMessage as exc:
                self._record(FrameRecord(self.cam.id, index, "dropped", captured, done, reason=f"bad reply: {exc}"))
                continue
            self._record(FrameRecord(
                self.cam.id, index, "inferred", captured, done, where=result.where, detections=detections,
                model_version=result.model_version, nbytes=share, scale=result.scale or None, crf=result.crf or None,
                t_send=sent, t_receive=result.received, t_start=result.started, t_end=result.finished,
            ))

    # -- the reading loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, *, connect_timeout: float = 10.0) -> CameraStats:
        """Read the source to its end (or until ``stop``), then wait for every answer.

        Raises:
            EdgevaError: the source cannot be opened, or no node is reachable at the start.
        """
        stop = stop or threading.Event()
        cam = self.cam
        uri = assets.resolve_video(cam.source)
        source = open_video(uri, start=cam.start, limit=cam.frames, step=cam.step, size=cam.size)
        self.connect(connect_timeout)
        self.ops.start()
        fps = source.info.fps if cam.fps is None else cam.fps
        settings = EncoderSettings(codec=cam.encoding.codec, preset=cam.encoding.preset, fps=source.info.fps or 10.0)
        self.writer = ResultWriter(self.sessions, self.run_id, batch_size=self.config.database.batch_size,
                                   flush_s=self.config.database.flush_s)
        started = time.time()
        width, height = cam.size or (None, None)
        record_camera(self.sessions, self.run_id, cam.id, source=str(cam.source), start=cam.start, step=cam.step,
                      width=width, height=height, frames_read=0, started=started, finished=None, status="running")
        slots = threading.BoundedSemaphore(cam.max_inflight)
        pool = ThreadPoolExecutor(cam.max_inflight, thread_name_prefix=f"{cam.name}-send")
        pending = _Pending()
        last_sent: int | None = None
        status = "finished"

        def send(chunk_frames: _Pending) -> None:
            if not chunk_frames.indices:
                return
            if not slots.acquire(blocking=cam.backlog == "wait"):
                self._drop(chunk_frames, f"backlog: {cam.max_inflight} chunks in flight")
                return
            try:
                quality = self.scheme.quality(chunk_frames.images, chunk_frames.indices[0])
                chunk = encode_chunk(chunk_frames.images, quality, settings, first_frame=chunk_frames.indices[0])
            except EdgevaError as exc:
                slots.release()
                self._drop(chunk_frames, f"encoding failed: {exc}")
                return
            request = pb.ChunkRequest(run=self.run_id, camera=cam.id, frames=chunk_frames.indices,
                                      captured=chunk_frames.captured, sent=time.time(), chunk=chunk_to_pb(chunk))
            chunk_frames.images = []  # the encoded bytes are all a retry needs
            with self._stats_lock:
                self.stats.bytes_sent += chunk.nbytes
                self.stats.encode_s += chunk.encode_s
            self.ops.chunk_sent(chunk.nbytes, chunk.encode_s)
            pool.submit(self._deliver_or_drop, request, chunk_frames, chunk.nbytes).add_done_callback(lambda f: slots.release())

        try:
            for n, frame in enumerate(source):
                if stop.is_set():
                    status = "interrupted"
                    break
                captured = started + n / fps if fps else time.time()
                if fps and captured > time.time():
                    time.sleep(captured - time.time())  # a live camera delivers frames at its rate
                self.stats.frames_read += 1
                self.ops.frame_read(frame.index, frame.image)
                if pending.indices and time.monotonic() - pending.opened >= cam.encoding.max_chunk_wait_s:
                    send(pending)  # a partial chunk waits at most max_chunk_wait_s, even while frames are filtered
                    pending = _Pending()
                if self.filter is not None and not self.filter.check(frame.image):  # never the first frame
                    self._record(FrameRecord(cam.id, frame.index, "reused", captured, time.time(), reuses=last_sent))
                    continue
                last_sent = frame.index
                if not pending.indices:
                    pending.opened = time.monotonic()
                pending.indices.append(frame.index)
                pending.captured.append(captured)
                pending.images.append(frame.image)
                # Waited for since its first frame was *read*: a camera catching up on a backlog
                # (captured long ago) still fills its chunks instead of sending single frames.
                too_old = time.monotonic() - pending.opened >= cam.encoding.max_chunk_wait_s
                if len(pending.indices) >= cam.encoding.chunk_frames or too_old:
                    send(pending)
                    pending = _Pending()
        except EdgevaError as exc:  # the source broke mid-run: keep what was read
            log.error("%s: %s", cam.name, exc)
            status = "failed"
        finally:
            send(pending)
            pool.shutdown(wait=True)
            self.writer.close()
            self.ops.close()
            self.stats.node = self.route[self._current]
            record_camera(self.sessions, self.run_id, cam.id, frames_read=self.stats.frames_read,
                          finished=time.time(), status=status)
            for peer in self.peers.values():
                peer.close()
        return self.stats
