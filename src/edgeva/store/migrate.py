"""Schema migrations of edgeva's results databases, through Alembic.

Every service of a cluster, the evaluation harness and the dashboard open the same database,
possibly at the same moment and from several hosts. :func:`upgrade` brings a database to the
newest schema revision (``migrations/versions``) under a lock (PostgreSQL: an advisory lock;
MySQL/MariaDB: ``GET_LOCK``; SQLite: a lock file beside the database), so concurrent callers
wait for the first one instead of racing to create tables. Databases made by edgeva before
migrations existed are adopted by the baseline revision (it creates only missing tables).
A database whose revision is newer than this edgeva's is refused with one error line.

To change the schema: edit the tables, then add a revision next to the others in ``migrations/versions``
(``alembic revision`` with ``script_location`` pointing at ``edgeva/store/migrations``, or
by hand); ``tests/test_store_migrations.py`` fails while the models and the migrations differ.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from edgeva.errors import ConfigError

__all__ = ["upgrade", "head_revision", "current_revision", "alembic_config"]

_LOCK_KEY = 0x6564_6765_7661  # "edgeva": the advisory lock every migrating process takes
_done: set[str] = set()  # URLs already at head in this process
_guard = threading.Lock()


def alembic_config() -> Config:
    """Alembic's configuration for edgeva's migration scripts (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return config


def head_revision() -> str:
    """The newest schema revision this edgeva knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The database's schema revision (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _server_lock(connection: Connection) -> None:
    """Serialise migrations across processes and hosts (released at the transaction's end)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif dialect in ("mysql", "mariadb"):
        connection.execute(text("SELECT GET_LOCK('edgeva_migrate', 120)"))


def upgrade(engine: Engine) -> str:
    """Bring the database behind ``engine`` to the head revision; returns that revision.

    Raises:
        ConfigError: the database has a revision this edgeva does not know (made by a newer one).
    """
    key = engine.url.render_as_string(hide_password=False)
    with _guard:
        if key in _done:
            return head_revision()
        script = ScriptDirectory.from_config(alembic_config())
        head = script.get_current_head()
        with _file_lock(engine), engine.begin() as connection:
            _server_lock(connection)
            current = current_revision(connection)
            if current != head:
                known = {rev.revision for rev in script.walk_revisions()}
                if current is not None and current not in known:
                    shown = engine.url.render_as_string(hide_password=True)
                    raise ConfigError(f"database {shown}: schema revision {current} is newer than this edgeva's "
                                      f"({head}); upgrade edgeva")
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        _done.add(key)
        return head
