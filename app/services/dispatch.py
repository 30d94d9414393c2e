"""Putting job instances on the queue, within each project's limit of running jobs.

A project may run at most OPSFLOW_PROJECT_RUNNING_LIMIT job instances at once, so
one project cannot starve the others. Over the limit a launch is either held
(queued in the database, dispatched when a running job of the project ends) or
refused with 429, as OPSFLOW_OVER_LIMIT says.

Every decision goes through release_held: under a per-project lock in Redis it
counts the running jobs and dispatches held ones, oldest first, while there is
room. A new launch is written held and then released the same way, so two
launches at once cannot both take the last place, and none jumps the queue.
"""

from __future__ import annotations

import logging

from rq import Queue
from sqlalchemy import func, select

from app.config import current as settings
from app.extensions import db, redis
from app.models import JobInstance, RunStatus
from app.models.base import utcnow
from app.models.status import RUN_FINAL

log = logging.getLogger(__name__)

RQ_TIMEOUT_MARGIN = 600
# How long a decision waits for another one about the same project.
ADMISSION_WAIT_SECONDS = 10
# What settling asks for, done once the session's transaction has committed (after_commit): jobs whose
# next steps may be due, and projects whose held jobs may go.
NEXT_STEPS_AFTER_COMMIT = "opsflow.next_steps_after_commit"
RELEASE_AFTER_COMMIT = "opsflow.release_after_commit"


def running(project_id: int) -> int:
    """Job instances of the project on the queue or running."""
    return db.session.scalar(
        select(func.count())
        .select_from(JobInstance)
        .where(
            JobInstance.project_id == project_id,
            JobInstance.dispatched_at.is_not(None),
            JobInstance.status.not_in(RUN_FINAL),
        )
    )


def has_room(project_id: int) -> bool:
    limit = settings().project_running_limit
    return not limit or running(project_id) < limit


def dispatch(job: JobInstance) -> None:
    """Start the job: queue its first steps."""
    job.dispatched_at = utcnow()
    dispatch_next_steps(job)


def dispatch_next_steps(job: JobInstance) -> None:
    """Queue one RQ job per slice of the steps of the lowest seq not queued yet, once every step
    queued before has ended (a transfer pushes what its fetch steps brought). A job being stopped
    queues nothing more."""
    if job.status == RunStatus.STOPPING:
        return
    queued = [step for step in job.steps if step.dispatched_at is not None]
    # A step that ended without being queued (its job was cancelled first) is not queued any more.
    pending = [step for step in job.steps if step.dispatched_at is None and not RunStatus(step.status).final]
    if not pending or any(not RunStatus(step.status).final for step in queued):
        return
    seq = min(step.seq for step in pending)
    steps = [step for step in pending if step.seq == seq]
    for step in steps:
        step.dispatched_at = utcnow()
    db.session.commit()
    queue = Queue(settings().queue_name, connection=redis.client)
    for step in steps:
        for piece in step.slices:
            queue.enqueue_call(
                "app.execution.tasks.run_slice",
                args=(piece.id,),
                job_id=piece.rq_job_id,
                timeout=step.spec["timeout"] + RQ_TIMEOUT_MARGIN,
                result_ttl=3600,
                failure_ttl=86400,
            )


def release_held(project_id: int) -> None:
    """Dispatch the project's oldest held job instances while it has room."""
    lock = redis.client.lock(
        f"opsflow:admission:{project_id}",
        timeout=ADMISSION_WAIT_SECONDS * 3,
        blocking_timeout=ADMISSION_WAIT_SECONDS,
    )
    if not lock.acquire():
        log.warning("project %s: its lock is busy; the periodic pass will release its held jobs", project_id)
        return
    try:
        while has_room(project_id):
            held = db.session.scalar(
                select(JobInstance)
                .where(
                    JobInstance.project_id == project_id,
                    JobInstance.dispatched_at.is_(None),
                    JobInstance.status == RunStatus.WAITING,
                )
                .order_by(JobInstance.id)
                .limit(1)
            )
            if held is None:
                return
            dispatch(held)
    finally:
        lock.release()


def next_steps_after_commit(job: JobInstance) -> None:
    db.session.info.setdefault(NEXT_STEPS_AFTER_COMMIT, set()).add(job.id)


def release_after_commit(project_id: int) -> None:
    db.session.info.setdefault(RELEASE_AFTER_COMMIT, set()).add(project_id)


def after_commit() -> None:
    """Queue what settling asked for; called right after a commit, so that no write lock is held while
    steps are committed and queued or while a project's lock is awaited, and a batch stays one
    transaction."""
    for job_id in sorted(db.session.info.pop(NEXT_STEPS_AFTER_COMMIT, ())):
        dispatch_next_steps(db.session.get(JobInstance, job_id))
    for project_id in sorted(db.session.info.pop(RELEASE_AFTER_COMMIT, ())):
        release_held(project_id)


def release_all_held() -> None:
    """Release the held jobs of every project that has some: the periodic safety net for a release that
    did not happen (its lock not obtained in time, its process gone between commit and release)."""
    projects = db.session.scalars(
        select(JobInstance.project_id)
        .where(JobInstance.dispatched_at.is_(None), JobInstance.status == RunStatus.WAITING)
        .distinct()
    ).all()
    for project_id in projects:
        release_held(project_id)
