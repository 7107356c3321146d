"""The runtime's results database (SQLAlchemy, on edgeva's shared ``Base``).

Tables: runs; cameras in a run; frames (one row per frame a camera read, in exactly one
state: ``inferred`` with where, ``reused`` with the frame whose result it reuses, or
``dropped`` with a reason; with the time stamp of every stage); detections (the result of
each inferred frame, and the golden model's reference on the original frame); model updates
(continuous-learning rounds).

:class:`ResultWriter` batches frame records on a background thread and commits each batch
in one transaction. Writes are idempotent on (run, camera, frame): a batch replaces the rows
of its frames, so a batch that is re-sent after a failure (or a chunk re-inferred after an
edge died) leaves exactly one row per frame. A batch whose commit fails is kept and retried
with back-off, so a crash of the database loses nothing that has not been handed over.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Float, Integer, String, Text, delete, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from edgeva.models import Detections
from edgeva.store.base import Base, connect

__all__ = [
    "RunRow", "CameraRow", "FrameRow", "DetectionRow", "ModelUpdateRow", "FrameRecord", "ResultWriter",
    "open_store", "start_run", "finish_run", "record_camera", "record_model_update", "write_references",
    "load_detections", "STATES",
]

log = logging.getLogger(__name__)

STATES = ("inferred", "reused", "dropped")
RESULT, REFERENCE = "result", "reference"


class RunRow(Base):
    __tablename__ = "runtime_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    policy: Mapped[str] = mapped_column(String(64))
    config: Mapped[str] = mapped_column(Text)  # the validated config, as JSON
    started: Mapped[float] = mapped_column(Float)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running | finished | interrupted | failed


class CameraRow(Base):
    __tablename__ = "runtime_cameras"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    start: Mapped[int] = mapped_column(Integer)  # source frame reading started at
    step: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)  # resize, if any
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frames_read: Mapped[int] = mapped_column(Integer)
    started: Mapped[float] = mapped_column(Float)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    evaluated: Mapped[float | None] = mapped_column(Float, nullable=True)  # when references were stored


class FrameRow(Base):
    __tablename__ = "runtime_frames"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[int] = mapped_column(Integer, primary_key=True)
    frame: Mapped[int] = mapped_column(Integer, primary_key=True)  # source frame index
    state: Mapped[str] = mapped_column(String(16))  # inferred | reused | dropped
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # why dropped
    where: Mapped[str | None] = mapped_column(String(64), nullable=True)  # edge-N, cloud, edge-N+cloud
    reuses: Mapped[int | None] = mapped_column(Integer, nullable=True)  # frame whose result a reused frame takes
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nbytes: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the frame's share of its chunk
    scale: Mapped[float | None] = mapped_column(Float, nullable=True)  # resolution of an offloaded frame
    crf: Mapped[int | None] = mapped_column(Integer, nullable=True)  # CRF of an offloaded frame
    t_capture: Mapped[float] = mapped_column(Float)  # epoch seconds at each stage
    t_send: Mapped[float | None] = mapped_column(Float, nullable=True)
    t_receive: Mapped[float | None] = mapped_column(Float, nullable=True)
    t_start: Mapped[float | None] = mapped_column(Float, nullable=True)
    t_end: Mapped[float | None] = mapped_column(Float, nullable=True)
    t_done: Mapped[float] = mapped_column(Float)  # result back at the camera (or decision made)


class DetectionRow(Base):
    __tablename__ = "runtime_detections"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[int] = mapped_column(Integer, primary_key=True)
    frame: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # result | reference
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    class_id: Mapped[int] = mapped_column(Integer)


class ModelUpdateRow(Base):
    __tablename__ = "runtime_model_updates"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    frames: Mapped[int] = mapped_column(Integer)
    objects: Mapped[int] = mapped_column(Integer)  # golden-model labels trained on
    epochs: Mapped[int] = mapped_column(Integer)
    loss_before: Mapped[float] = mapped_column(Float)
    loss_after: Mapped[float] = mapped_column(Float)
    train_s: Mapped[float] = mapped_column(Float)
    swapped: Mapped[float] = mapped_column(Float)  # when the edge started serving it


@dataclass
class FrameRecord:
    """The final state of one frame, as the camera learned it."""

    camera: int
    frame: int
    state: str
    t_capture: float
    t_done: float
    where: str | None = None
    reason: str | None = None
    reuses: int | None = None
    detections: Detections | None = None
    model_version: int | None = None
    nbytes: int | None = None
    scale: float | None = None
    crf: int | None = None
    t_send: float | None = None
    t_receive: float | None = None
    t_start: float | None = None
    t_end: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"frame {self.frame}: state {self.state!r} is not one of {STATES}")
        if self.state == "dropped" and not self.reason:
            raise ValueError(f"frame {self.frame}: a dropped frame needs a reason")
        if self.state == "reused" and self.reuses is None:
            raise ValueError(f"frame {self.frame}: a reused frame names the frame it reuses")


def _detection_rows(run_id: str, camera: int, frame: int, kind: str, dets: Detections) -> list[dict]:
    return [
        {"run_id": run_id, "camera": camera, "frame": frame, "kind": kind, "idx": i,
         "x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3]), "score": float(s), "class_id": int(c)}
        for i, (b, s, c) in enumerate(zip(dets.boxes, dets.scores, dets.class_ids, strict=True))
    ]


def _frame_row(run_id: str, r: FrameRecord) -> dict:
    return {
        "run_id": run_id, "camera": r.camera, "frame": r.frame, "state": r.state, "reason": r.reason, "where": r.where,
        "reuses": r.reuses, "model_version": r.model_version, "nbytes": r.nbytes, "scale": r.scale, "crf": r.crf,
        "t_capture": r.t_capture, "t_send": r.t_send, "t_receive": r.t_receive, "t_start": r.t_start,
        "t_end": r.t_end, "t_done": r.t_done,
    }


def _replace_frames(session: Session, run_id: str, records: Sequence[FrameRecord]) -> None:
    """Delete-then-insert the rows of these frames: idempotent on every SQL dialect."""
    by_key = {(r.camera, r.frame): r for r in records}  # the last word on a frame wins
    keys = list(by_key)
    for start in range(0, len(keys), 200):
        part = keys[start : start + 200]
        session.execute(delete(FrameRow).where(FrameRow.run_id == run_id, tuple_(FrameRow.camera, FrameRow.frame).in_(part)))
        session.execute(delete(DetectionRow).where(
            DetectionRow.run_id == run_id, DetectionRow.kind == RESULT,
            tuple_(DetectionRow.camera, DetectionRow.frame).in_(part)))
    session.execute(FrameRow.__table__.insert(), [_frame_row(run_id, r) for r in by_key.values()])
    detections = [row for r in by_key.values() if r.detections is not None
                  for row in _detection_rows(run_id, r.camera, r.frame, RESULT, r.detections)]
    if detections:
        session.execute(DetectionRow.__table__.insert(), detections)


class ResultWriter:
    """Batches :class:`FrameRecord` s into transactions on a background thread.

    Args:
        sessions: session factory of the results database.
        run_id: every record belongs to this run.
        batch_size: commit when this many records wait.
        flush_s: and at least this often.
    """

    def __init__(self, sessions: sessionmaker, run_id: str, *, batch_size: int = 64, flush_s: float = 0.5):
        self.sessions, self.run_id = sessions, run_id
        self.batch_size, self.flush_s = batch_size, flush_s
        self._queue: queue.Queue = queue.Queue()
        self.written = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)
        self._thread.start()

    def put(self, record: FrameRecord) -> None:
        if self._closed.is_set():
            raise RuntimeError("ResultWriter is closed")
        self._queue.put(record)

    def _commit(self, batch: list[FrameRecord]) -> None:
        delay = 0.05
        while True:
            try:
                with self.sessions.begin() as session:
                    _replace_frames(session, self.run_id, batch)
                self.written += len(batch)
                return
            except SQLAlchemyError as exc:  # locked or unreachable: keep the batch, try again
                log.warning("results database: commit of %d frames failed (%s); retrying in %.2f s",
                            len(batch), str(exc).splitlines()[0][:200], delay)
                time.sleep(delay)
                delay = min(2 * delay, 5.0)

    def _run(self) -> None:
        batch: list[FrameRecord] = []
        deadline = time.monotonic() + self.flush_s
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is not None:
                batch.append(item)
            done = self._closed.is_set() and self._queue.empty()
            if batch and (len(batch) >= self.batch_size or time.monotonic() >= deadline or done):
                self._commit(batch)
                batch = []
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_s
            if done:
                return

    def close(self, timeout: float = 60.0) -> None:
        """Commit everything handed over, then stop."""
        self._closed.set()
        self._thread.join(timeout)


def open_store(url: str) -> sessionmaker:
    """Session factory of the results database at ``url`` (tables created)."""
    return connect(url)[1]


def start_run(sessions: sessionmaker, run_id: str, *, policy: str, config_json: str) -> None:
    """Create the run's row unless it exists (every service of a run may call this)."""
    with sessions.begin() as session:
        if session.get(RunRow, run_id) is None:
            session.add(RunRow(id=run_id, policy=policy, config=config_json, started=time.time(), status="running"))


def finish_run(sessions: sessionmaker, run_id: str, status: str) -> None:
    with sessions.begin() as session:
        run = session.get(RunRow, run_id)
        if run is not None:
            run.finished, run.status = time.time(), status


def record_camera(sessions: sessionmaker, run_id: str, camera: int, **values: object) -> None:
    """Insert or update a camera's row (its source, frames read, start and end)."""
    with sessions.begin() as session:
        row = session.get(CameraRow, (run_id, camera))
        if row is None:
            session.add(CameraRow(run_id=run_id, camera=camera, **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)


def record_model_update(sessions: sessionmaker, run_id: str, node: str, **values: object) -> None:
    with sessions.begin() as session:
        session.merge(ModelUpdateRow(run_id=run_id, node=node, **values))


def write_references(sessions: sessionmaker, run_id: str, camera: int, references: dict[int, Detections]) -> None:
    """Store the golden model's detections on original frames (replacing earlier ones)."""
    with sessions.begin() as session:
        session.execute(delete(DetectionRow).where(
            DetectionRow.run_id == run_id, DetectionRow.camera == camera, DetectionRow.kind == REFERENCE))
        rows = [row for frame, dets in references.items() for row in _detection_rows(run_id, camera, frame, REFERENCE, dets)]
        if rows:
            session.execute(DetectionRow.__table__.insert(), rows)
        row = session.get(CameraRow, (run_id, camera))
        if row is not None:
            row.evaluated = time.time()


def load_detections(session: Session, run_id: str, camera: int, kind: str, frames: Iterable[int]) -> dict[int, Detections]:
    """``{frame: Detections}`` for the given frames (empty where nothing was found)."""
    out: dict[int, list] = {f: [] for f in frames}
    rows = session.execute(
        select(DetectionRow.frame, DetectionRow.x1, DetectionRow.y1, DetectionRow.x2, DetectionRow.y2,
               DetectionRow.score, DetectionRow.class_id)
        .where(DetectionRow.run_id == run_id, DetectionRow.camera == camera, DetectionRow.kind == kind)
        .order_by(DetectionRow.frame, DetectionRow.idx)
    )
    for frame, *values in rows:
        if frame in out:
            out[frame].append(values)
    result = {}
    for frame, values in out.items():
        if values:
            array = np.asarray(values, dtype=np.float64)
            result[frame] = Detections(array[:, :4], array[:, 4], array[:, 5].astype(np.int64))
        else:
            result[frame] = Detections.empty()
    return result
