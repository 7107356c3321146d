"""``edgeva dashboard`` and ``edgeva migrate``: operating a cluster's results database."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeva.cli.app import app, console
from edgeva.errors import EdgevaError

__all__: list[str] = []


@app.command()
def dashboard(
    db: Annotated[str, typer.Option(help="Results database URL or SQLite file (opened read-only).")],
    port: Annotated[int, typer.Option(help="Port to serve on (0: a free one).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    run: Annotated[str | None, typer.Option(help="Show this run (default: the most recent one, followed).")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Cluster YAML: also show its nodes' live "
                                                "queue lengths and model versions.")] = None,
    refresh: Annotated[float, typer.Option(help="Seconds between page refreshes.")] = 1.0,
) -> None:
    """Serve the web dashboard of a running or finished run: cameras, live views, nodes."""
    import logging

    from edgeva.dashboard.server import DashboardServer, create_app

    if refresh <= 0:
        raise EdgevaError(f"--refresh {refresh}: must be > 0")
    cluster = None
    if config is not None:
        from edgeva.runtime.config import load_config

        cluster = load_config(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = DashboardServer(create_app(db, run=run, config=cluster, refresh_s=refresh), host, port)
    console.print(f"edgeva dashboard on {server.url} (read-only view of {db}); Ctrl-C stops it")
    server.serve_forever()


@app.command()
def migrate(db: Annotated[str, typer.Option(help="Results database URL or SQLite file.")]) -> None:
    """Bring a results database to the newest schema (Alembic migrations; every service also does this)."""
    from edgeva.store import connect
    from edgeva.store.migrate import current_revision

    engine, _ = connect(db)
    with engine.connect() as connection:
        console.print(f"{db}: schema revision {current_revision(connection)}")
