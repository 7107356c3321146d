"""Where results wait while the database is away: one journal file per writer, JSON lines.

A writer appends the entries (batches of frame records, camera-row updates) the database
did not take, each line flushed to disk before the writer goes on. Handing a journal back
writes all its entries in one transaction, in order, and deletes the file. Journals left
behind (the database was still down when a camera ended, or a camera crashed) are written
by the next writer that starts on the same database. Entries are idempotent writes, so a
journal written twice leaves the same rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Journal", "replay_journals", "journal_dir"]

log = logging.getLogger(__name__)

Apply = Callable[[Session, dict], int]  # writes one entry, returns the frame records it held


class Journal:
    """Entries the database did not take, one JSON line each, in a file of its own (fsync'ed).

    Args:
        folder: where journals live (one per writer; shared by every writer of a database).
        name: this writer's file stem.
    """

    def __init__(self, folder: Path, name: str):
        self.folder = folder
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
        self.path = folder / f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.pending = 0  # frame records in this journal, not yet in the database
        self.entries = 0

    def append(self, entry: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries += 1
        self.pending += len(entry.get("records", ()))

    def replay(self, sessions: sessionmaker, apply: Apply) -> int:
        """Write every entry in one transaction, then delete the file; returns frames written.

        Raises:
            SQLAlchemyError: the database still does not take them (the file stays).
        """
        if not self.entries:
            return 0
        written = _replay_file(sessions, self.path, apply)
        self.pending = self.entries = 0
        return written


def _replay_file(sessions: sessionmaker, path: Path, apply: Apply) -> int:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a crash: everything before it is whole
            log.error("journal %s: line %d is incomplete and skipped", path, number)
    with sessions.begin() as session:
        written = sum(apply(session, entry) for entry in entries)
    path.unlink()
    return written


def replay_journals(sessions: sessionmaker, folder: Path, apply: Apply, *, skip: Path | None = None) -> int:
    """Write the journals a folder holds (left by earlier writers) into the database.

    Each file is claimed by renaming it first, so two writers starting together do not
    both replay it (a claim left by a crash is taken over after a minute). Returns the frame
    records written; a journal the database refuses stays for the next start.
    """
    if not folder.is_dir():
        return 0
    written = 0
    stale = time.time() - 60
    for path in sorted(folder.iterdir()):
        if path == skip or not (path.suffix == ".jsonl" or (path.suffix == ".replaying" and path.stat().st_mtime < stale)):
            continue
        claimed = path.with_suffix(".replaying")
        try:
            path.rename(claimed)
        except OSError:
            continue  # another writer took it
        try:
            count = _replay_file(sessions, claimed, apply)
        except (SQLAlchemyError, OSError) as exc:
            claimed.rename(claimed.with_suffix(".jsonl"))
            log.error("results database: journal %s not written yet (%s)", path, str(exc).splitlines()[0][:200])
            continue
        written += count
        log.warning("results database: wrote %d frame records journalled by an earlier run (%s)", count, path.name)
    return written


def journal_dir(url: str, configured: Path | None = None) -> Path:
    """Where a database's journals live: configured, ``<SQLite file>.pending/``, or ``runs/pending/<db>/``."""
    if configured is not None:
        return configured
    if "://" not in url:
        return Path(f"{url}.pending")
    if url.startswith("sqlite:///"):
        return Path(f"{url.removeprefix('sqlite:///')}.pending")
    return Path("runs/pending") / re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("@")[-1])[:80]
