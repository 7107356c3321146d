"""Real live-video servers on loopback for fault runs and tests: a video file served as a
camera would, and killed, paused or restarted on demand.

* :class:`HttpStreamServer`: Debian's ``ffmpeg`` serving the file as MPEG-TS over HTTP to
  one client at a time (``-re -f mpegts -listen 1``, as many IP cameras allow one viewer),
  looping, at the file's frame rate.
* :class:`RtspServer`: GStreamer's RTSP server (:mod:`edgeva.bench.rtsp_serve`, run by the
  system Python that has PyGObject).

Both keep their port across restarts, so a client's URL stays valid. ``unavailable()``
says why a server cannot run here (missing package), for callers that skip.
"""

from __future__ import annotations

import functools
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edgeva.errors import EdgevaError

__all__ = ["StreamServer", "HttpStreamServer", "RtspServer", "gi_python"]

_GI_CHECK = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (read from /proc, without connecting:
    a one-client server would take the connection as its client)."""
    wanted = f":{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1].endswith(wanted) and line.split()[3] == "0A" for line in lines)


@functools.lru_cache(maxsize=1)
def gi_python() -> str | None:
    """A Python interpreter that can import GStreamer's RTSP server bindings, or None."""
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and Path(candidate).is_file():
            probe = subprocess.run([candidate, "-c", _GI_CHECK], capture_output=True, timeout=60)
            if probe.returncode == 0:
                return candidate
    return None


class StreamServer:
    """A server process for one video file; ``url`` stays the same across restarts."""

    name = "stream server"

    def __init__(self, video: str | Path):
        self.video = str(video)
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this server cannot run on this machine (None: it can)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _spawn(self) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> StreamServer:
        """Start (or restart on the same port) and wait until it listens.

        Raises:
            EdgevaError: it exited or did not listen within ``timeout`` seconds.
        """
        self._spawn()
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise EdgevaError(f"{self.name} for {self.video} exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise EdgevaError(f"{self.name} for {self.video} did not listen on port {self.port} within {timeout:.0f} s")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: the connection breaks as when a camera loses power."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the connection stays open and goes silent (a hung camera)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def restart(self, timeout: float = 60.0) -> None:
        self.kill()
        self.start(timeout)

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class HttpStreamServer(StreamServer):
    """``ffmpeg -re -stream_loop -1 -i VIDEO -c copy -f mpegts -listen 1 http://127.0.0.1:PORT/cam.ts``.

    It serves one client; when that client goes, ffmpeg exits (restart it for the next).
    """

    name = "ffmpeg HTTP server"

    @classmethod
    def unavailable(cls) -> str | None:
        return None if shutil.which("ffmpeg") else "Debian's ffmpeg is not installed (make sysdeps)"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.ts"

    def _spawn(self) -> None:
        self.port = self.port or _free_port()
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", self.video,
             "-an", "-c", "copy", "-f", "mpegts", "-listen", "1", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class RtspServer(StreamServer):
    """GStreamer's RTSP server at ``rtsp://127.0.0.1:PORT/cam`` (each client from the file's start)."""

    name = "GStreamer RTSP server"

    @classmethod
    def unavailable(cls) -> str | None:
        if gi_python() is None:
            return "no Python with GStreamer's RTSP server bindings (python3-gi, gir1.2-gst-rtsp-server-1.0: make sysdeps)"
        return None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def _spawn(self) -> None:
        python = gi_python()
        if python is None:
            raise EdgevaError(f"{self.name}: {self.unavailable()}")
        self.port = self.port or _free_port()
        script = Path(__file__).with_name("rtsp_serve.py")
        self.proc = subprocess.Popen([python, str(script), "--video", self.video, "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
