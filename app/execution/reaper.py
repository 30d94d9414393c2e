"""The reaper: gives slices whose worker or queue entry was lost a final status.

A running slice whose heartbeat has expired, or a waiting slice whose RQ job is
gone or failed, is ended as abnormal through the event stream, behind any
events its run did manage to send.

A missing heartbeat proves a lost worker only once every runner has had the time
to write one: after Redis restarted empty, or came back from an outage that
stopped the reaper's passes, heartbeats are trusted again one TTL later.
"""

from __future__ import annotations

from datetime import timedelta

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from app.config import Settings
from app.execution import events
from app.execution.keys import REAPER_KEY, heartbeat_key
from app.extensions import db
from app.models import RunStatus, Slice
from app.models.base import utcnow
from app.secrets import Cipher

LOST_QUEUE_STATES = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def queue_entry_lost(redis: Redis, piece: Slice) -> bool:
    try:
        return Job.fetch(piece.rq_job_id, connection=redis).get_status() in LOST_QUEUE_STATES
    except NoSuchJobError:
        return True


def trusted_since(now: float, last_pass: float | None, since: float | None, ttl: int) -> float:
    """Since when missing heartbeats prove lost workers: the time of this pass when the reaper's record
    is gone (Redis restarted empty) or its last pass is too long ago for heartbeats to have survived it
    (Redis, or every reaper, was away)."""
    if last_pass is None or since is None or now - last_pass > ttl / 2:
        return now
    return since


def heartbeats_trusted(settings: Settings, redis: Redis) -> bool:
    """Record this pass; whether a missing heartbeat now means a lost worker."""
    seconds, micros = redis.time()
    now = seconds + micros / 1e6
    last_pass, since = (float(value) if value else None for value in redis.hmget(REAPER_KEY, "last", "since"))
    since = trusted_since(now, last_pass, since, settings.heartbeat_ttl)
    redis.hset(REAPER_KEY, mapping={"last": now, "since": since})
    return now - since >= settings.heartbeat_ttl


def reap(settings: Settings, redis: Redis) -> list[int]:
    """End lost slices; returns their ids."""
    stale = utcnow() - timedelta(seconds=settings.heartbeat_ttl)
    lost = []
    running = db.session.scalars(
        select(Slice).where(Slice.status == RunStatus.RUNNING, Slice.started_at < stale)
    ).all()
    trusted = heartbeats_trusted(settings, redis)
    for piece in running:
        if trusted and not redis.exists(heartbeat_key(piece.id)):
            lost.append((piece.id, "the worker running this slice stopped answering"))
    # Slices not queued yet (held back by the project's running limit, behind earlier steps, or a later
    # batch of a rolling step) are on no queue, and that is fine.
    queued = db.session.scalars(
        select(Slice).where(Slice.status == RunStatus.WAITING, Slice.queued_at < stale)
    ).all()
    for piece in queued:
        if queue_entry_lost(redis, piece):
            lost.append((piece.id, "the queue lost this slice before a worker started it"))
    db.session.rollback()
    if lost:
        events.publish(
            redis,
            settings.event_stream,
            events.vouched(
                Cipher.configured_key(),
                [events.slice_done(slice_id, RunStatus.ABNORMAL, reason) for slice_id, reason in lost],
            ),
        )
    return [slice_id for slice_id, _ in lost]
