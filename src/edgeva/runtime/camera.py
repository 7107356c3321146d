"""The camera agent (EdgeCam's video reader + filter engine + encoder): reads a source,
drops redundant frames, encodes the rest in chunks and sends them to its edge node.

Every frame it reads ends in exactly one state in the results database, written by the
camera once the frame's fate is known:

* ``reused``: the filter found it too similar to the last sent frame; it takes that frame's
  result (``reuses``).
* ``inferred``: a node answered with its detections (``where``: ``edge-2``, ``cloud``, ...).
* ``dropped`` with a reason: no node could be reached, the node refused the chunk as a whole
  (``overloaded``) or could not infer a frame, a live source was down (``source-lost``: the
  frames it would have delivered meanwhile), encoding failed, or (``backlog: drop``) too
  many chunks were already in flight. Whatever fails in the send path, the chunk's frames
  are recorded and its in-flight slot is given back.

Chunks stay with the camera until answered. A call that fails with UNAVAILABLE is retried
with exponential back-off, and one refused for overload (RESOURCE_EXHAUSTED) too; after the
retries an unreachable node is failed over (to the next node of its route: its home edge,
then the other edges, then the cloud, or ``failover``), and the camera stays there,
re-sending the chunk; a node that lets the deadline pass is failed over at once (the node
dropped the work, and a repeated ``Submit`` is idempotent anyway). An edge that dies mid-run
costs time, not frames.

A live source (RTSP/HTTP) reconnects by itself (:mod:`edgeva.video.source`); capture times
are its frames' presentation times on the wall clock. A file is paced at its presentation
times (or ``fps``), as a camera would deliver it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np

from edgeva import assets
from edgeva.backoff import Backoff
from edgeva.errors import ConfigError, EdgevaError
from edgeva.filtering import FrameFilter
from edgeva.runtime.adaptation import AdaptationStats, CameraAdaptation
from edgeva.runtime.balance.coordinator import CameraBalancer
from edgeva.runtime.config import ClusterConfig
from edgeva.runtime.encoding import create_scheme
from edgeva.runtime.ops import CameraOps
from edgeva.runtime.rpc import Peer, RemoteError, pb, wait_ready
from edgeva.runtime.store import FrameRecord, ResultWriter
from edgeva.runtime.wire import BadMessage, chunk_to_pb, detections_from_pb
from edgeva.video import EncoderSettings, Frame, encode_chunk, open_video

__all__ = ["CameraAgent", "CameraStats", "SOURCE_LOST"]

log = logging.getLogger(__name__)

SOURCE_LOST = "source-lost"  # reason of the frames a live source did not deliver while it was down
_RETRY_ON = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass
class CameraStats:
    camera: int
    frames_read: int = 0  # frames read, and frames a live source lost (they are recorded too)
    frames_lost: int = 0  # of which a live source lost while it was down
    reconnects: int = 0  # times a live source was reopened
    states: Counter = field(default_factory=Counter)
    bytes_sent: int = 0
    encode_s: float = 0.0
    node: str = ""  # node answering at the end of the run
    adaptation: AdaptationStats | None = None  # accmpeg with encoding.adapt_every: the selector's online adaptation


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
        self.adaptation = CameraAdaptation(config, self.cam, run_id, self.scheme) if self.cam.encoding.adapt_every else None
        flt = config.camera_filter(self.cam)
        self.filter = FrameFilter(flt.feature, flt.threshold) if flt.enabled else None
        self._current = 0  # index into route of the node chunks go to
        self._split: tuple[int, float] | None = None  # (route index, share): the balancer's share of chunks sent there
        self._split_credit = 0.0  # smooth weighted round robin between the current node and the split's
        self._route_lock = threading.Lock()
        self.stats = CameraStats(camera_id)
        self._stats_lock = threading.Lock()
        self.ops = CameraOps(config, camera_id)  # /metrics and MQTT object events (ops.py)
        self.balancer = CameraBalancer(config, self) if config.balancer.name != "none" else None

    def current_node(self) -> str:
        with self._route_lock:
            return self.route[self._current]

    def retarget(self, name: str, share: float = 1.0) -> None:
        """Send ``share`` of the next chunks to ``name``, the rest to the current node (the
        balancer's decision; ``share`` 1: all of them, and ``name`` becomes the current node;
        0: none). Chunks in flight stay put."""
        with self._route_lock:
            index = self.route.index(name)
            if share >= 1.0 or index == self._current:
                self._current, self._split = (index, None) if share >= 1.0 else (self._current, None)
            else:
                self._split = (index, share) if share > 0.0 else None
            self._split_credit = 0.0

    def split(self) -> tuple[str, float] | None:
        """The node the balancer sends a share of the chunks to, and that share (None: no split)."""
        with self._route_lock:
            return (self.route[self._split[0]], self._split[1]) if self._split else None

    def _pick(self) -> int:
        """Route index for the next chunk (call with the route lock held)."""
        if self._split is None:
            return self._current
        index, share = self._split
        self._split_credit += share
        if self._split_credit >= 1.0:
            self._split_credit -= 1.0
            return index
        return self._current

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
                index = self._pick() if tried == 0 else self._current
            name = self.route[index]
            try:
                reply = self.peers[name].call_with_retry(
                    "Ingest", "Submit", request, timeout=self.cam.deadline_s, retries=self.cam.retries,
                    backoff_s=self.cam.backoff_s, retry_on=_RETRY_ON)
            except RemoteError as exc:
                last_error = str(exc)
                if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # refused as a whole, still after the retries
                    self._drop(pending, f"overloaded: {last_error}")
                    return
                if not exc.retryable:
                    log.error("%s: %s", self.cam.name, exc)
                    self._drop(pending, last_error)
                    return
                tried += 1
                with self._route_lock:
                    if self._split and self._split[0] == index:  # the balancer's other edge: back to the current one
                        self._split = None
                    elif self._current == index:
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
            if self.balancer is not None:
                self.balancer.estimator.result(len(detections))
            self._record(FrameRecord(
                self.cam.id, index, "inferred", captured, done, where=result.where, detections=detections,
                model_version=result.model_version, nbytes=share, scale=result.scale or None, crf=result.crf or None,
                t_send=sent, t_receive=result.received, t_start=result.started, t_end=result.finished,
            ))

    # -- the reading loop -----------------------------------------------------------------------
    def _open_source(self, stop: threading.Event):
        cam = self.cam
        return open_video(assets.resolve_video(cam.source), start=cam.start, limit=cam.frames, step=cam.step,
                          size=cam.size, live=cam.live, watchdog_s=cam.watchdog_s, stop=stop,
                          reconnect=Backoff(cam.source_backoff_s, 2.0, max(cam.source_backoff_s, 10.0)))

    def _check_chunk_size(self, width: int, height: int) -> None:
        pixels = self.cam.encoding.chunk_frames * width * height
        if pixels > self.config.security.max_chunk_pixels:
            raise ConfigError(f"{self.cam.name}: chunks of {self.cam.encoding.chunk_frames} frames of {width}x{height} "
                              f"exceed security.max_chunk_mpixels ({self.config.security.max_chunk_mpixels:g} million pixels)")

    def _record_lost(self, frame: Frame, fps: float) -> None:
        """The frames a live source skipped before ``frame`` (it was down): dropped, ``source-lost``."""
        now = time.time()
        for index in frame.lost:
            captured = (frame.captured or now) - (frame.index - index) / (fps or 10.0)
            self._record(FrameRecord(self.cam.id, index, "dropped", captured, now, reason=SOURCE_LOST))
        self.stats.frames_read += len(frame.lost)
        self.stats.frames_lost += len(frame.lost)
        if frame.lost:
            self.ops.frames_lost(len(frame.lost))

    def _sender(self, settings: EncoderSettings, slots: threading.BoundedSemaphore, pool: ThreadPoolExecutor):
        """``send(frames)``: encode a chunk and hand it to the pool. Whatever fails, the frames
        are recorded and the slot comes back."""
        cam = self.cam

        def send(chunk_frames: _Pending) -> None:
            if not chunk_frames.indices:
                return
            if not slots.acquire(blocking=cam.backlog == "wait"):
                self._drop(chunk_frames, f"backlog: {cam.max_inflight} chunks in flight")
                return
            try:
                if self.adaptation is not None:
                    self.adaptation.apply()  # weights the cloud sent since the last chunk
                quality = self.scheme.quality(chunk_frames.images, chunk_frames.indices[0])
                chunk = encode_chunk(chunk_frames.images, quality, settings, first_frame=chunk_frames.indices[0])
                request = pb.ChunkRequest(run=self.run_id, camera=cam.id, frames=chunk_frames.indices,
                                          captured=chunk_frames.captured, sent=time.time(), chunk=chunk_to_pb(chunk))
                if self.adaptation is not None:
                    self.adaptation.after_chunk(chunk_frames.images[0], settings)
                chunk_frames.images = []  # the encoded bytes are all a retry needs
                with self._stats_lock:
                    self.stats.bytes_sent += chunk.nbytes
                    self.stats.encode_s += chunk.encode_s
                self.ops.chunk_sent(chunk.nbytes, chunk.encode_s)
                future = pool.submit(self._deliver_or_drop, request, chunk_frames, chunk.nbytes)
            except Exception as exc:  # encoding, the quality policy, a bug: the frames are still recorded
                slots.release()
                if not isinstance(exc, EdgevaError):
                    log.exception("%s: sending frames %s failed", cam.name, chunk_frames.indices)
                self._drop(chunk_frames, f"encoding failed: {type(exc).__name__}: {exc}")
                return
            future.add_done_callback(lambda _: slots.release())

        return send

    def _captured(self, frame: Frame, n: int, started: float, first_time: float, fps: float | None) -> float:
        """When ``frame`` was captured: a live source says; a file is paced like a camera."""
        if frame.captured is not None:
            return frame.captured
        if fps == 0:
            return time.time()
        captured = started + (n / fps if fps else frame.time - first_time)
        if captured > time.time():
            time.sleep(captured - time.time())  # a camera delivers frames at its rate
        return captured

    def _read(self, source, stop: threading.Event, send, started: float) -> str:
        """The reading loop: record reused and lost frames, send the others in chunks.

        Returns:
            The camera's status: ``finished``, ``interrupted`` or (the source broke) ``failed``.
        """
        cam = self.cam
        pending = _Pending()
        last_sent: int | None = None
        first_time: float | None = None
        reconnects = 0
        try:
            for n, frame in enumerate(source):
                if stop.is_set():
                    return "interrupted"
                self._record_lost(frame, source.info.fps)
                if source.reconnects > reconnects:
                    self.ops.reconnected(source.reconnects - reconnects)
                    reconnects = source.reconnects
                first_time = frame.time if first_time is None else first_time
                captured = self._captured(frame, n, started, first_time, cam.fps)
                self.stats.frames_read += 1
                self.ops.frame_read(frame.index, frame.image)
                if pending.indices and time.monotonic() - pending.opened >= cam.encoding.max_chunk_wait_s:
                    send(pending)  # a partial chunk waits at most max_chunk_wait_s, even while frames are filtered
                    pending = _Pending()
                sent = self.filter is None or self.filter.check(frame.image)  # the filter never drops the first frame
                if self.balancer is not None:
                    self.balancer.estimator.frame(sent)
                if not sent:
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
            return "interrupted" if stop.is_set() else "finished"
        except EdgevaError as exc:  # the source broke mid-run: keep what was read
            log.error("%s: %s", cam.name, exc)
            return "failed"
        finally:
            send(pending)

    def run(self, stop: threading.Event | None = None, *, connect_timeout: float = 10.0) -> CameraStats:
        """Read the source to its end (or until ``stop``), then wait for every answer.

        Raises:
            EdgevaError: the source cannot be opened, no node is reachable at the start, or
                frame records could not be written (they wait in the database's journal).
        """
        stop = stop or threading.Event()
        cam, database = self.cam, self.config.database
        if cam.start_after_s and stop.wait(cam.start_after_s):
            return self.stats  # stopped before it started: nothing read, nothing to record
        source = self._open_source(stop)
        try:
            self._check_chunk_size(source.info.width, source.info.height)
            self.connect(connect_timeout)
        except BaseException:
            source.close()  # a camera that serves one client must not stay taken
            raise
        self.ops.start()
        settings = EncoderSettings(codec=cam.encoding.codec, preset=cam.encoding.preset, fps=source.info.fps or 10.0)
        self.writer = ResultWriter(self.sessions, self.run_id, batch_size=database.batch_size, flush_s=database.flush_s,
                                   attempts=database.commit_attempts, journal=database.journal_dir, name=cam.name,
                                   close_wait_s=database.close_wait_s)
        started = time.time()
        width, height = cam.size or (None, None)
        self.writer.update_camera(cam.id, source=str(cam.source), start=cam.start, step=cam.step, width=width,
                                  height=height, frames_read=0, started=started, finished=None, status="running")
        slots = threading.BoundedSemaphore(cam.max_inflight)
        pool = ThreadPoolExecutor(cam.max_inflight, thread_name_prefix=f"{cam.name}-send")
        status = "failed"
        if self.balancer is not None:
            self.balancer.start()
        try:
            status = self._read(source, stop, self._sender(settings, slots, pool), started)
        finally:
            if self.balancer is not None:
                self.balancer.stop()
            pool.shutdown(wait=True)
            if self.adaptation is not None:
                self.adaptation.close()
                self.stats.adaptation = self.adaptation.stats
            source.close()
            self.stats.node = self.route[self._current]
            self.stats.reconnects = source.reconnects
            self.writer.update_camera(cam.id, frames_read=self.stats.frames_read, finished=time.time(), status=status)
            unwritten = self.writer.close()
            self.ops.close()
            for peer in self.peers.values():
                peer.close()
        if unwritten:
            raise EdgevaError(f"results database {self.writer.database}: {unwritten} frame records were not written "
                              f"(the database was unavailable); they wait in {self.writer.journal.path} and are "
                              f"written when the next camera starts on this database, or by `edgeva results`")
        return self.stats
