"""The reaper: gives slices whose worker or queue entry was lost a final status.

A running slice whose heartbeat has expired, or a waiting slice whose RQ job is
gone or failed, is ended as abnormal through the event stream, behind any
events its run did manage to send.
"""

from __future__ import annotations

from datetime import timedelta

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from app.config import Settings
from app.execution import events
from app.execution.keys import heartbeat_key
from app.extensions import db
from app.models import RunStatus, Slice
from app.models.base import utcnow

LOST_QUEUE_STATES = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def queue_entry_lost(redis: Redis, piece: Slice) -> bool:
    try:
        return Job.fetch(piece.rq_job_id, connection=redis).get_status() in LOST_QUEUE_STATES
    except NoSuchJobError:
        return True


def reap(settings: Settings, redis: Redis) -> list[int]:
    """End lost slices; returns their ids."""
    stale = utcnow() - timedelta(seconds=settings.heartbeat_ttl)
    lost = []
    running = db.session.scalars(
        select(Slice).where(Slice.status == RunStatus.RUNNING, Slice.started_at < stale)
    ).all()
    for piece in running:
        if not redis.exists(heartbeat_key(piece.id)):
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
            [events.slice_done(slice_id, RunStatus.ABNORMAL, reason) for slice_id, reason in lost],
        )
    return [slice_id for slice_id, _ in lost]
