"""Results databases (SQLAlchemy). SQLite file by default; any database URL works.

``base.py`` holds the shared declarative base and engine helpers; each subsystem defines
its tables in its own module (the evaluation harness, the distributed runtime).
"""

from edgeva.store.base import Base, connect, connect_readonly, default_url, normalize_url, shown_url

__all__ = ["Base", "connect", "connect_readonly", "default_url", "normalize_url", "shown_url"]
