"""The results writer when the database goes away: bounded retries, then a journal on disk,
handed back when the database returns (in the same run, or at the next start), and a loud
count of what is still waiting when the writer closes. The database is a real SQLite file
made unwritable by another connection holding an exclusive lock."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
from sqlalchemy import func, select

from edgeva.models import Detections
from edgeva.runtime.store import (
    CameraRow,
    DetectionRow,
    FrameRecord,
    FrameRow,
    ResultWriter,
    open_store,
    start_run,
)
from runtime_support import wait_for

DETS = Detections(np.array([[0, 0, 10, 10]], np.float32), [0.9], [0])


class _Lock:
    """Another process's exclusive lock on the SQLite file: every other writer fails."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _count(sessions, table=FrameRow) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table))


def test_outage_mid_run_goes_through_the_journal_and_loses_nothing(tmp_path, caplog):
    db = tmp_path / "r.db"
    sessions = open_store(str(db))
    start_run(sessions, "r1", policy="edge-local", config_json="{}")
    writer = ResultWriter(sessions, "r1", batch_size=4, flush_s=0.05, attempts=1, name="camera-1")
    writer.update_camera(1, source="clip", start=0, step=1, width=None, height=None, frames_read=0, started=0.0,
                         finished=None, status="running")
    for frame in range(8):
        writer.put(FrameRecord(1, frame, "inferred", 0.0, 1.0, where="edge-1", detections=DETS))
    wait_for(lambda: writer.written == 8)
    caplog.set_level(logging.WARNING)
    lock = _Lock(db)
    try:
        for frame in range(8, 20):
            writer.put(FrameRecord(1, frame, "dropped" if frame % 2 else "inferred", 0.0, 1.0, reason="x", where="edge-1",
                                   detections=DETS))
        wait_for(lambda: writer.pending == 12)  # all of them journalled, none lost, none written
        assert writer.journal.path.is_file()
    finally:
        lock.release()
    writer.update_camera(1, frames_read=20, finished=2.0, status="finished")
    wait_for(lambda: writer.pending == 0)  # handed back while the run goes on
    assert writer.close() == 0
    assert not writer.journal.path.exists()
    assert _count(sessions) == 20 and _count(sessions, DetectionRow) == 20
    with sessions() as session:
        assert session.get(CameraRow, ("r1", 1)).status == "finished"  # order kept: the last word wins
    assert "unavailable" in caplog.text and "is back: 12 journalled frame records written" in caplog.text


def test_records_journalled_at_close_are_named_and_written_at_the_next_start(tmp_path, caplog):
    db = tmp_path / "r.db"
    sessions = open_store(str(db))
    start_run(sessions, "r1", policy="edge-local", config_json="{}")
    caplog.set_level(logging.ERROR)
    lock = _Lock(db)
    try:
        writer = ResultWriter(sessions, "r1", batch_size=5, flush_s=0.05, attempts=2, name="camera-2", close_wait_s=1.0)
        for frame in range(10):
            writer.put(FrameRecord(2, frame, "reused" if frame else "inferred", 0.0, 1.0, reuses=0, where="edge-1"))
        left = writer.close()
    finally:
        lock.release()
    assert left == 10 and writer.journal.path.is_file()
    assert f"10 frame records were not written; they are kept in {writer.journal.path}" in caplog.text
    assert _count(sessions) == 0
    again = ResultWriter(open_store(str(db)), "r2", flush_s=0.05, name="camera-2")  # the next start
    assert again.replayed == 10 and not writer.journal.path.exists()
    assert again.close() == 0
    assert _count(sessions) == 10
