"""The application in this process, for benchmarks that time the API itself (Flask's test client).

`application()` builds it on a fresh database, migrated, with an admin token: SQLite in a temporary
data dir, or, when DATABASE_URL is set, a new database on that server, dropped afterwards.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis as redis_lib
from flask import Flask
from sqlalchemy.engine import make_url

TOKEN = "opf_bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def application(name: str, **settings: str) -> Iterator[Flask]:
    """The application on a fresh database; `settings` are environment variables for it."""
    data_dir = tempfile.mkdtemp(prefix=f"opsflow-bench-{name}-")
    os.environ.update(OPSFLOW_DATA_DIR=data_dir, **settings)
    database = fresh_postgres(os.environ["DATABASE_URL"]) if os.environ.get("DATABASE_URL") else None
    if database:
        os.environ["DATABASE_URL"] = database

    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services.identity import bootstrap_admin

    app = create_app()
    try:
        with app.app_context():
            upgrade()
            bootstrap_admin(Path(data_dir), TOKEN)
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if database:
            drop_postgres(database)


def api_caller(app: Flask) -> Callable[..., Any]:
    """call(method, path, body, expect): the API through the test client as the admin; the JSON answer."""
    client = app.test_client()

    def call(method: str, path: str, body=None, expect: int = 200):
        response = client.open(f"/api/v1{path}", method=method, json=body, headers=HEADERS)
        assert response.status_code == expect, response.get_data(as_text=True)[:500]
        return response.get_json()

    return call


def machine() -> str:
    return f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def machine_cpu_now() -> float:
    """CPU seconds every process of the machine has taken since it booted (/proc/stat, idle and iowait
    left out): it counts what rusage cannot see, such as a run in a sandbox that reaps its own
    processes, ssh's masters and the sshd sessions."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def fresh_postgres(url: str) -> str:
    """A new, empty database on the server of `url`, for the benchmark alone."""
    name = f"opsflow_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(url: str) -> None:
    with psycopg.connect(_libpq(url).rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def controller_host(call: Callable[..., Any], project_id: int) -> dict:
    """A host of the project that is this machine, through the local connection."""
    body = {"name": "controller", "address": "127.0.0.1", "connection": "local"}
    return call("POST", f"/projects/{project_id}/hosts", body, 201)


@contextmanager
def emptied_redis(default: str) -> Iterator[str]:
    """REDIS_URL, or `default` when it is unset: that database is emptied before and after."""
    url = os.environ.get("REDIS_URL") or default
    connection = redis_lib.Redis.from_url(url)
    connection.flushdb()
    try:
        yield url
    finally:
        connection.flushdb()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(share / 100 * len(ordered)) - 1, 0)]


@contextmanager
def processes(log_dir: Path, commands: dict[str, str]) -> Iterator[dict[str, subprocess.Popen]]:
    """`python -m app.cli COMMAND` for each {name: COMMAND}, logging to log_dir/NAME.log, with this
    process's environment; all are stopped on leaving."""
    started: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(log_dir / f"{name}.log", "ab") as log:
                started[name] = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", command],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        yield started
    finally:
        for process in started.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process in started.values():
            process.wait()
