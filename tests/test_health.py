"""/health reports every part of the service, and answers 503 when one is down."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta

import redis as redis_lib
from rq import Queue, Worker
from rq.utils import utcformat

from app import create_app
from app.config import WORKER_TTL_SECONDS, Settings
from app.flows.engine import QUEUE_NAME as FLOW_QUEUE
from tests.running import free_port


def wait_health(service, predicate, timeout: float = 60) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        response = service.api("GET", "/health", token=None)
        body = response.get_json()
        if predicate(response.status_code, body):
            return response.status_code, body
        if time.monotonic() > deadline:
            raise AssertionError(f"health never matched: {response.status_code} {body}")
        time.sleep(0.5)


def live_workers(body: dict, part: str = "workers", queue: str = "opsflow") -> list[dict]:
    """The live workers of a part (job workers, or flow engines) serving `queue`."""
    return [
        worker
        for worker in body[part].get("workers", [])
        if worker["status"] == "ok" and queue in worker["queues"]
    ]


def test_health_lists_workers_and_the_ingester_without_a_token(service):
    # The fixture starts two workers.
    _, body = wait_health(service, lambda code, body: code == 200 and len(live_workers(body)) == 2)
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok"}
    assert body["redis"] == {"status": "ok"}
    live = live_workers(body)
    assert all(worker["last_heartbeat"] for worker in live)
    assert body["ingester"]["status"] == "ok"
    assert [entry["last_heartbeat"] for entry in body["ingester"]["ingesters"]]
    # The fixture's flow engine is its own part, not counted among the job workers (an engine an earlier
    # test killed stays listed, and reads alive until its last heartbeat is older than the TTL).
    engines = live_workers(body, "engines", FLOW_QUEUE)
    assert engines and all(engine["queues"] == ["flows"] for engine in engines)
    assert body["engines"]["status"] == "ok"
    assert set(body["ingester"]["backlog"]) == {"unread", "pending"}


def test_an_ingester_that_stopped_is_down_and_its_backlog_shows(service):
    stream = service.app.config["OPSFLOW"].event_stream
    client = redis_lib.Redis.from_url(service.env["REDIS_URL"])
    service.stop("ingester")
    try:
        for _ in range(3):
            client.xadd(stream, {"events": "[]"})
        status, body = wait_health(service, lambda code, body: body["ingester"]["status"] == "down")
        assert status == 503
        assert body["status"] == "degraded"
        assert body["ingester"]["backlog"]["unread"] >= 3
    finally:
        service.start("ingester", "ingest")
    status, body = wait_health(
        service, lambda code, body: code == 200 and body["ingester"]["backlog"] == {"unread": 0, "pending": 0}
    )
    assert body["ingester"]["status"] == "ok"


def test_without_redis_health_is_503_and_says_which_part(tmp_path):
    settings = dataclasses.replace(
        Settings.from_env(),
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'health.db'}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    response = create_app(settings).test_client().get("/api/v1/health")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["database"] == {"status": "ok"}
    assert body["redis"] == {"status": "down", "error": "ConnectionError"}
    assert body["workers"]["status"] == body["ingester"]["status"] == "unknown"


def test_a_worker_silent_for_longer_than_its_ttl_is_down(service):
    wait_health(service, lambda code, body: code == 200)
    client = redis_lib.Redis.from_url(service.env["REDIS_URL"])
    queue = Queue(service.app.config["OPSFLOW"].queue_name, connection=client)
    silent = Worker([queue], connection=client, name=f"silent-{uuid.uuid4().hex[:6]}")
    silent.register_birth()
    long_ago = datetime.now(UTC) - timedelta(seconds=WORKER_TTL_SECONDS + 5)
    client.hset(silent.key, "last_heartbeat", utcformat(long_ago))
    try:
        response = service.api("GET", "/health", token=None)
    finally:
        silent.register_death()
        client.delete(silent.key)
    body = response.get_json()
    seen = {worker["name"]: worker for worker in body["workers"]["workers"]}
    assert seen[silent.name]["status"] == "down"
    assert seen[silent.name]["last_heartbeat"].startswith(long_ago.isoformat()[:19])
    # The live workers keep the part up.
    assert body["workers"]["status"] == "ok"
    assert response.status_code == 200
