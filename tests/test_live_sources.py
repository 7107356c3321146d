"""Live sources against real servers on loopback, started, killed, paused and restarted by
the test: Debian's ffmpeg serving MPEG-TS over HTTP to one client at a time, and
GStreamer's RTSP server. A live source is opened once, reconnects with back-off when its
stream breaks or goes silent, reports the frames it lost meanwhile, and stamps frames with
their presentation time on the wall clock. (``make sysdeps`` installs the servers; without
them these tests skip, saying which package is missing.)"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import video_path
from edgeva.backoff import Backoff
from edgeva.bench.streams import HttpStreamServer, RtspServer
from edgeva.video import open_video

VIDEO = "one-by-one-person-detection"  # 10 fps, a keyframe every second: a camera-like stream
pytestmark = pytest.mark.timeout(240)


def _server(kind):
    reason = kind.unavailable()
    if reason:
        pytest.skip(reason)
    return kind(video_path(VIDEO))


def _source(url: str, **kwargs):
    return open_video(url, watchdog_s=2.0, open_timeout=10.0, reconnect=Backoff(0.2, 2.0, 1.0), **kwargs)


def _outage(server, source, *, pause: bool = False, down_s: float = 1.5) -> threading.Thread:
    """Break the stream (kill, or pause: it goes silent); once the source has noticed, keep
    the server down ``down_s`` more seconds, then start it again on the same port."""

    def run() -> None:
        server.pause() if pause else server.kill()
        end = time.monotonic() + 60
        while source.reconnects < 1 and time.monotonic() < end:
            time.sleep(0.05)
        server.kill()
        time.sleep(down_s)  # the outage itself: frames the camera never gets
        server.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _check_stream(frames, source, *, lost_at_least: int) -> None:
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)), "indices must increase"
    lost = [i for f in frames for i in f.lost]
    assert len(lost) == source.lost >= lost_at_least
    assert sorted(indices + lost) == list(range(indices[-1] + 1))  # every position read or reported lost
    captured = np.array([f.captured for f in frames])
    assert (np.diff(captured) > 0).all()
    # Presentation times, not read times: the frames of one connection are 1/fps apart
    # however late they are read (the first ones arrive in a burst after connecting).
    steps = np.diff(captured[:10])
    assert np.allclose(steps, 0.1, atol=0.02), steps


def test_a_one_client_http_stream_is_read_over_one_connection():
    """The issue's case: ``ffmpeg -listen 1`` serves one client; a probe connection used to
    take the stream, and the read then got "Connection refused". A consumer that holds a
    frame longer than the watchdog (a slow first inference) is not a silent stream."""
    with _server(HttpStreamServer) as server:
        source = _source(server.url, limit=12)
        assert source.live and source.info.fps == pytest.approx(10) and source.info.width == 768
        before = time.time()
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == 3:
                time.sleep(3.0)  # longer than watchdog_s=2: the consumer's time, not the stream's
    assert len(frames) == 12 and source.reconnects == 0
    assert all(f.captured <= time.time() for f in frames) and frames[0].captured >= before - 30
    _check_stream(frames, source, lost_at_least=0)


@pytest.mark.parametrize("pause", [False, True], ids=["killed", "silent"])
def test_http_stream_reconnects_and_reports_the_gap(pause):
    """Killed: the connection breaks. Silent (SIGSTOP): nothing arrives, the watchdog
    reopens after 2 s. Either way the source reconnects and goes on."""
    with _server(HttpStreamServer) as server:
        source = _source(server.url, limit=40)
        frames, outage = [], None
        for frame in source:
            frames.append(frame)
            if len(frames) == 15:
                outage = _outage(server, source, pause=pause)
        outage.join()
    assert len(frames) == 40 and source.reconnects >= 1
    _check_stream(frames, source, lost_at_least=10)


def test_rtsp_stream_reconnects_after_a_server_restart():
    with _server(RtspServer) as server:
        source = _source(server.url, limit=40)
        assert source.info.fps == pytest.approx(10)
        frames, outage = [], None
        for frame in source:
            frames.append(frame)
            if len(frames) == 15:
                outage = _outage(server, source)
        outage.join()
    assert len(frames) == 40 and source.reconnects >= 1
    _check_stream(frames, source, lost_at_least=10)


def test_a_file_is_not_live_and_ends_at_its_end():
    source = open_video(video_path("people-detection"))
    frames = list(source)
    assert not source.live and len(frames) == 23 and source.reconnects == 0
    assert all(f.captured is None and not f.lost for f in frames)
