"""Fault injection: does every frame a camera reads still end in the results database in
exactly one state when things break?

Each fault is one short cluster run of real processes on loopback (cloud, edges, one
camera), with the fault injected once the camera is under way (a watcher waits for frames
to be recorded, never for a fixed time):

* ``edge-kill``: the camera's home edge is SIGKILLed; the camera retries, fails over.
* ``rtsp-restart``: the camera reads a real RTSP server (GStreamer's), which is killed and
  restarted ``outage_s`` later; the camera reconnects, the gap is recorded ``source-lost``.
* ``db-outage``: the results database (SQLite) is locked by another process for
  ``outage_s`` (longer than the writer's commit attempts take); the camera's writer
  journals what it cannot write and hands it over once the lock is gone (``journalled``).
* ``flood``: a camera reading as fast as it can floods a slow edge with a small queue; the
  edge (no wait for room, so refusals do not hang on how fast this CPU infers) refuses chunks
  as a whole, the camera records them dropped (``overloaded``).

Afterwards the database is counted: ``read`` (the camera's own count of frames read,
including frames a live source lost), ``inferred``, ``reused``, ``dropped`` (with a reason)
and ``unaccounted`` = read - inferred - reused - dropped (0 when the promise holds).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeva import assets
from edgeva.bench.streams import RtspServer
from edgeva.errors import EdgevaError
from edgeva.runtime.config import ClusterConfig

__all__ = ["FAULTS", "bench_faults", "run_faults", "account"]

log = logging.getLogger(__name__)

FAULTS = ("edge-kill", "rtsp-restart", "db-outage", "flood")


@dataclass
class _Scenario:
    """One fault: its camera, the edge it runs on, and what is done to them mid-run."""

    fault: str
    camera: dict  # camera config (without id and edge)
    edge: dict = field(default_factory=dict)  # overrides of the camera's home edge
    act: Callable[[dict], str] | None = None  # the fault, given the processes; returns what was done
    after: int = 0  # inject once this many of the camera's frames are recorded (0: a quarter of them)
    cleanup: Callable[[], None] | None = None
    detail: str = ""  # what happened, for faults without an act


class _Context:
    def __init__(self, out_dir: Path, run_id: str, frames: int, outage_s: float, video: str):
        self.out_dir, self.run_id, self.frames, self.outage_s, self.video = out_dir, run_id, frames, outage_s, video
        self.db = out_dir / f"{run_id}.db"


def _edge_kill(ctx: _Context, edge: str) -> _Scenario:
    def kill(processes: dict) -> str:
        processes[edge].proc.kill()
        return f"{edge} SIGKILLed mid-run"

    return _Scenario("edge-kill", {"source": ctx.video, "frames": ctx.frames, "fps": 10, "filter": {"enabled": False}},
                     act=kill)


def _rtsp_restart(ctx: _Context, edge: str) -> _Scenario:
    reason = RtspServer.unavailable()
    if reason:
        raise EdgevaError(f"rtsp-restart: {reason}")
    server = RtspServer(ctx.video).start()

    def restart(processes: dict) -> str:
        server.kill()
        down = time.monotonic()
        time.sleep(ctx.outage_s)
        server.start()
        return f"RTSP server killed, back {time.monotonic() - down:.1f} s later"

    # The stream is read in real time (after a burst buffered while connecting): the camera
    # reads three times as many frames, and the server goes down once the first are recorded.
    camera = {"source": server.url, "frames": 3 * ctx.frames, "watchdog_s": 2.0, "source_backoff_s": 0.2,
              "filter": {"enabled": False}}
    return _Scenario("rtsp-restart", camera, act=restart, after=3, cleanup=server.kill)


def _db_outage(ctx: _Context, edge: str) -> _Scenario:
    def lock(processes: dict) -> str:
        conn = sqlite3.connect(ctx.db, timeout=30.0, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")  # every other writer now fails with "database is locked"
            held = time.monotonic()
            time.sleep(ctx.outage_s)
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return f"database locked by another process for {time.monotonic() - held:.1f} s"

    return _Scenario("db-outage", {"source": ctx.video, "frames": ctx.frames, "fps": 10}, act=lock)


def _flood(ctx: _Context, edge: str) -> _Scenario:
    camera = {"source": ctx.video, "frames": ctx.frames, "fps": 0, "max_inflight": 8, "failover": [],
              "filter": {"enabled": False}, "encoding": {"chunk_frames": 2}}
    return _Scenario("flood", camera, edge={"queue_size": 4, "delay_factor": 8.0, "admit_wait_s": 0.0},
                     detail=f"{edge}: room for 4 frames, 8x slower, no wait for room; the camera sends as fast as it reads")


_SCENARIOS = {"edge-kill": _edge_kill, "rtsp-restart": _rtsp_restart, "db-outage": _db_outage, "flood": _flood}


def _config(ctx: _Context, scenarios: list[_Scenario]) -> ClusterConfig:
    """Camera i on edge i (one spare edge to fail over to), every node on loopback."""
    edges = [{"id": i + 1, **s.edge} for i, s in enumerate(scenarios)] + [{"id": len(scenarios) + 1}]
    cameras = [{"retries": 1, "backoff_s": 0.1, "deadline_s": 30, "encoding": {"chunk_frames": 3},
                **s.camera, "id": i + 1, "edge": i + 1} for i, s in enumerate(scenarios)]
    return ClusterConfig.model_validate({
        "database": {"url": str(ctx.db), "flush_s": 0.2, "batch_size": 16, "commit_attempts": 2},
        "policy": {"name": "edge-local"},
        "filter": {"enabled": True, "feature": "pixel", "threshold": 0.01},
        "cloud": {"model": "yolox-nano", "link": {"rtt_ms": 0}},
        "edges": edges,
        "cameras": cameras,
    })


def _recorded(db: Path, run_id: str, camera: int) -> int:
    """Frames of a camera in the database (0 while it cannot be read)."""
    try:
        with sqlite3.connect(db, timeout=1.0) as conn:
            return conn.execute("SELECT count(*) FROM runtime_frames WHERE run_id = ? AND camera = ?",
                                (run_id, camera)).fetchone()[0]
    except sqlite3.Error:
        return 0


class _Watcher:
    """Runs a fault's ``act`` once a quarter of its camera's frames are recorded (in a thread)."""

    def __init__(self, ctx: _Context, camera: int, act: Callable[[dict], str], after: int = 0):
        self.ctx, self.camera, self.act = ctx, camera, act
        self.threshold = after or max(3, ctx.frames // 4)
        self.detail = "not injected: the camera finished first"
        self.injected = False
        self._thread: threading.Thread | None = None

    def start(self, processes: dict) -> None:
        self._thread = threading.Thread(target=self._watch, args=(processes,), name="fault-watcher", daemon=True)
        self._thread.start()

    def _watch(self, processes: dict) -> None:
        end = time.monotonic() + 600
        camera = processes.get(f"camera-{self.camera}")
        while time.monotonic() < end:
            if camera is not None and camera.proc.poll() is not None:
                return
            recorded = _recorded(self.ctx.db, self.ctx.run_id, self.camera)
            if recorded >= self.threshold:
                self.detail = f"{self.act(processes)} (after {recorded} frames were recorded)"
                self.injected = True
                return
            time.sleep(0.1)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


def account(db: Path, run_id: str, camera: int) -> dict:
    """A camera's frames in the database: read, inferred, reused, dropped, unaccounted, reasons."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT frames_read, status FROM runtime_cameras WHERE run_id = ? AND camera = ?",
                           (run_id, camera)).fetchone()
        frames = conn.execute("SELECT state, reason FROM runtime_frames WHERE run_id = ? AND camera = ?",
                              (run_id, camera)).fetchall()
    read, status = row if row else (0, "missing")
    states = Counter(state for state, _ in frames)
    dropped = sum(1 for state, reason in frames if state == "dropped" and reason)
    reasons = Counter((reason or "").split(":")[0] for state, reason in frames if state == "dropped")
    return {"read": read, "inferred": states["inferred"], "reused": states["reused"], "dropped": dropped,
            "unaccounted": read - states["inferred"] - states["reused"] - dropped, "camera_status": status,
            "drop_reasons": dict(reasons)}


_HANDED_OVER = re.compile(r"is back: (\d+) journalled frame records written")


def _journalled(camera_log: Path) -> int:
    """Frame records the camera's writer kept in its journal and wrote once the database was back."""
    try:
        return sum(int(m.group(1)) for m in _HANDED_OVER.finditer(camera_log.read_text(errors="replace")))
    except OSError:
        return 0


def run_faults(faults: list[str], *, out_dir: Path, frames: int = 60, outage_s: float = 6.0,
               video: str = "one-by-one-person-detection") -> list[dict]:
    """One cluster run with one camera (on its own edge) per fault, all injected in that run;
    rows ``{"fault", "read", "inferred", "reused", "dropped", "unaccounted", ...}``.

    Raises:
        EdgevaError: unknown fault, or a server a fault needs cannot run here.
    """
    from edgeva.runtime.cluster import run_cluster

    unknown = [f for f in faults if f not in _SCENARIOS]
    if unknown:
        raise EdgevaError(f"unknown fault {unknown[0]!r} (choose from {', '.join(FAULTS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"faults-{'-'.join(faults) if len(faults) == 1 else 'together'}-{time.strftime('%Y%m%d-%H%M%S')}"
    ctx = _Context(out_dir, run_id, frames, outage_s, str(assets.resolve_video(video)))
    scenarios: list[_Scenario] = []
    try:
        for i, fault in enumerate(faults):
            scenarios.append(_SCENARIOS[fault](ctx, f"edge-{i + 1}"))
        watchers = {i + 1: _Watcher(ctx, i + 1, s.act, s.after) for i, s in enumerate(scenarios) if s.act}
        start = time.monotonic()
        try:
            run_cluster(_config(ctx, scenarios), run_id=run_id, log_dir=out_dir / run_id, evaluate=False,
                        on_started=lambda processes: [w.start(processes) for w in watchers.values()])
        except EdgevaError as exc:  # a camera that exits non-zero fails the run; the counts still tell
            log.error("%s", exc)
        for watcher in watchers.values():
            watcher.join()
    finally:
        for scenario in scenarios:
            if scenario.cleanup:
                scenario.cleanup()
    seconds = round(time.monotonic() - start, 1)
    rows = []
    for i, scenario in enumerate(scenarios, start=1):
        watcher = watchers.get(i)
        rows.append({"fault": scenario.fault, **account(ctx.db, run_id, i), "seconds": seconds,
                     "injected": watcher.injected if watcher else True,
                     "detail": watcher.detail if watcher else scenario.detail,
                     "journalled": _journalled(out_dir / run_id / f"camera-{i}.log"), "run": run_id})
    return rows


def bench_faults(faults: list[str] | None = None, *, out_dir: Path = Path("runs/bench-faults"), frames: int = 60,
                 outage_s: float = 6.0, video: str = "one-by-one-person-detection", together: bool = False) -> list[dict]:
    """Each fault in a run of its own (all four by default), or all in one run (``together``)."""
    faults = list(faults or FAULTS)
    if together:
        return run_faults(faults, out_dir=out_dir, frames=frames, outage_s=outage_s, video=video)
    return [row for fault in faults
            for row in run_faults([fault], out_dir=out_dir, frames=frames, outage_s=outage_s, video=video)]
