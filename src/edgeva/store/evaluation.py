"""Tables for evaluation runs, so runs can be listed and compared later (``edgeva runs``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from edgeva.store.base import Base, connect

__all__ = ["EvalRun", "EvalRecord", "save_eval", "list_eval_runs", "load_eval_run"]


class EvalRun(Base):
    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model: Mapped[str] = mapped_column(String(64))
    selector: Mapped[str | None] = mapped_column(String(512), nullable=True)
    target_f1: Mapped[float] = mapped_column(Float)
    settings: Mapped[dict] = mapped_column(JSON)  # videos, schemes, link, frames, codec...
    records: Mapped[list[EvalRecord]] = relationship(back_populates="run", cascade="all, delete-orphan")


class EvalRecord(Base):
    __tablename__ = "eval_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    video: Mapped[str] = mapped_column(String(256))
    scheme: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict] = mapped_column(JSON)
    f1: Mapped[float] = mapped_column(Float)
    precision: Mapped[float] = mapped_column(Float)
    recall: Mapped[float] = mapped_column(Float)
    bytes: Mapped[int] = mapped_column(Integer)
    kbps: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    sent_frames: Mapped[int] = mapped_column(Integer)
    delay_mean_s: Mapped[float] = mapped_column(Float)
    delay_p95_s: Mapped[float] = mapped_column(Float)
    camera_ms_per_frame: Mapped[float] = mapped_column(Float)
    server_ms_per_frame: Mapped[float] = mapped_column(Float)
    best: Mapped[bool] = mapped_column(Boolean, default=False)  # cheapest reaching the target for its video/scheme
    reaches_target: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    run: Mapped[EvalRun] = relationship(back_populates="records")


_FIELDS = ["f1", "precision", "recall", "bytes", "kbps", "frames", "sent_frames", "delay_mean_s", "delay_p95_s", "camera_ms_per_frame", "server_ms_per_frame"]


def save_eval(url: str, *, model: str, selector: str | None, target_f1: float, settings: dict, records: list[dict], best: list[dict]) -> int:
    """Store one evaluation; returns its run id."""
    _, Session = connect(url)
    best_keys = {(b["video"], b["scheme"], json.dumps(b["config"], sort_keys=True)): b["reaches_target"] for b in best}
    with Session.begin() as session:
        run = EvalRun(created_at=datetime.now(UTC), model=model, selector=selector, target_f1=target_f1, settings=settings)
        for r in records:
            key = (r["video"], r["scheme"], json.dumps(r["config"], sort_keys=True))
            run.records.append(EvalRecord(
                video=r["video"], scheme=r["scheme"], config=r["config"], best=key in best_keys,
                reaches_target=best_keys.get(key), **{f: r[f] for f in _FIELDS},
            ))
        session.add(run)
        session.flush()
        return run.id


def list_eval_runs(url: str) -> list[dict]:
    _, Session = connect(url)
    with Session() as session:
        runs = session.scalars(select(EvalRun).order_by(EvalRun.id)).all()
        return [
            {"id": r.id, "created_at": r.created_at.isoformat(timespec="seconds"), "model": r.model, "target_f1": r.target_f1,
             "videos": r.settings.get("videos", []), "schemes": r.settings.get("schemes", []), "records": len(r.records)}
            for r in runs
        ]


def load_eval_run(url: str, run_id: int) -> tuple[dict, list[dict]]:
    """(run settings, best records) of one stored run."""
    from edgeva.errors import ConfigError

    _, Session = connect(url)
    with Session() as session:
        run = session.get(EvalRun, run_id)
        if run is None:
            raise ConfigError(f"run {run_id}: not in {url}")
        best = [
            {"video": r.video, "scheme": r.scheme, "config": r.config, "reaches_target": r.reaches_target, **{f: getattr(r, f) for f in _FIELDS}}
            for r in run.records if r.best
        ]
        return {"id": run.id, "model": run.model, "target_f1": run.target_f1, **run.settings}, best
