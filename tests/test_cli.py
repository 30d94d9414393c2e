"""`make run`'s start: the busy-port probe, gunicorn's processes and threads, their database pool, its
control socket, and the names its parts give their database connections."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import socket
import subprocess
import sys
import threading
import time

import click
import psutil
import psycopg
import pytest
from sqlalchemy import event

from app import create_app
from app.cli import gunicorn_options, refuse_busy_port
from app.config import ROOT, Settings
from app.extensions import db
from tests.conftest import POSTGRES_ADMIN_URL, postgres_database
from tests.running import RunningService, free_port


def time_wait_on(port: int) -> None:
    """Leave a connection in TIME_WAIT on 127.0.0.1:port, as a server that closed a keep-alive client does."""
    with socket.socket() as listener:
        # As gunicorn's listener, whose connections inherit the option.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        server_side, _ = listener.accept()
        # The side that closes first keeps the TIME_WAIT, on the server's own address and port.
        server_side.close()
        time.sleep(0.1)
        client.close()
        time.sleep(0.1)
    assert any(
        connection.laddr.port == port and connection.status == psutil.CONN_TIME_WAIT
        for connection in psutil.net_connections("tcp4")
    )


def test_a_port_with_only_time_wait_connections_is_free():
    port = free_port()
    time_wait_on(port)
    refuse_busy_port("127.0.0.1", port)


def test_a_listening_port_is_refused_with_what_to_do():
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(click.ClickException, match=f"cannot listen on 127.0.0.1:{port}.*set PORT"):
            refuse_busy_port("127.0.0.1", port)


@pytest.mark.parametrize(
    ("name", "value"),
    [("OPSFLOW_SSH_KEX_ALGORITHMS", "curve25519-sha256 -o ProxyCommand=id"), ("OPSFLOW_OVER_LIMIT", "maybe")],
)
def test_a_wrong_setting_stops_every_command_in_one_line_naming_it(tmp_path, name, value):
    env = {**os.environ, "OPSFLOW_DATA_DIR": str(tmp_path / "data"), name: value}
    for command in ("run", "worker", "migrate"):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", command], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 1
        [line] = done.stderr.splitlines()
        assert line.startswith(f"Error: {name} ")
    assert not (tmp_path / "data").exists()


def test_the_api_runs_the_processes_and_threads_set():
    settings = dataclasses.replace(Settings.from_env(), api_processes=3, api_threads=7)
    options = gunicorn_options(settings)
    assert options[options.index("--workers") + 1] == "3"
    assert options[options.index("--threads") + 1] == "7"


def test_every_api_thread_keeps_its_database_connection_between_bursts(tmp_path, monkeypatch):
    threads = 8
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPSFLOW_API_THREADS", str(threads))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app()
    with app.app_context():
        engine = db.engine
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    all_holding = threading.Barrier(threads)

    def hold_a_connection() -> None:
        with engine.connect():
            all_holding.wait(timeout=10)

    for _ in range(2):
        burst = [threading.Thread(target=hold_a_connection) for _ in range(threads)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
    assert len(opened) == threads, "the second burst found every connection the first one opened"
    engine.dispose()


def test_run_starts_again_at_once_after_serving_a_keep_alive_client(tmp_path):
    first = RunningService(tmp_path / "data").start()
    try:
        first.wait_healthy()
        connection = http.client.HTTPConnection("127.0.0.1", first.port, timeout=10)
        for _ in range(3):
            connection.request("GET", "/api/v1/openapi.json")
            assert connection.getresponse().read()
        # gunicorn's control socket is the instance's own, in its data dir.
        assert (first.data_dir / "gunicorn.ctl").is_socket()
    finally:
        assert first.stop() == 0
    connection.close()
    second = RunningService(tmp_path / "data", port=first.port).start()
    try:
        second.wait_healthy()
    finally:
        second.stop()
    assert "Address already in use" not in second.logged()


def test_every_part_names_its_postgresql_connections_after_itself(tmp_path):
    with contextlib.contextmanager(postgres_database)() as url:
        if url is None:
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        service = RunningService(tmp_path / "data", DATABASE_URL=url).start()
        try:
            service.wait_healthy()
            query = "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = %s"
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                names = {row[0] for row in admin.execute(query, (url.rsplit("/", 1)[1],))}
        finally:
            assert service.stop() == 0
    assert {"opsflow api", "opsflow ingester"} <= names
    parts = {"api", "ingester", "scheduler", "worker-1", "worker-2", "engine-1", "engine-2"}
    assert names <= {f"opsflow {part}" for part in parts}, names
