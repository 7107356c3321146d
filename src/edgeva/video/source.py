"""Frame sources: video files, image-folder patterns and network streams, as one iterator.

Every source yields :class:`Frame` objects (RGB uint8 image, index, timestamp). Files and
``dir/%06d.png`` patterns (the NeuroMesh data layout) are read by FFmpeg's demuxers
through PyAV; RTSP/HTTP URLs too, with connect and read timeouts.

A source is opened once: the connection that reads the stream's parameters is the one its
frames come from (an IP camera or ``ffmpeg -listen 1`` serves one client at a time, so a
probe-then-read pair of connections loses the stream).

A *live* source (a network stream, unless told otherwise) never ends because its server
went away: when the stream breaks, ends, or delivers no frame for ``watchdog_s`` seconds,
the source reconnects with back-off (:mod:`edgeva.backoff`) and goes on. The frames the
stream would have delivered meanwhile (estimated from the gap and its frame rate) are
reported on the next frame (:attr:`Frame.lost`), so a consumer can account for them. Live
frames carry their capture time on the wall clock (:attr:`Frame.captured`): the decoder's
presentation time, anchored to the wall clock when the connection opened. A file source
ends at its end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edgeva.backoff import Backoff, retrying
from edgeva.errors import VideoError

__all__ = ["Frame", "VideoInfo", "VideoSource", "open_video", "read_frames", "is_network"]

log = logging.getLogger(__name__)

_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
_PTS_JUMP_S = 5.0  # presentation times that jump further than the wall clock moved start a new time line


def is_network(uri: str | Path) -> bool:
    """Whether ``uri`` is read from the network (RTSP, HTTP, ...)."""
    return str(uri).startswith(_NETWORK_SCHEMES)


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    index: int  # position in the source, counted from its first frame (live: lost frames count too)
    time: float  # presentation time in seconds
    image: np.ndarray  # (H, W, 3) RGB uint8
    captured: float | None = None  # live sources: capture time, epoch seconds; files: None
    lost: range = range(0)  # live sources: indices the stream skipped just before this frame (it was down)


@dataclass(frozen=True)
class VideoInfo:
    uri: str
    width: int  # after resizing, if a size was requested
    height: int
    fps: float
    frame_count: int | None  # None when the container does not say (streams, some files)


class _Clock:
    """Capture times of one connection's frames: presentation time on the wall clock.

    The anchor starts at the moment the connection was opened (a live server cannot have
    sent a frame before) and moves earlier whenever a frame arrives sooner than its
    presentation time allows (a server that bursts buffered frames), so frames read in a
    burst after connecting keep the times they were captured at, not the time they were read.
    """

    def __init__(self, opened: float, fps: float):
        self.anchor = opened
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.base: float | None = None  # presentation time of the time line's first frame
        self.last: tuple[float, float] | None = None  # (offset, wall) of the previous frame

    def captured(self, pts_s: float | None) -> float:
        now = time.time()
        if pts_s is None or self.base is None:
            # No time stamp (RTSP's first frames may lack one): one frame period after the last.
            offset = 0.0 if self.last is None else self.last[0] + self.period
            if pts_s is not None:
                self.base = pts_s - offset
        else:
            offset = pts_s - self.base
        if self.last is not None:
            prev_offset, prev_wall = self.last
            if offset < prev_offset or offset - prev_offset > (now - prev_wall) + _PTS_JUMP_S:
                # A new time line (the server restarted its clock): go on from the last frame.
                self.anchor = self.anchor + prev_offset + self.period
                self.base = pts_s
                offset = 0.0
        self.anchor = min(self.anchor, now - offset)
        self.last = (offset, now)
        return self.anchor + offset


class VideoSource:
    """Iterate over the frames of a video file, an image pattern or a network stream.

    Args:
        uri: a file path, a pattern such as ``frames/%06d.png``, or an RTSP/HTTP URL.
        start: index of the first frame to yield (earlier frames are decoded and skipped).
        limit: yield at most this many frames (frames a live source lost do not count).
        step: yield every ``step``-th frame from ``start`` (frame-rate subsampling).
        size: ``(width, height)`` to resize every frame to, or None to keep the native size.
        loop: restart from ``start`` at the end of the input (for live demos of files).
        fps: frame rate to assume for image patterns (files and streams carry their own).
        open_timeout: seconds to wait for a network source to connect.
        read_timeout: seconds to wait for data once connected.
        live: reconnect when the stream breaks (default: for network URLs).
        watchdog_s: a live source without a new frame for this long is reopened.
        reconnect: back-off between a live source's reconnection attempts.
        stop: set it to end a live source's iteration (also ends a reconnection wait).

    Raises:
        VideoError: missing, unreadable or corrupt input, always naming it. A live source
            that cannot be opened the first time fails too; later outages are reconnected.
    """

    def __init__(
        self,
        uri: str | Path,
        *,
        start: int = 0,
        limit: int | None = None,
        step: int = 1,
        size: tuple[int, int] | None = None,
        loop: bool = False,
        fps: float = 10.0,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        live: bool | None = None,
        watchdog_s: float = 5.0,
        reconnect: Backoff = Backoff(0.2, 2.0, 5.0),
        stop: threading.Event | None = None,
    ):
        self.uri = str(uri)
        if start < 0:
            raise VideoError(f"{self.uri}: start={start} must be >= 0")
        if limit is not None and limit < 0:
            raise VideoError(f"{self.uri}: limit={limit} must be >= 0")
        if step < 1:
            raise VideoError(f"{self.uri}: step={step} must be >= 1")
        if watchdog_s <= 0:
            raise VideoError(f"{self.uri}: watchdog_s={watchdog_s} must be > 0")
        self.start, self.limit, self.step, self.size, self.loop = start, limit, step, size, loop
        self._fps = fps
        self._is_network = is_network(self.uri)
        self.live = self._is_network if live is None else live
        self.watchdog_s, self.reconnect = watchdog_s, reconnect
        self._timeouts = (open_timeout, min(read_timeout, watchdog_s) if self.live else read_timeout)
        self.stop = stop or threading.Event()
        self._is_pattern = "%" in self.uri and not self._is_network
        if not (self._is_network or self._is_pattern) and not Path(self.uri).is_file():
            raise VideoError(f"{self.uri}: no such video file")
        self._opened_at = time.time()
        self._container: av.container.InputContainer | None = self._open()  # read by the first iteration
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps_found = float(rate) if rate else fps
        width, height = size or (stream.codec_context.width, stream.codec_context.height)
        count = stream.frames or None
        if self._is_pattern:
            fps_found = fps
        self.info = VideoInfo(self.uri, int(width), int(height), fps_found, count)
        self.reconnects = 0  # times a live source was reopened
        self.lost = 0  # frames a live source lost while it was down

    def _open(self) -> av.container.InputContainer:
        options: dict[str, str] = {}
        kwargs: dict = {}
        if self._is_pattern:
            kwargs["format"] = "image2"
            options["framerate"] = str(Fraction(self._fps).limit_denominator(1001))
        if self._is_network:
            kwargs["timeout"] = self._timeouts
            if self.uri.startswith("rtsp"):
                options["rtsp_transport"] = "tcp"
        try:
            container = av.open(self.uri, options=options, **kwargs)
        except FileNotFoundError:
            raise VideoError(f"{self.uri}: no such video file or image sequence") from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"{self.uri}: cannot open as video ({_reason(exc)})") from None
        if not container.streams.video:
            container.close()
            raise VideoError(f"{self.uri}: contains no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container

    def close(self) -> None:
        """Close a connection opened but not read (iteration closes its own)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> av.container.InputContainer:
        """The container opened at construction, once; a fresh one after that."""
        container, self._container = self._container, None
        if container is None:
            self._opened_at = time.time()
            container = self._open()
        return container

    def _image(self, frame: av.VideoFrame) -> np.ndarray:
        if self.size:
            return frame.to_ndarray(width=self.size[0], height=self.size[1], format="rgb24")
        return frame.to_ndarray(format="rgb24")

    def _wanted(self, index: int) -> bool:
        return index >= self.start and (index - self.start) % self.step == 0

    # -- files --------------------------------------------------------------------------------
    def _frames_once(self) -> Iterator[Frame]:
        container = self._take()
        stream = container.streams.video[0]
        index = 0
        try:
            for frame in container.decode(stream):
                if self._wanted(index):
                    t = float(frame.time) if frame.time is not None else index / self.info.fps
                    yield Frame(index, t, self._image(frame))
                index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.uri}: cannot decode frame {index} ({_reason(exc)})") from None
        finally:
            container.close()
        if index == 0:
            raise VideoError(f"{self.uri}: no decodable frames")

    def __iter__(self) -> Iterator[Frame]:
        frames = self._live() if self.live else self._file()
        yielded = 0
        for frame in frames:
            if self.limit is not None and yielded >= self.limit:
                return
            yielded += 1
            yield frame

    def _file(self) -> Iterator[Frame]:
        while True:
            produced = False
            for frame in self._frames_once():
                produced = True
                yield frame
            if not (self.loop and produced):
                return

    # -- live streams -------------------------------------------------------------------------
    def _connection(self, container: av.container.InputContainer) -> Iterator[tuple[av.VideoFrame, float]]:
        """Frames of one connection with their capture times, until it breaks, ends or stalls.

        Raises:
            VideoError: why the connection stopped delivering.
        """
        clock = _Clock(self._opened_at, self.info.fps)
        stream = container.streams.video[0]
        last_frame = time.monotonic()
        try:
            for packet in container.demux(stream):
                if self.stop.is_set():
                    return
                for frame in packet.decode():
                    yield frame, clock.captured(float(frame.time) if frame.time is not None else None)
                    last_frame = time.monotonic()  # the consumer's time with the frame is not the stream's silence
                if time.monotonic() - last_frame > self.watchdog_s:
                    raise VideoError(f"{self.uri}: no frame for {self.watchdog_s:g} s")
        except av.error.ExitError:
            raise VideoError(f"{self.uri}: no data for {self._timeouts[1]:g} s") from None
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.uri}: stream broke ({_reason(exc)})") from None
        finally:
            container.close()
        raise VideoError(f"{self.uri}: stream ended")

    def _reopen(self) -> av.container.InputContainer | None:
        """A new connection, retried with back-off until one opens or ``stop`` is set."""

        def attempt() -> av.container.InputContainer:
            self._opened_at = time.time()
            return self._open()

        def note(exc: Exception, attempt_no: int, delay: float) -> None:
            log.warning("%s; reconnecting in %.1f s (attempt %d)", exc, delay, attempt_no + 1)

        try:
            return retrying(attempt, backoff=self.reconnect, should_retry=lambda e: isinstance(e, VideoError),
                            stop=self.stop, on_retry=note)
        except VideoError:
            return None  # stopped while reconnecting

    def _live(self) -> Iterator[Frame]:
        container: av.container.InputContainer | None = self._take()
        index = -1  # position of the last frame read; an outage advances it by the frames lost
        next_wanted = self.start  # the next index to yield; wanted indices before a read one were lost
        last_captured: float | None = None
        while container is not None:
            first = True
            try:
                for frame, captured in self._connection(container):
                    if first and last_captured is not None:  # the first frame after an outage
                        lost = max(0, round((captured - last_captured) * self.info.fps) - 1)
                        index += lost
                        log.warning("%s: back after an outage of %.1f s (%d frames lost)", self.uri,
                                    captured - last_captured, lost)
                    first = False
                    index += 1
                    last_captured = captured
                    if self._wanted(index):
                        lost_here = range(next_wanted, index, self.step)
                        self.lost += len(lost_here)
                        next_wanted = index + self.step
                        yield Frame(index, float(frame.time or 0.0), self._image(frame), captured, lost_here)
            except VideoError as exc:
                if not self.stop.is_set():
                    log.warning("%s; reconnecting", exc)
            if self.stop.is_set():
                return
            self.reconnects += 1
            container = self._reopen()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(";")[0].strip() or type(exc).__name__


def open_video(uri: str | Path, **kwargs) -> VideoSource:
    """Open a source; keyword arguments as for :class:`VideoSource`."""
    return VideoSource(uri, **kwargs)


def read_frames(
    uri: str | Path, limit: int | None = None, *, start: int = 0, step: int = 1, size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """All (or the first ``limit``) frames of a source as RGB arrays."""
    with VideoSource(uri, start=start, limit=limit, step=step, size=size) as source:
        return [f.image for f in source]
