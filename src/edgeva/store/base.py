"""Engine and session helpers shared by every edgeva table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from edgeva.errors import ConfigError

__all__ = ["Base", "connect", "connect_readonly", "default_url", "normalize_url", "shown_url"]


class Base(DeclarativeBase):
    """Declarative base of all edgeva tables."""


def default_url(path: str | Path = "edgeva.db") -> str:
    """SQLite file URL for a path (the embedded default)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def normalize_url(url: str) -> str:
    """A SQLAlchemy URL for ``url``: a plain path is a SQLite file; ``postgresql://`` and
    ``postgres://`` use psycopg 3 (the driver edgeva installs)."""
    if "://" not in url:
        return default_url(url)
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def shown_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - driver callback
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _engine(url: str, **kwargs) -> Engine:
    try:
        return create_engine(url, future=True, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"database {shown_url(url)}: {exc}") from None


def _unreachable(url: str, exc: DBAPIError) -> ConfigError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return ConfigError(f"database {shown_url(url)}: cannot connect ({reason})")


def connect(url: str) -> tuple[Engine, sessionmaker]:
    """Engine and session factory for ``url``, its schema migrated to the newest revision.

    Raises:
        ConfigError: a malformed URL, a database that cannot be reached, or one whose schema
            is newer than this edgeva.
    """
    from edgeva.store.migrate import upgrade

    if "://" not in url:
        Path(url).expanduser().parent.mkdir(parents=True, exist_ok=True)  # a plain path: the SQLite file's folder
    url = normalize_url(url)
    engine = _engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        upgrade(engine)
    except DBAPIError as exc:
        raise _unreachable(url, exc) from None
    return engine, sessionmaker(engine, expire_on_commit=False)


def connect_readonly(url: str, *, table: str) -> tuple[Engine, sessionmaker]:
    """Engine and session factory that never write: for looking at a finished or running run.

    A SQLite file is opened read-only (and must exist); a server database in read-only
    transactions. Nothing is created or migrated.

    Raises:
        ConfigError: the file is missing, the server unreachable, or ``table`` absent (not an
            edgeva results database).
    """
    given = url
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{url}: no such results database")
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    url = normalize_url(url)
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    engine = _engine(url, **kwargs)
    try:
        with engine.connect() as connection:
            found = inspect(connection).has_table(table)
    except DBAPIError as exc:
        raise _unreachable(given, exc) from None
    if not found:
        raise ConfigError(f"database {shown_url(given)}: not an edgeva results database (no table {table})")
    return engine, sessionmaker(engine, expire_on_commit=False)
