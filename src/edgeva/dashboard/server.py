"""The dashboard's web app (FastAPI) and the uvicorn server that runs it on a thread.

Routes: ``/`` (the page), ``/api/stats`` (run, cameras, nodes: Frigate-like per-camera
``frames_read``, ``inferred``, ``reused``, ``dropped``), ``/api/runs``, and per camera
``/api/cameras/{id}/mjpeg`` (live view: the latest inferred frame with the server's boxes,
as an MJPEG stream), ``/latest.jpg``, ``/series`` (kbps, latency, frames over time) and
``/frames`` (state and place of inference of the last frames). The database is opened
read-only; with a cluster config the nodes' live queue lengths and model versions are
polled too. ``edgeva dashboard`` serves it on its own; the cloud node serves it when the
cluster config's ``dashboard`` section is enabled.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import func, select

from edgeva import __version__
from edgeva.dashboard.data import RunData
from edgeva.dashboard.frames import FrameStore, annotated_jpeg
from edgeva.errors import ConfigError, EdgevaError
from edgeva.runtime.config import ClusterConfig
from edgeva.runtime.store import RESULT, DetectionRow
from edgeva.store import connect_readonly, shown_url

__all__ = ["create_app", "DashboardServer"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")


def create_app(url: str, *, run: str | None = None, config: ClusterConfig | None = None,
               refresh_s: float = 1.0) -> FastAPI:
    """The dashboard of the results database at ``url``.

    Args:
        url: database URL or SQLite file (opened read-only; must exist).
        run: show this run; None: the most recently started one, re-checked on every request.
        config: the cluster's config, to poll its nodes' live status (None: database only).
        refresh_s: how often the page refreshes and the live view checks for a new frame.

    Raises:
        ConfigError: missing database, unreachable server, or not an edgeva results database.
    """
    _, sessions = connect_readonly(url, table="runtime_runs")
    data, frames = RunData(sessions), FrameStore()
    poller = None
    if config is not None:
        from edgeva.dashboard.live import NodePoller

        poller = NodePoller(config, refresh_s)
    started = time.time()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if poller is not None:
            poller.start()
        yield
        if poller is not None:
            poller.stop()

    app = FastAPI(title="edgeva dashboard", version=__version__, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(EdgevaError)
    def _missing(request, exc: EdgevaError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    def which(requested: str | None) -> str:
        return data.resolve(requested or run)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/runs")
    def runs() -> list[dict]:
        return data.runs()

    @app.get("/api/stats")
    def stats(run_id: str | None = Query(None, alias="run")) -> dict:
        out = data.stats(which(run_id))
        if poller is not None:
            for name, live in poller.status.items():
                node = out["nodes"].setdefault(name, {})
                node.update({k: v for k, v in live.items() if v is not None or k == "queue_length"})
                node["alive"] = live["alive"]
        _count_boxes(sessions, out)
        out["service"] = {"version": __version__, "uptime_s": round(time.time() - started, 1), "db": shown_url(url),
                          "read_only": True, "live": poller is not None, "refresh_s": refresh_s}
        return out

    @app.get("/api/cameras/{camera}/series")
    def series(camera: int, run_id: str | None = Query(None, alias="run"), bucket: float = Query(1.0, gt=0)) -> dict:
        return data.series(which(run_id), camera, bucket)

    @app.get("/api/cameras/{camera}/frames")
    def recent(camera: int, run_id: str | None = Query(None, alias="run"), last: int = Query(120, ge=1, le=2000)) -> list:
        return data.recent_frames(which(run_id), camera, last)

    def render(run_id: str, camera: int, skip: int | None = None) -> tuple[int, int, bytes | None] | None:
        """(frame, boxes, JPEG) of the camera's latest inferred frame; JPEG None when it is ``skip``."""
        found = data.latest_result(run_id, camera)
        if found is None:
            return None
        row, frame, dets = found
        if frame == skip:
            return frame, len(dets), None
        caption = f"camera-{camera} frame {frame}: {len(dets)} boxes"
        return frame, len(dets), annotated_jpeg(frames.frame(row, frame), dets, caption)

    @app.get("/api/cameras/{camera}/latest.jpg")
    def latest(camera: int, run_id: str | None = Query(None, alias="run")) -> Response:
        rendered = render(which(run_id), camera)
        if rendered is None:
            raise HTTPException(404, f"camera {camera}: no inferred frame yet")
        frame, boxes, body = rendered
        return Response(body, media_type="image/jpeg", headers={"X-Edgeva-Frame": str(frame), "X-Edgeva-Boxes": str(boxes)})

    @app.get("/api/cameras/{camera}/mjpeg")
    def mjpeg(camera: int, run_id: str | None = Query(None, alias="run")) -> StreamingResponse:
        resolved = which(run_id)

        def parts():
            # The current picture goes out every refresh, new or not: a browser shows a part of
            # the stream only once the next one begins.
            shown, body = None, None
            while True:
                try:
                    rendered = render(resolved, camera, skip=shown)
                except EdgevaError as exc:  # e.g. a live stream that cannot be re-read
                    log.warning("dashboard: camera %d: %s", camera, exc)
                    return
                if rendered is not None and rendered[2] is not None:
                    shown, body = rendered[0], rendered[2]
                if body is not None:
                    yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(body), body)
                time.sleep(refresh_s)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    return app


def _count_boxes(sessions, stats: dict) -> None:
    """Number of boxes on each camera's latest inferred frame (what its live view shows)."""
    with sessions() as session:
        for cam in stats["cameras"].values():
            frame = cam["last_inferred_frame"]
            cam["boxes"] = 0 if frame is None else session.scalar(select(func.count()).select_from(DetectionRow).where(
                DetectionRow.run_id == stats["run"]["id"], DetectionRow.camera == cam["camera"],
                DetectionRow.frame == frame, DetectionRow.kind == RESULT))


class DashboardServer:
    """uvicorn serving the dashboard on a socket edgeva binds itself (so errors are one line).

    Args:
        app: the FastAPI app.
        host: address to bind.
        port: port (0: a free one; :attr:`port` tells which).
    """

    def __init__(self, app: FastAPI, host: str, port: int):
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ConfigError(f"dashboard: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None

    @classmethod
    def for_cluster(cls, config: ClusterConfig) -> DashboardServer:
        """The dashboard a cluster's cloud node serves (its run, its nodes' live status)."""
        from edgeva.runtime.store import open_store

        open_store(config.database.url)  # the schema exists before the read-only view opens it
        settings = config.dashboard
        app = create_app(config.database.url, run=config.run, config=config, refresh_s=settings.refresh_s)
        return cls(app, settings.listen or config.cloud.listen or config.cloud.host, settings.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 30.0) -> DashboardServer:
        """Serve on a thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            raise ConfigError(f"dashboard: did not start on {self.url}")
        log.info("dashboard on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM."""
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(5.0)
        self.sock.close()
