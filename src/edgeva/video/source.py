"""Frame sources: video files, image-folder patterns and network streams, as one iterator.

Every source yields :class:`Frame` objects (RGB uint8 image, index, timestamp). Files and
``dir/%06d.png`` patterns (the NeuroMesh data layout) are read by FFmpeg's demuxers
through PyAV; RTSP/HTTP URLs too, with connect and read timeouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edgeva.errors import VideoError

__all__ = ["Frame", "VideoInfo", "VideoSource", "open_video", "read_frames"]

_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    index: int  # position in the source, counted from its first frame
    time: float  # presentation time in seconds
    image: np.ndarray  # (H, W, 3) RGB uint8


@dataclass(frozen=True)
class VideoInfo:
    uri: str
    width: int  # after resizing, if a size was requested
    height: int
    fps: float
    frame_count: int | None  # None when the container does not say (streams, some files)


class VideoSource:
    """Iterate over the frames of a video file, an image pattern or a network stream.

    Args:
        uri: a file path, a pattern such as ``frames/%06d.png``, or an RTSP/HTTP URL.
        start: index of the first frame to yield (earlier frames are decoded and skipped).
        limit: yield at most this many frames.
        step: yield every ``step``-th frame from ``start`` (frame-rate subsampling).
        size: ``(width, height)`` to resize every frame to, or None to keep the native size.
        loop: restart from ``start`` at the end of the input (for live demos of files).
        fps: frame rate to assume for image patterns (files and streams carry their own).
        open_timeout: seconds to wait for a network source to connect.
        read_timeout: seconds to wait for data once connected.

    Raises:
        VideoError: missing, unreadable or corrupt input, always naming it.
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
    ):
        self.uri = str(uri)
        if start < 0:
            raise VideoError(f"{self.uri}: start={start} must be >= 0")
        if limit is not None and limit < 0:
            raise VideoError(f"{self.uri}: limit={limit} must be >= 0")
        if step < 1:
            raise VideoError(f"{self.uri}: step={step} must be >= 1")
        self.start, self.limit, self.step, self.size, self.loop = start, limit, step, size, loop
        self._fps = fps
        self._timeouts = (open_timeout, read_timeout)
        self._is_network = self.uri.startswith(_NETWORK_SCHEMES)
        self._is_pattern = "%" in self.uri and not self._is_network
        if not (self._is_network or self._is_pattern) and not Path(self.uri).is_file():
            raise VideoError(f"{self.uri}: no such video file")
        with self._open() as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps_found = float(rate) if rate else fps
            width, height = size or (stream.codec_context.width, stream.codec_context.height)
            count = stream.frames or None
        if self._is_pattern:
            fps_found = fps
        self.info = VideoInfo(self.uri, int(width), int(height), fps_found, count)

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

    def _frames_once(self) -> Iterator[Frame]:
        container = self._open()
        stream = container.streams.video[0]
        index = 0
        try:
            for frame in container.decode(stream):
                if index >= self.start and (index - self.start) % self.step == 0:
                    if self.size:
                        image = frame.to_ndarray(width=self.size[0], height=self.size[1], format="rgb24")
                    else:
                        image = frame.to_ndarray(format="rgb24")
                    t = float(frame.time) if frame.time is not None else index / self.info.fps
                    yield Frame(index, t, image)
                index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.uri}: cannot decode frame {index} ({_reason(exc)})") from None
        finally:
            container.close()
        if index == 0:
            raise VideoError(f"{self.uri}: no decodable frames")

    def __iter__(self) -> Iterator[Frame]:
        yielded = 0
        while True:
            produced = False
            for frame in self._frames_once():
                if self.limit is not None and yielded >= self.limit:
                    return
                produced = True
                yielded += 1
                yield frame
            if not (self.loop and produced):
                return


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
    return [f.image for f in VideoSource(uri, start=start, limit=limit, step=step, size=size)]
