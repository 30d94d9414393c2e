"""/health reports every part of the service, and answers 503 when one is down."""

from __future__ import annotations

import dataclasses
import time

import redis as redis_lib

from app import create_app
from app.config import Settings
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


def test_health_lists_workers_and_the_ingester_without_a_token(service):
    _, body = wait_health(service, lambda code, body: code == 200)
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok"}
    assert body["redis"] == {"status": "ok"}
    live = [worker for worker in body["workers"]["workers"] if worker["status"] == "ok"]
    assert len(live) >= 2
    assert all(worker["last_heartbeat"] for worker in live)
    assert body["ingester"]["status"] == "ok"
    assert [entry["last_heartbeat"] for entry in body["ingester"]["ingesters"]]
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
