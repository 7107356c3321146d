"""Figures of a stored run, read back from the results database only.

Per camera (and for all cameras together): frames read and how many were inferred (split
by where), reused and dropped; throughput; latency of inferred frames (result back at the
camera minus capture); F1 against the golden model on the original frames, where those
references were stored. For F1 a reused frame counts with the result of the frame it
reuses, and a dropped frame with an empty result (everything in it missed).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from edgeva.errors import ConfigError
from edgeva.metrics.detection import DetectionF1, FrameCounts
from edgeva.models import Detections
from edgeva.runtime.store import (
    REFERENCE,
    RESULT,
    CameraRow,
    FrameRow,
    ModelUpdateRow,
    RunRow,
    load_detections,
)

__all__ = ["summarize", "latest_run"]


def latest_run(sessions: sessionmaker) -> str:
    """Id of the most recently started run.

    Raises:
        ConfigError: the database holds no run.
    """
    with sessions() as session:
        run = session.scalars(select(RunRow).order_by(RunRow.started.desc()).limit(1)).first()
    if run is None:
        raise ConfigError("results database: no runtime run stored")
    return run.id


def _latency_ms(rows: list[FrameRow]) -> tuple[float, float]:
    values = np.array([r.t_done - r.t_capture for r in rows if r.state == "inferred"]) * 1000
    if not values.size:
        return float("nan"), float("nan")
    return float(values.mean()), float(np.percentile(values, 95))


def _where_counts(rows: list[FrameRow], home: str | None) -> dict[str, int]:
    counts = Counter()
    for r in rows:
        if r.state != "inferred":
            continue
        if r.where and "+" in r.where:
            counts["assisted"] += 1
        elif r.where == "cloud":
            counts["cloud"] += 1
        elif r.where == home:
            counts["home"] += 1
        else:
            counts["other_edge"] += 1
    return counts


def _f1(session, run_id: str, camera: int, rows: list[FrameRow], evaluator: DetectionF1) -> float:
    frames = [r.frame for r in rows]
    results = load_detections(session, run_id, camera, RESULT, frames)
    references = load_detections(session, run_id, camera, REFERENCE, frames)
    state = {r.frame: r for r in rows}
    outputs = []
    for r in rows:
        if r.state == "inferred":
            outputs.append(results[r.frame])
        elif r.state == "reused" and r.reuses in state and state[r.reuses].state == "inferred":
            outputs.append(results[r.reuses])
        else:
            outputs.append(Detections.empty())
    counts = evaluator.process(outputs, [references[f] for f in frames])
    return FrameCounts(sum(c.tp for c in counts), sum(c.fp for c in counts), sum(c.fn for c in counts)).f1


def summarize(sessions: sessionmaker, run_id: str) -> dict:
    """``{"run", "policy", "status", "cameras": [row, ...], "total": row, "model_updates": [...]}``.

    Raises:
        ConfigError: no such run.
    """
    with sessions() as session:
        run = session.get(RunRow, run_id)
        if run is None:
            raise ConfigError(f"results database: no run {run_id!r}")
        homes = {c["id"]: f"edge-{c['edge']}" for c in json.loads(run.config).get("cameras", [])}
        cameras = session.scalars(select(CameraRow).where(CameraRow.run_id == run_id).order_by(CameraRow.camera)).all()
        evaluator = DetectionF1()
        rows, every = [], []
        evaluated_all = bool(cameras)
        for cam in cameras:
            frames = session.scalars(select(FrameRow).where(FrameRow.run_id == run_id, FrameRow.camera == cam.camera)
                                     .order_by(FrameRow.frame)).all()
            every += frames
            states = Counter(f.state for f in frames)
            duration = (cam.finished or max((f.t_done for f in frames), default=cam.started)) - cam.started
            mean, p95 = _latency_ms(frames)
            f1 = _f1(session, run_id, cam.camera, frames, evaluator) if cam.evaluated else None
            evaluated_all &= cam.evaluated is not None
            rows.append({
                "camera": cam.camera, "source": cam.source, "read": cam.frames_read, "recorded": len(frames),
                "inferred": states["inferred"], "reused": states["reused"], "dropped": states["dropped"],
                **{f"at_{k}": v for k, v in _where_counts(frames, homes.get(cam.camera)).items()},
                "seconds": duration, "fps": len(frames) / duration if duration > 0 else float("nan"),
                "latency_ms": mean, "p95_ms": p95, "f1": f1, "status": cam.status,
            })
        states = Counter(f.state for f in every)
        start = min((c.started for c in cameras), default=run.started)
        end = max((c.finished or c.started for c in cameras), default=start)
        mean, p95 = _latency_ms(every)
        total = {
            "camera": "all", "source": "", "read": sum(c.frames_read for c in cameras), "recorded": len(every),
            "inferred": states["inferred"], "reused": states["reused"], "dropped": states["dropped"],
            "seconds": end - start, "fps": len(every) / (end - start) if end > start else float("nan"),
            "latency_ms": mean, "p95_ms": p95, "f1": evaluator.evaluate()["f1"] if evaluated_all else None,
            "status": run.status,
            **{k: sum(r.get(k, 0) for r in rows) for k in ("at_home", "at_other_edge", "at_cloud", "at_assisted")},
        }
        updates = [
            {"node": u.node, "version": u.version, "frames": u.frames, "objects": u.objects, "epochs": u.epochs,
             "loss_before": u.loss_before, "loss_after": u.loss_after, "train_s": u.train_s,
             "accepted": u.accepted, "f1_before": u.f1_before, "f1_after": u.f1_after,
             "validation_frames": u.validation_frames}
            for u in session.scalars(select(ModelUpdateRow).where(ModelUpdateRow.run_id == run_id)
                                     .order_by(ModelUpdateRow.swapped))
        ]
    return {"run": run_id, "policy": run.policy, "status": run.status, "cameras": rows, "total": total,
            "model_updates": updates}
