"""Health of the service's parts: the database, Redis, the job workers, the flow engines and the ingester;
and whether runs are sandboxed.

Each check answers a component: `{"status": "ok" | "down" | "unknown", ...}` with what it saw. The
service is healthy when every component is ok. Workers are RQ's own records (RQ keeps each worker's last
heartbeat); each ingester refreshes a key of its own while it runs, and its backlog is read from the
consumer group on the event stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import text

from app.config import WORKER_TTL_SECONDS, Settings
from app.config import current as settings
from app.execution.ingest import GROUP
from app.execution.isolation import isolation
from app.execution.keys import ingester_key
from app.extensions import db, redis
from app.flows.engine import QUEUE_NAME as FLOW_QUEUE

OK, DOWN, UNKNOWN = "ok", "down", "unknown"
Component = dict[str, Any]


def failure(exc: Exception) -> Component:
    # The class only: a driver's message may carry addresses or user names.
    return {"status": DOWN, "error": exc.__class__.__name__}


def database() -> Component:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        db.session.rollback()
        return failure(exc)
    return {"status": OK}


def redis_server() -> Component:
    try:
        redis.client.ping()
    except RedisError as exc:
        return failure(exc)
    return {"status": OK}


def rq_workers(now: datetime, queue: str) -> Component:
    """The RQ workers serving `queue`, with their last heartbeats; ok while one of them is alive."""
    seen = []
    for worker in Worker.all(connection=redis.client):
        if queue not in worker.queue_names():
            continue
        beat = aware(worker.last_heartbeat)
        alive = beat is not None and (now - beat).total_seconds() <= WORKER_TTL_SECONDS
        seen.append(
            {
                "name": worker.name,
                "queues": worker.queue_names(),
                "status": OK if alive else DOWN,
                "state": worker.get_state(),
                "last_heartbeat": beat.isoformat() if beat else None,
            }
        )
    seen.sort(key=lambda worker: worker["name"])
    return {"status": OK if any(worker["status"] == OK for worker in seen) else DOWN, "workers": seen}


def workers(now: datetime) -> Component:
    """The job workers: they run Ansible."""
    return rq_workers(now, settings().queue_name)


def engines(now: datetime) -> Component:
    """The flow engines: they advance flow tasks and never run Ansible."""
    return rq_workers(now, FLOW_QUEUE)


def ingester(_now: datetime) -> Component:
    """The running ingesters, and the events waiting for them: unread, and read but not acknowledged."""
    client, stream = redis.client, settings().event_stream
    running = []
    for key in client.scan_iter(match=ingester_key("*"), count=100):
        beat = json.loads(client.get(key) or "null")
        if beat is not None:
            running.append({"name": beat["name"], "last_heartbeat": beat["at"]})
    running.sort(key=lambda entry: entry["name"])
    group = next((group for group in stream_groups(client, stream) if group["name"] == GROUP), None)
    pending = int(group["pending"]) if group else 0
    # Redis 7 counts the unread entries (lag); before it, acknowledged entries being deleted, the
    # stream holds the unread and the pending ones.
    lag = group.get("lag") if group else None
    unread = int(lag) if lag is not None else max(client.xlen(stream) - pending, 0)
    return {
        "status": OK if running else DOWN,
        "ingesters": running,
        "backlog": {"unread": unread, "pending": pending},
    }


def stream_groups(client: Redis, stream: str) -> list[dict[str, Any]]:
    if not client.exists(stream):
        return []
    return [{**group, "name": group["name"].decode()} for group in client.xinfo_groups(stream)]


def aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def sandbox() -> Component:
    """Whether runs are sandboxed: a capability, reported but leaving the service up either way (without
    it, local hosts and playbook steps are refused unless unisolated runs are allowed)."""
    state = isolation(settings())
    status = OK if state.sandboxed else "off" if state.allow_unisolated else "unavailable"
    return {"status": status, "detail": state.describe()}


# What reads Redis: unknown while Redis cannot be reached.
REDIS_COMPONENTS: dict[str, Callable[[datetime], Component]] = {
    "workers": workers,
    "engines": engines,
    "ingester": ingester,
}


def report() -> dict[str, Any]:
    """Every component, and `status`: ok when they all are, else degraded."""
    now = datetime.now(UTC)
    components: dict[str, Component] = {"database": database(), "redis": redis_server()}
    for name, check in REDIS_COMPONENTS.items():
        if components["redis"]["status"] != OK:
            components[name] = {"status": UNKNOWN, "error": "Redis cannot be reached"}
            continue
        try:
            components[name] = check(now)
        except RedisError as exc:
            components[name] = failure(exc)
    healthy = all(component["status"] == OK for component in components.values())
    return {"status": OK if healthy else "degraded", **components, "isolation": sandbox()}


def record_ingester(client: Redis, consumer: str, config: Settings) -> None:
    """The ingester `consumer` runs: /health lists it until its key expires."""
    beat = {"name": consumer, "at": datetime.now(UTC).isoformat()}
    client.set(ingester_key(consumer), json.dumps(beat), ex=config.heartbeat_ttl)
