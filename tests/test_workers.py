"""The service's RQ workers as /health sees them: a flow engine busy with one long advance still beats."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import redis as redis_lib
from rq import Queue, Worker

from app.execution.worker import EngineWorker

BEAT_SECONDS = 0.2
ADVANCE_SECONDS = 1.5
heartbeats_seen: list[datetime] = []


def long_advance(worker_name: str, url: str) -> None:
    time.sleep(ADVANCE_SECONDS)
    key = Worker.redis_worker_namespace_prefix + worker_name
    worker = Worker.find_by_key(key, connection=redis_lib.Redis.from_url(url))
    heartbeats_seen.append(worker.last_heartbeat.replace(tzinfo=UTC))


def test_an_engine_beats_while_one_advance_runs_long(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    queue = Queue(f"engine-beat-{uuid.uuid4().hex[:8]}", connection=client)
    name = f"engine-{uuid.uuid4().hex[:8]}"
    engine = EngineWorker([queue], connection=client, name=name, job_monitoring_interval=BEAT_SECONDS)
    queue.enqueue_call(f"{__name__}.long_advance", args=(engine.name, redis_url), result_ttl=0)
    heartbeats_seen.clear()
    try:
        engine.work(burst=True)
    finally:
        queue.delete()
    assert len(heartbeats_seen) == 1
    silent_for = (datetime.now(UTC) - heartbeats_seen[0]).total_seconds()
    assert silent_for < ADVANCE_SECONDS / 2, silent_for
