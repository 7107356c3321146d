"""The runtime's results database (SQLAlchemy, on edgeva's shared ``Base``).

Tables: runs; cameras in a run; frames (one row per frame a camera read, in exactly one
state: ``inferred`` with where, ``reused`` with the frame whose result it reuses, or
``dropped`` with a reason; with the time stamp of every stage); detections (the result of
each inferred frame, and the golden model's reference on the original frame); model updates
(continuous-learning rounds, swapped in or refused by the validation gate).

:class:`ResultWriter` batches frame records on a background thread and commits each batch
in one transaction. Writes are idempotent on (run, camera, frame): a batch replaces the rows
of its frames, so a batch that is re-sent after a failure (or a chunk re-inferred after an
edge died) leaves exactly one row per frame. A batch whose commit keeps failing (a few
attempts with back-off) goes to a :class:`Journal` file beside the database, and so does
everything after it until the database takes the journal back (tried every few seconds,
in order); journals left by an earlier run are written when the next writer starts. What is
still journalled when a writer closes is named in a loud error, never dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from sqlalchemy import Boolean, Float, Integer, String, Text, delete, event, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from edgeva.backoff import Backoff, retrying
from edgeva.models import Detections
from edgeva.runtime.journal import Journal, journal_dir, replay_journals
from edgeva.store.base import Base, connect

__all__ = [
    "RunRow", "CameraRow", "FrameRow", "DetectionRow", "ModelUpdateRow", "FrameRecord", "ResultWriter",
    "open_store", "start_run", "finish_run", "record_camera", "record_model_update", "write_references",
    "load_detections", "replay_pending", "STATES",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_S = 2.0  # a locked SQLite file fails a statement after this long (then the writer's back-off)
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
    swapped: Mapped[float] = mapped_column(Float)  # when the edge started serving it (or refused it)
    accepted: Mapped[bool] = mapped_column(Boolean, default=True)  # False: the validation gate refused it
    f1_before: Mapped[float | None] = mapped_column(Float, nullable=True)  # serving model on the validation frames
    f1_after: Mapped[float | None] = mapped_column(Float, nullable=True)  # the update on them
    validation_frames: Mapped[int] = mapped_column(Integer, default=0)


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


def _record_json(r: FrameRecord) -> dict:
    data = {f.name: getattr(r, f.name) for f in fields(FrameRecord) if f.name not in ("detections", "extra")}
    if r.detections is not None:
        data["detections"] = [r.detections.boxes.tolist(), r.detections.scores.tolist(), r.detections.class_ids.tolist()]
    return data


def _record_from_json(data: dict) -> FrameRecord:
    dets = data.pop("detections", None)
    record = FrameRecord(**data)
    if dets is not None:
        boxes, scores, classes = dets
        record.detections = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                                       np.asarray(classes, np.int64))
    return record


def _apply(session: Session, entry: dict) -> int:
    """Write one journal entry (a frames batch or a camera row); returns frames written."""
    if entry["kind"] == "camera":
        _upsert_camera(session, entry["run"], entry["camera"], entry["values"])
        return 0
    records = [_record_from_json(dict(r)) for r in entry["records"]]
    _replace_frames(session, entry["run"], records)
    return len(records)


def _upsert_camera(session: Session, run_id: str, camera: int, values: dict) -> None:
    row = session.get(CameraRow, (run_id, camera))
    if row is None:
        session.add(CameraRow(run_id=run_id, camera=camera, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)


class ResultWriter:
    """Batches :class:`FrameRecord` s (and camera-row updates) into transactions on a
    background thread; what the database does not take waits in a :class:`Journal`.

    Args:
        sessions: session factory of the results database.
        run_id: every record belongs to this run.
        batch_size: commit when this many records wait.
        flush_s: and at least this often.
        attempts: tries of one commit before the batch goes to the journal.
        journal: the journal folder (default: beside the database, see :func:`journal_dir`).
        name: names this writer's journal file (e.g. the camera).
        close_wait_s: on close, how long a journal is still offered to the database (with
            back-off) before the writer gives up on it and says so.
    """

    def __init__(self, sessions: sessionmaker, run_id: str, *, batch_size: int = 64, flush_s: float = 0.5,
                 attempts: int = 4, journal: Path | None = None, name: str = "writer", close_wait_s: float = 30.0):
        self.sessions, self.run_id = sessions, run_id
        self.batch_size, self.flush_s, self.attempts = batch_size, flush_s, attempts
        self.close_wait_s = close_wait_s
        url = sessions.kw["bind"].url
        self.database = url.render_as_string(hide_password=True)
        folder = journal_dir(url.render_as_string(hide_password=False), journal)
        self.journal = Journal(folder, f"{run_id}-{name}")
        self._queue: queue.Queue = queue.Queue()
        self.written = 0
        self.replayed = replay_journals(sessions, folder, _apply, skip=self.journal.path)  # what earlier runs left
        self._retry_at = 0.0  # next attempt to hand the journal over, while it holds entries
        self._probe = Backoff(0.5, 2.0, 5.0).delays()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Frame records journalled and not (yet) in the database."""
        return self.journal.pending

    def put(self, record: FrameRecord) -> None:
        if self._closed.is_set():
            raise RuntimeError("ResultWriter is closed")
        self._queue.put(record)

    def update_camera(self, camera: int, **values: object) -> None:
        """Insert or update a camera's row, in order with the frame records put before it."""
        if self._closed.is_set():
            raise RuntimeError("ResultWriter is closed")
        self._queue.put(("camera", camera, values))

    def _entries(self, batch: list) -> list[dict]:
        entries, frames = [], []
        for item in batch:
            if isinstance(item, FrameRecord):
                frames.append(item)
                continue
            if frames:
                entries.append({"kind": "frames", "run": self.run_id, "records": [_record_json(r) for r in frames]})
                frames = []
            entries.append({"kind": "camera", "run": self.run_id, "camera": item[1], "values": item[2]})
        if frames:
            entries.append({"kind": "frames", "run": self.run_id, "records": [_record_json(r) for r in frames]})
        return entries

    def _commit(self, batch: list) -> None:
        entries = self._entries(batch)
        if self.journal.entries and not self._hand_over():  # keep the order: the journal goes first
            for entry in entries:
                self.journal.append(entry)
            return

        def write() -> int:
            with self.sessions.begin() as session:
                return sum(_apply(session, dict(entry)) for entry in entries)

        def note(exc: Exception, attempt: int, delay: float) -> None:
            log.warning("results database %s: commit of %d records failed (%s); attempt %d of %d in %.2f s",
                        self.database, len(batch), str(exc).splitlines()[0][:200], attempt + 1, self.attempts, delay)

        try:
            self.written += retrying(write, backoff=Backoff(0.1, 2.0, 2.0), attempts=self.attempts, on_retry=note,
                                     should_retry=lambda e: isinstance(e, SQLAlchemyError))
        except SQLAlchemyError as exc:
            for entry in entries:
                self.journal.append(entry)
            self._retry_at = time.monotonic() + next(self._probe)
            log.error("results database %s unavailable (%s): %d frame records kept in %s until it is back",
                      self.database, str(exc).splitlines()[0][:200], self.pending, self.journal.path)

    def _hand_over(self, force: bool = False) -> bool:
        """Try to write the journal into the database (at most every few seconds unless forced)."""
        if not self.journal.entries:
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        count = self.journal.pending
        try:
            self.written += self.journal.replay(self.sessions, _apply)
        except (SQLAlchemyError, OSError):
            self._retry_at = time.monotonic() + next(self._probe)
            return False
        self._probe = Backoff(0.5, 2.0, 5.0).delays()
        log.warning("results database %s is back: %d journalled frame records written", self.database, count)
        return True

    def _run(self) -> None:
        batch: list = []
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
            elif self.journal.entries:
                self._hand_over()
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_s
            if done:
                end = time.monotonic() + self.close_wait_s  # a short outage at the end still loses nothing
                while not self._hand_over(force=True) and time.monotonic() < end:
                    time.sleep(min(max(0.0, self._retry_at - time.monotonic()), max(0.0, end - time.monotonic())))
                return

    def close(self, timeout: float = 300.0) -> int:
        """Commit everything handed over (or journal it), then stop.

        Returns:
            Frame records left in the journal (0 when the database took everything); a
            non-zero count is also logged as an error naming the journal file.
        """
        self._closed.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("results database %s: the writer is still busy after %.0f s; %d records queued",
                      self.database, timeout, self._queue.qsize())
            return self.pending + self._queue.qsize()
        if self.pending:
            log.error("results database %s unavailable: %d frame records were not written; they are kept in %s and "
                      "written when the next run starts", self.database, self.pending, self.journal.path)
        return self.pending


def replay_pending(sessions: sessionmaker, journal: Path | None = None) -> int:
    """Write the journals waiting beside a database (``edgeva results`` calls it); returns frames written."""
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    return replay_journals(sessions, journal_dir(url, journal), _apply)


def open_store(url: str) -> sessionmaker:
    """Session factory of the results database at ``url`` (tables created). A locked SQLite
    file fails a statement after ``SQLITE_BUSY_S`` (the callers retry), not after 5 s."""
    engine, sessions = connect(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _busy_timeout)
        engine.dispose()  # connections opened from now on get the timeout
    return sessions


def _busy_timeout(dbapi_connection, _record) -> None:  # pragma: no cover - driver callback
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
    cursor.close()


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
        _upsert_camera(session, run_id, camera, values)


def record_model_update(sessions: sessionmaker, run_id: str, node: str, **values: object) -> None:
    """Store a retraining round (retried a few times: a locked database must not lose it).

    Raises:
        SQLAlchemyError: the database did not take it.
    """

    def write() -> None:
        with sessions.begin() as session:
            session.merge(ModelUpdateRow(run_id=run_id, node=node, **values))

    retrying(write, backoff=Backoff(0.2, 2.0, 2.0), attempts=5, should_retry=lambda e: isinstance(e, SQLAlchemyError))


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
