"""Putting job instances on the queue, within each project's limit of running jobs.

A project may run at most OPSFLOW_PROJECT_RUNNING_LIMIT job instances at once, so
one project cannot starve the others. Over the limit a launch is either held
(queued in the database, dispatched when a running job of the project ends) or
refused with 429, as OPSFLOW_OVER_LIMIT says.

Every decision is taken under a per-project lock in Redis. release_held counts
the running jobs and dispatches held ones, oldest first, while there is room. A
new launch into a project with room and no held job is dispatched in the
transaction that writes it (admission), the room counted again under the lock,
so two launches at once cannot both take the last place, and none jumps the
queue; any other new launch is written held and then released like any held
job. A project without room is seen to be full without the lock: a launch over
the limit waits for no other decision. Without a limit there is nothing to
decide: a launch is dispatched as it is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock
from rq import Queue, Retry
from sqlalchemy import Select, func, select, text

from app.config import current as settings
from app.extensions import db, redis
from app.models import JobInstance, LaunchType, OnFailure, RunStatus, Slice, StepInstance, StepType
from app.models.base import apply_defaults, utcnow
from app.models.job import HELD, HOLDING_PLACE

log = logging.getLogger(__name__)

RQ_TIMEOUT_MARGIN = 600
# A job's callback URL is tried once and then retried this many times, this many seconds apart.
CALLBACK_RETRIES = 3
CALLBACK_RETRY_INTERVALS = [5, 30, 120]
# How long a decision waits for another one about the same project.
ADMISSION_WAIT_SECONDS = 10
# How often a decision waiting for that lock tries again: one decision takes milliseconds.
ADMISSION_POLL_SECONDS = 0.005
# What settling asks for, done once the session's transaction has committed (after_commit): jobs whose
# next steps may be due, and projects whose held jobs may go.
NEXT_STEPS_AFTER_COMMIT = "opsflow.next_steps_after_commit"
RELEASE_AFTER_COMMIT = "opsflow.release_after_commit"
CALLBACK_AFTER_COMMIT = "opsflow.callback_after_commit"
FLOW_JOBS_AFTER_COMMIT = "opsflow.flow_jobs_after_commit"
LOCK_BUSY = "project %s: its lock is busy; the periodic pass will release its held jobs"


def running_count(project_id: int) -> Select:
    """The count of the project's job instances on the queue or running."""
    return (
        select(func.count())
        .select_from(JobInstance)
        .where(JobInstance.project_id == project_id, text(HOLDING_PLACE))
    )


def held(project_id: int) -> Select:
    """The project's job instances held back by its limit."""
    return select(JobInstance).where(JobInstance.project_id == project_id, text(HELD))


def has_room(project_id: int) -> bool:
    limit = settings().project_running_limit
    return not limit or db.session.scalar(running_count(project_id)) < limit


def has_room_for_new(project_id: int, limit: int) -> bool:
    """The project runs fewer job instances than `limit` and holds none back, which would go before a
    new one: one round trip."""
    count, any_held = db.session.execute(
        select(running_count(project_id).scalar_subquery(), held(project_id).exists())
    ).one()
    return count < limit and not any_held


def dispatch(job: JobInstance) -> None:
    """Start the job: queue its first steps."""
    job.dispatched_at = utcnow()
    advance(job)


def advance(job: JobInstance) -> None:
    """Start what is due, then commit and queue its slices; a job being stopped or ended starts nothing."""
    if job.status == RunStatus.STOPPING or RunStatus(job.status).final:
        return
    due = start_due(job)
    # Read before the commit expires the slices, which would cost round trips to read again.
    entries = queue_entries(due)
    db.session.commit()
    queue_slices(entries)


def start_due(job: JobInstance) -> list[tuple[Slice, int]]:
    """Start what is due and mark its slices queued; returns them with their step's timeout, to be
    queued once committed.

    What is due: the next batch of a rolling step, a retry's new slices, or, once every step of
    lower seq has ended and none of them stops the job, the steps of the next seq. A manual step
    starts by waiting for its confirmation.
    """
    now = utcnow()
    due: list[tuple[Slice, int]] = []
    for seq in sorted({step.seq for step in job.steps}):
        steps = [step for step in job.steps if step.seq == seq]
        if all(RunStatus(step.status).final for step in steps):
            if any(stops_job(step) for step in steps):
                break
            continue
        for step in steps:
            if step.dispatched_at is None and step.status == RunStatus.WAITING:
                start_step(step, now)
            if step.status in (RunStatus.WAITING, RunStatus.RUNNING):
                due.extend(
                    (piece, step.spec["timeout"])
                    for piece in step.slices
                    if piece.batch == step.current_batch
                    and piece.queued_at is None
                    and piece.status == RunStatus.WAITING
                )
        break
    for piece, _ in due:
        piece.queued_at = now
    mark_waiting_for_user(job)
    return due


def queue_entries(due: list[tuple[Slice, int]]) -> list[tuple[int, str, int]]:
    """What queueing these slices needs: their ids, RQ job ids and timeouts."""
    return [(piece.id, piece.rq_job_id, timeout) for piece, timeout in due]


def queue_slices(entries: list[tuple[int, str, int]]) -> None:
    """Put committed slices on the queue, each as the RQ job a worker runs it in."""
    queue = Queue(settings().queue_name, connection=redis.client)
    for slice_id, rq_job_id, timeout in entries:
        queue.enqueue_call(
            "app.execution.tasks.run_slice",
            args=(slice_id,),
            job_id=rq_job_id,
            timeout=timeout + RQ_TIMEOUT_MARGIN,
            result_ttl=3600,
            failure_ttl=86400,
        )


def start_step(step: StepInstance, now: datetime) -> None:
    step.dispatched_at = now
    step.current_batch = 1
    if step.kind == StepType.MANUAL:
        step.status = RunStatus.WAITING_USER
        step.started_at = now
        if step.job.started_at is None:
            step.job.started_at = now


def stops_job(step: StepInstance) -> bool:
    """The step ended failing and its job may not go on past it."""
    return RunStatus(step.status).failing and step.on_failure == OnFailure.STOP


def mark_waiting_for_user(job: JobInstance) -> None:
    """A job whose only live steps wait for a confirmation waits for a user too; it runs again after."""
    if RunStatus(job.status).final or job.status == RunStatus.STOPPING:
        return
    statuses = {step.status for step in job.steps if step.dispatched_at is not None}
    if RunStatus.WAITING_USER in statuses and RunStatus.RUNNING not in statuses:
        job.status = RunStatus.WAITING_USER
    elif job.status == RunStatus.WAITING_USER:
        job.status = RunStatus.RUNNING


def admission_lock(project_id: int) -> Lock:
    """The lock every decision about the project's held jobs is taken under."""
    return redis.client.lock(
        f"opsflow:admission:{project_id}",
        timeout=ADMISSION_WAIT_SECONDS * 3,
        sleep=ADMISSION_POLL_SECONDS,
        blocking_timeout=ADMISSION_WAIT_SECONDS,
    )


@contextmanager
def admission(job: JobInstance) -> Iterator[None]:
    """Around writing a new job instance and committing it (the body does both).

    When its project has room and holds no job back, the job is written dispatched under the project's
    lock, held until the commit so that no other decision takes the same place, and its slices are
    queued after; else it is written held and released after the commit like any held job. Redis away
    refuses the launch before anything is written.
    """
    project_id = job.project_id
    limit = settings().project_running_limit
    lock = admission_lock(project_id) if limit and has_room_for_new(project_id, limit) else None
    locked = lock is not None and lock.acquire()
    if lock is not None and not locked:
        log.warning(LOCK_BUSY, project_id)
    try:
        if not locked:
            # A launch that cannot be queued is refused whole (503) rather than written and left waiting.
            redis.client.ping()
        admitted = not limit or (locked and has_room_for_new(project_id, limit))
        due = dispatch_new(job) if admitted else []
        yield
    finally:
        if locked:
            # Redis away: the lock expires by itself.
            with suppress(RedisConnectionError, RedisTimeoutError):
                lock.release()
    # Committed, the job holds its place whether or not it is on the queue yet, so the next decision
    # about the project need not wait for the queueing.
    try:
        queue_slices(queue_entries(due))
    except (RedisConnectionError, RedisTimeoutError):
        log.warning("job instance %s: Redis went away before its slices were queued", job.id)
    # Held under the lock, the job is seen by whoever makes room next; held without it, room may
    # have been made since it was counted.
    if not admitted and lock is None:
        try:
            release_held(project_id)
        except (RedisConnectionError, RedisTimeoutError):
            # The job is written and held, and the periodic release dispatches it once Redis is back.
            log.warning("job instance %s: Redis went away; it stays held until it is back", job.id)


def dispatch_new(job: JobInstance) -> list[tuple[Slice, int]]:
    """Dispatch a job instance before it is written, so that its rows are written dispatched; returns
    its due slices as start_due does. Its rows are given their columns' defaults now rather than when
    written, as start_due reads them."""
    for row in (job, *job.steps, *(piece for step in job.steps for piece in step.slices)):
        apply_defaults(row)
    job.dispatched_at = utcnow()
    return start_due(job)


def release_held(project_id: int) -> None:
    """Dispatch the project's oldest held job instances while it has room."""
    # A full project has nothing to decide, so a launch over the limit waits for no lock: whoever makes
    # room commits first and releases after, and so sees every job held by then.
    if not has_room(project_id):
        return
    lock = admission_lock(project_id)
    if not lock.acquire():
        log.warning(LOCK_BUSY, project_id)
        return
    try:
        # The held job first: once the last one is gone, the room need not be counted again.
        while (held := oldest_held(project_id)) is not None and has_room(project_id):
            dispatch(held)
    finally:
        lock.release()


def oldest_held(project_id: int) -> JobInstance | None:
    """The project's job instance held the longest, if any."""
    return db.session.scalar(held(project_id).order_by(JobInstance.id).limit(1))


def next_steps_after_commit(job: JobInstance) -> None:
    db.session.info.setdefault(NEXT_STEPS_AFTER_COMMIT, set()).add(job.id)


def release_after_commit(project_id: int) -> None:
    db.session.info.setdefault(RELEASE_AFTER_COMMIT, set()).add(project_id)


def callback_after_commit(job: JobInstance) -> None:
    """The job has ended: its callback URL, if it has one, is posted its final status."""
    if job.callback_url:
        db.session.info.setdefault(CALLBACK_AFTER_COMMIT, {})[job.id] = str(job.status)


def flow_job_ended_after_commit(job: JobInstance) -> None:
    """A job instance a flow's node started has ended: the engine advances its task."""
    if job.launch_type == LaunchType.FLOW:
        db.session.info.setdefault(FLOW_JOBS_AFTER_COMMIT, set()).add(job.id)


def after_commit() -> None:
    """Queue what settling asked for; called right after a commit, so that no write lock is held while
    steps are committed and queued or while a project's lock is awaited, and a batch stays one
    transaction."""
    for job_id in sorted(db.session.info.pop(NEXT_STEPS_AFTER_COMMIT, ())):
        advance(db.session.get(JobInstance, job_id))
    for project_id in sorted(db.session.info.pop(RELEASE_AFTER_COMMIT, ())):
        release_held(project_id)
    flow_jobs = db.session.info.pop(FLOW_JOBS_AFTER_COMMIT, ())
    if flow_jobs:
        from app.flows import engine

        engine.job_ended(flow_jobs)
    callbacks = db.session.info.pop(CALLBACK_AFTER_COMMIT, {})
    if callbacks:
        queue = Queue(settings().queue_name, connection=redis.client)
        for job_id, status in sorted(callbacks.items()):
            queue.enqueue_call(
                "app.execution.tasks.post_callback",
                args=(job_id, status),
                retry=Retry(max=CALLBACK_RETRIES, interval=CALLBACK_RETRY_INTERVALS),
                result_ttl=3600,
                failure_ttl=86400,
            )


def release_all_held() -> None:
    """Release the held jobs of every project that has some: the periodic safety net for a release that
    did not happen (its lock not obtained in time, its process gone between commit and release)."""
    projects = db.session.scalars(select(JobInstance.project_id).where(text(HELD)).distinct()).all()
    for project_id in projects:
        release_held(project_id)
