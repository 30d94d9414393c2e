"""The embedded database's connection settings."""

from __future__ import annotations

import dataclasses

from sqlalchemy import text

from app import create_app
from app.config import Settings
from app.extensions import db
from tests.running import free_port


def test_sqlite_connections_use_the_write_ahead_log_without_a_sync_per_commit(tmp_path):
    settings = dataclasses.replace(
        Settings.from_env(),
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'settings.db'}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    with create_app(settings).app_context():
        pragma = {
            name: db.session.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    # synchronous 1 is NORMAL: in WAL mode a commit no longer waits for the disk, and the database stays
    # whole after a crash (a power loss may take the last commits back).
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 30000}
