"""Databases for the store tests: a SQLite file, or a fresh PostgreSQL database on the local
server (127.0.0.1:5432, trust auth) with a random name, dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

PG = "host=127.0.0.1 port=5432 dbname=test connect_timeout=3"


def postgres_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG):
            return None
    except Exception as exc:  # any failure means: no server to test against
        return f"no PostgreSQL on 127.0.0.1:5432 ({type(exc).__name__}: {str(exc).strip()[:80]})"


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """URL of a new, empty database; dropped (with its connections) on exit."""
    import psycopg

    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    name = f"edgeva_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``edgeva ARGS`` in this process (as the entry point runs it): exit status and stderr."""
    from edgeva.cli import main

    monkeypatch.setattr("sys.argv", ["edgeva", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err
