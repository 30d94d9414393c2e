"""The data directory and the SQLite database: readable by the service's user only.

Runs are sandboxed away from them too (app/execution/isolation.py); the modes keep other users of
the machine out.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from app.config import Settings

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# What SQLite keeps beside a database; it gives them the database file's mode when it makes them.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def prepare(settings: Settings) -> None:
    """Make the data directory (or tighten an existing one) and the SQLite file, private."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    settings.data_dir.chmod(DIRECTORY_MODE)
    database = sqlite_file(settings.database_url)
    if database is None:
        return
    os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        if path.exists():
            path.chmod(FILE_MODE)
