"""Engine and session helpers shared by every edgeva table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from edgeva.errors import ConfigError

__all__ = ["Base", "connect", "default_url"]


class Base(DeclarativeBase):
    """Declarative base of all edgeva tables."""


def default_url(path: str | Path = "edgeva.db") -> str:
    """SQLite file URL for a path (the embedded default)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - driver callback
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect(url: str) -> tuple[Engine, sessionmaker]:
    """Engine and session factory for ``url``, with every edgeva table created.

    Raises:
        ConfigError: a malformed URL or a database that cannot be reached.
    """
    if "://" not in url:
        Path(url).expanduser().parent.mkdir(parents=True, exist_ok=True)  # a plain path: the SQLite file's folder
        url = default_url(url)
    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"database {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise ConfigError(f"database {url!r}: cannot connect ({exc.orig})") from None
    return engine, sessionmaker(engine, expire_on_commit=False)
