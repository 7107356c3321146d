"""The results stores on SQLite and on a real PostgreSQL server: Alembic migrations (schema
equals the models, concurrent first connections, databases from before migrations adopted,
newer schemas refused), three edges writing at once, idempotent re-writes, a run read back
identically from both, the evaluation store, and a wrong URL as one line."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text

from edgeva.errors import ConfigError
from edgeva.models import Detections
from edgeva.runtime.store import (
    CameraRow,
    DetectionRow,
    FrameRecord,
    FrameRow,
    ResultWriter,
    open_store,
    record_camera,
    start_run,
)
from edgeva.runtime.summary import summarize
from edgeva.store import Base, connect, migrate, normalize_url
from edgeva.store.evaluation import list_eval_runs, load_eval_run, save_eval
from edgeva.store.migrate import head_revision
from store_support import postgres_database, run_cli


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Each test using it runs on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "results.db")
    else:
        with postgres_database() as url:
            yield url


def _records(camera: int, frames: range, seed: int = 0) -> list[FrameRecord]:
    rng = np.random.default_rng(seed + camera)
    out = []
    for i in frames:
        t = 1000.0 + i / 25
        if i % 4 == 3:
            out.append(FrameRecord(camera, i, "reused", t, t + 0.01, reuses=i - 1))
        elif i % 17 == 16:
            out.append(FrameRecord(camera, i, "dropped", t, t + 0.2, reason="edge-1: QueueFull: inference queue full"))
        else:
            boxes = np.sort(rng.uniform(0, 400, (2, 4)).astype(np.float32).reshape(2, 2, 2), axis=1).reshape(2, 4)
            dets = Detections(boxes[:, [0, 2, 1, 3]], rng.uniform(0.3, 1, 2).astype(np.float32), np.array([0, 2]))
            out.append(FrameRecord(camera, i, "inferred", t, t + 0.3, where=f"edge-{1 + i % 3}", detections=dets,
                                   model_version=0, nbytes=900 + i, t_send=t + 0.02, t_receive=t + 0.05,
                                   t_start=t + 0.06, t_end=t + 0.1))
    return out


def _write(url: str, run: str, records: list[FrameRecord], batch: int = 16) -> None:
    writer = ResultWriter(open_store(url), run, batch_size=batch, flush_s=0.05)  # its own engine and connections
    for r in records:
        writer.put(r)
    writer.close()


def _start(url: str, run: str, cameras: list[int], frames: int) -> None:
    sessions = open_store(url)
    start_run(sessions, run, policy="edge-shortest", config_json='{"cameras": [{"id": 1, "edge": 1}]}')
    for cam in cameras:
        record_camera(sessions, run, cam, source="store-aisle-detection", start=0, step=1, width=None, height=None,
                      frames_read=frames, started=1000.0, finished=1000.0 + frames / 25, status="finished")


def test_migrated_schema_equals_the_models(database_url):
    engine, _ = connect(database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()


def test_first_connections_at_the_same_moment(database_url):
    code = "import sys; from edgeva.store import connect; connect(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, database_url], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine, _ = connect(database_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1


def test_a_database_from_before_migrations_is_adopted(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.tables["runtime_runs"].create(engine)  # what create_all made for the runtime alone
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runtime_runs VALUES ('old', 'edge-local', '{}', 1.0, NULL, 'finished')"))
    engine, sessions = connect(str(path))
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head_revision()
        assert conn.scalar(text("SELECT id FROM runtime_runs")) == "old"
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_a_newer_schema_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "new.db"
    connect(str(path))
    with create_engine(f"sqlite:///{path}").begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    monkeypatch.setattr(migrate, "_done", set())  # as in a fresh process
    with pytest.raises(ConfigError, match="schema revision 9999 is newer than this edgeva's"):
        connect(str(path))


def test_three_edges_write_at_once_and_rewrites_are_idempotent(database_url):
    run = "concurrent"
    _start(database_url, run, [1, 2, 3, 9], 120)
    shared = _records(9, range(40))  # frames every edge writes (a re-sent chunk, a re-inferred frame)

    def edge(camera: int) -> None:
        mine = _records(camera, range(120))
        _write(database_url, run, mine + shared)
        _write(database_url, run, mine[::-1], batch=7)  # the same frames again, other batches

    threads = [threading.Thread(target=edge, args=(c,)) for c in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    _, sessions = connect(database_url)
    with sessions() as session:
        frames = dict(session.execute(select(FrameRow.camera, func.count()).where(FrameRow.run_id == run)
                                      .group_by(FrameRow.camera)).all())
        boxes = session.scalar(select(func.count()).select_from(DetectionRow).where(DetectionRow.run_id == run))
    assert frames == {1: 120, 2: 120, 3: 120, 9: 40}
    inferred = sum(r.state == "inferred" for c in (1, 2, 3) for r in _records(c, range(120)))
    inferred += sum(r.state == "inferred" for r in shared)
    assert boxes == 2 * inferred


def test_a_run_reads_back_identically_from_sqlite_and_postgresql(tmp_path):
    records = _records(1, range(90)) + _records(2, range(60))
    summaries = []
    with postgres_database() as pg:
        for url in (str(tmp_path / "run.db"), pg):
            _start(url, "same", [1, 2], 90)
            _write(url, "same", records)
            _, sessions = connect(url)
            summary = summarize(sessions, "same")
            with sessions() as session:
                rows = [(r.camera, r.frame, r.state, r.where, r.reuses, r.nbytes, r.t_capture, r.t_done, r.reason)
                        for r in session.scalars(select(FrameRow).order_by(FrameRow.camera, FrameRow.frame))]
                cams = session.scalars(select(CameraRow).order_by(CameraRow.camera)).all()
                summaries.append((summary, rows, [(c.camera, c.frames_read, c.status) for c in cams]))
    assert summaries[0] == summaries[1]
    assert summaries[0][0]["total"]["recorded"] == 150


def test_the_evaluation_store_on_postgresql():
    with postgres_database() as url:
        record = {"video": "bottle", "scheme": "uniform", "config": {"crf": 30}, "f1": 0.95, "precision": 0.9,
                  "recall": 1.0, "bytes": 12000, "kbps": 96.0, "frames": 30, "sent_frames": 30, "delay_mean_s": 0.1,
                  "delay_p95_s": 0.2, "camera_ms_per_frame": 3.0, "server_ms_per_frame": 30.0}
        run = save_eval(url, model="yolox-nano", selector=None, target_f1=0.9, settings={"videos": ["bottle"]},
                        records=[record], best=[{**record, "reaches_target": True}])
        assert list_eval_runs(url)[0]["id"] == run
        settings, best = load_eval_run(url, run)
        assert settings["videos"] == ["bottle"] and best[0]["f1"] == 0.95 and best[0]["reaches_target"] is True


def test_a_wrong_postgresql_url_is_one_line(monkeypatch, capsys):
    url = "postgresql://127.0.0.1:5432/edgeva_no_such_database"
    with pytest.raises(ConfigError, match="cannot connect") as info:
        connect(url)
    assert "\n" not in str(info.value) and "edgeva_no_such_database" in str(info.value)
    status, err = run_cli(monkeypatch, capsys, "results", "--db", "postgresql://edgeva:s3cret@127.0.0.1:1/x")
    assert status == 2 and err.strip().count("\n") == 0, err
    assert err.startswith("edgeva: error: database") and "cannot connect" in err
    assert "s3cret" not in err  # the password is masked
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"


def test_the_read_only_view_refuses_writes(database_url):
    from sqlalchemy.exc import DBAPIError

    from edgeva.store import connect_readonly

    _start(database_url, "ro", [1], 4)
    _, sessions = connect_readonly(database_url, table="runtime_runs")
    with sessions() as session:
        assert session.scalar(text("SELECT count(*) FROM runtime_runs")) == 1
        with pytest.raises(DBAPIError, match="read-only|readonly"):
            session.execute(text("DELETE FROM runtime_runs"))
            session.commit()
