"""What the dashboard shows, read from the results database alone (never written).

Per camera: frames read, inferred, reused, dropped, where each frame was inferred, uplink
kbps and latency over time; per node: frames inferred there, throughput, the model versions
it served and its retraining history. The same queries serve a running cluster (the
numbers grow between two calls) and a finished run.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from edgeva.errors import ConfigError
from edgeva.models import Detections
from edgeva.runtime.store import (
    RESULT,
    CameraRow,
    FrameRow,
    ModelUpdateRow,
    RunRow,
    load_detections,
)

__all__ = ["RunData", "RECENT_S"]

RECENT_S = 5.0  # "recent" throughput is over the last this many seconds of the run


def _home(config: dict, camera: int) -> str | None:
    for cam in config.get("cameras", []):
        if cam.get("id") == camera:
            return f"edge-{cam['edge']}"
    return None


class RunData:
    """Queries of one results database.

    Args:
        sessions: a (read-only) session factory.
    """

    def __init__(self, sessions: sessionmaker):
        self.sessions = sessions

    def runs(self) -> list[dict]:
        with self.sessions() as session:
            rows = session.scalars(select(RunRow).order_by(RunRow.started.desc())).all()
            return [{"id": r.id, "policy": r.policy, "status": r.status, "started": r.started, "finished": r.finished}
                    for r in rows]

    def resolve(self, run_id: str | None) -> str:
        """``run_id``, or the most recently started run.

        Raises:
            ConfigError: the database has no such run (or no run at all).
        """
        with self.sessions() as session:
            if run_id is not None:
                if session.get(RunRow, run_id) is None:
                    raise ConfigError(f"results database: no run {run_id!r}")
                return run_id
            latest = session.scalar(select(RunRow.id).order_by(RunRow.started.desc()).limit(1))
        if latest is None:
            raise ConfigError("results database: no run stored yet")
        return latest

    # -- the summary the page polls ---------------------------------------------------------
    def stats(self, run_id: str) -> dict:
        """``/api/stats``: the run, its cameras and its nodes (Frigate-like keys per camera)."""
        with self.sessions() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise ConfigError(f"results database: no run {run_id!r}")
            config = json.loads(run.config)
            cameras = session.scalars(select(CameraRow).where(CameraRow.run_id == run_id)
                                      .order_by(CameraRow.camera)).all()
            rows = session.execute(select(FrameRow.camera, FrameRow.state, FrameRow.where, FrameRow.frame,
                                          FrameRow.t_start, FrameRow.t_end)
                                   .where(FrameRow.run_id == run_id)).all()
            updates = session.scalars(select(ModelUpdateRow).where(ModelUpdateRow.run_id == run_id)
                                      .order_by(ModelUpdateRow.swapped)).all()
        by_camera: dict[int, list] = defaultdict(list)
        for row in rows:
            by_camera[row.camera].append(row)
        configured = {c["id"]: c for c in config.get("cameras", [])}
        out_cameras = {}
        for cam_id in sorted(set(configured) | {c.camera for c in cameras}):
            row = next((c for c in cameras if c.camera == cam_id), None)
            out_cameras[f"camera-{cam_id}"] = self._camera(cam_id, row, configured.get(cam_id, {}), by_camera[cam_id],
                                                           _home(config, cam_id))
        nodes = self._nodes(config, rows, updates)
        return {
            "run": {"id": run.id, "policy": run.policy, "status": run.status, "started": run.started,
                    "finished": run.finished},
            "cameras": out_cameras,
            "nodes": nodes,
            "detection_fps": round(sum(n["recent_fps"] for n in nodes.values()), 2),
        }

    @staticmethod
    def _camera(cam_id: int, row: CameraRow | None, configured: dict, frames: list, home: str | None) -> dict:
        states = Counter(f.state for f in frames)
        where = Counter(f.where for f in frames if f.state == "inferred")
        inferred = [f for f in frames if f.state == "inferred"]
        last = max(inferred, key=lambda f: f.frame).frame if inferred else None
        read = row.frames_read if row is not None else 0
        return {
            "camera": cam_id, "source": row.source if row else configured.get("source", ""),
            "home": home, "status": row.status if row else "waiting",
            # frames_read is stored when the camera stops; while it runs, the recorded count stands in
            "frames_read": max(read, len(frames)), "recorded": len(frames),
            "inferred": states["inferred"], "reused": states["reused"], "dropped": states["dropped"],
            "where": dict(sorted(where.items())), "last_inferred_frame": last,
        }

    @staticmethod
    def _nodes(config: dict, rows: list, updates: list) -> dict:
        names = [f"edge-{e['id']}" for e in config.get("edges", [])] + ["cloud"]
        ends = [r.t_end for r in rows if r.state == "inferred" and r.t_end]
        now = max(ends) if ends else time.time()
        nodes = {}
        for name in names:
            mine = [r for r in rows if r.state == "inferred" and r.where and r.where.split("+")[0] == name]
            spans = [r.t_start for r in mine if r.t_start] + [r.t_end for r in mine if r.t_end]
            duration = (max(spans) - min(spans)) if len(spans) > 1 else 0.0
            recent = sum(1 for r in mine if r.t_end and r.t_end >= now - RECENT_S)
            history = [{"version": u.version, "frames": u.frames, "objects": u.objects, "epochs": u.epochs,
                        "loss_before": u.loss_before, "loss_after": u.loss_after, "train_s": u.train_s,
                        "swapped": u.swapped} for u in updates if u.node == name]
            nodes[name] = {
                "kind": "cloud" if name == "cloud" else "edge", "inferred": len(mine),
                "fps": round(len(mine) / duration, 2) if duration > 0 else 0.0,
                "recent_fps": round(recent / RECENT_S, 2),
                "model_version": max((u["version"] for u in history), default=0),
                "retraining": history, "queue_length": None, "alive": None,
            }
        return nodes

    # -- per camera -------------------------------------------------------------------------
    def series(self, run_id: str, camera: int, bucket_s: float = 1.0, max_buckets: int = 300) -> dict:
        """Uplink kbps, mean latency (ms) and frames per ``bucket_s`` of capture time."""
        with self.sessions() as session:
            rows = session.execute(select(FrameRow.t_capture, FrameRow.t_done, FrameRow.state, FrameRow.nbytes)
                                   .where(FrameRow.run_id == run_id, FrameRow.camera == camera)).all()
        if not rows:
            return {"t": [], "kbps": [], "latency_ms": [], "frames": []}
        start = min(r.t_capture for r in rows)
        buckets: dict[int, list] = defaultdict(list)
        for r in rows:
            buckets[int((r.t_capture - start) // bucket_s)].append(r)
        keys = sorted(buckets)[-max_buckets:]
        out: dict[str, list] = {"t": [], "kbps": [], "latency_ms": [], "frames": []}
        for k in keys:
            items = buckets[k]
            lat = [(r.t_done - r.t_capture) * 1000 for r in items if r.state == "inferred"]
            out["t"].append(round(k * bucket_s, 3))
            out["kbps"].append(round(sum(r.nbytes or 0 for r in items) * 8 / 1000 / bucket_s, 2))
            out["latency_ms"].append(round(sum(lat) / len(lat), 1) if lat else None)
            out["frames"].append(len(items))
        return out

    def recent_frames(self, run_id: str, camera: int, last: int = 120) -> list[dict]:
        """The last ``last`` recorded frames: state and where each was inferred."""
        with self.sessions() as session:
            rows = session.execute(select(FrameRow.frame, FrameRow.state, FrameRow.where, FrameRow.reason)
                                   .where(FrameRow.run_id == run_id, FrameRow.camera == camera)
                                   .order_by(FrameRow.frame.desc()).limit(last)).all()
        return [{"frame": r.frame, "state": r.state, "where": r.where, "reason": r.reason} for r in reversed(rows)]

    def latest_result(self, run_id: str, camera: int) -> tuple[CameraRow, int, Detections] | None:
        """The camera's row, its most recent inferred frame and that frame's detections."""
        with self.sessions() as session:
            row = session.get(CameraRow, (run_id, camera))
            frame = session.scalar(select(func.max(FrameRow.frame)).where(
                FrameRow.run_id == run_id, FrameRow.camera == camera, FrameRow.state == "inferred"))
            if row is None or frame is None:
                return None
            dets = load_detections(session, run_id, camera, RESULT, [frame])[frame]
            session.expunge(row)
        return row, frame, dets
