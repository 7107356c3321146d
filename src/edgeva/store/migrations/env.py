"""Alembic environment of edgeva's results databases.

edgeva runs migrations itself (:func:`edgeva.store.migrate.upgrade`) on a connection it
opened, passed in ``config.attributes["connection"]``; the ``alembic`` command line works
too (``alembic -x url=URL upgrade head`` from this folder's parent, with an ``alembic.ini``
naming ``script_location``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from edgeva.store.base import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # pragma: no cover - the alembic command line
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        _run(conn)
