"""Opsflow: an orchestration service that puts Ansible behind one REST API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """The application factory."""
    # Imported here so that `python -m app.execution.watchdog` stays light.
    from flask import Flask
    from sqlalchemy import event

    from app import datadir
    from app.api import (
        accounts,
        ad_hoc,
        audit,
        auth,
        credentials,
        danger_rules,
        dynamic_groups,
        errors,
        files,
        flows,
        groups,
        health,
        hosts,
        inventories,
        job_plans,
        job_templates,
        jobs,
        members,
        playbook_runs,
        projects,
        reachability,
        repositories,
        scripts,
        timed_jobs,
        transfers,
        users,
    )
    from app.api.openapi import SWAGGER_UI_ASSETS_URL, swagger_ui_assets
    from app.config import ROOT, Settings
    from app.extensions import api, db, migrate, redis
    from app.secrets import Cipher, load_key

    settings = settings or Settings.from_env()
    datadir.prepare(settings)
    app = Flask(__name__)
    app.config.update(
        OPSFLOW=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        # A thread holds one connection at a time: the pool keeps one per API thread, rather than closing
        # those beyond its default 5 after every burst and opening them again (a server process each).
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "pool_size": settings.api_threads},
        MAX_CONTENT_LENGTH=settings.request_max_bytes,
        API_TITLE="Opsflow",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_ASSETS_URL,
    )
    Cipher.configure(load_key(settings.secret_key, settings.secret_key_file))
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    redis.init_app(settings.redis_url)
    api.init_app(app)
    for module in (
        health,
        users,
        projects,
        members,
        hosts,
        groups,
        dynamic_groups,
        inventories,
        accounts,
        credentials,
        scripts,
        danger_rules,
        jobs,
        job_templates,
        job_plans,
        reachability,
        files,
        transfers,
        ad_hoc,
        flows,
        timed_jobs,
        repositories,
        playbook_runs,
        audit,
    ):
        api.register_blueprint(module.blp)
    api.register_blueprint(scripts.public_blp)
    api.register_blueprint(danger_rules.global_blp)
    app.register_blueprint(swagger_ui_assets)
    errors.register(app)
    auth.register(app)
    audit.register(app)

    if settings.database_url.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
    return app


def _sqlite_pragmas(connection, _record) -> None:
    # WAL lets the API read while the ingester writes; the busy timeout queues writers instead of failing.
    # synchronous=NORMAL: in WAL mode a commit does not wait for the disk (the log is synced at
    # checkpoints); the database stays consistent after a crash, and a power loss may take back the
    # last commits.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
