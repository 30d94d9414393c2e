"""What operators do to a job's steps while or after it runs: retry, ignore, skip, confirm, reject.

Each operation is refused with a Conflict naming the state that does not allow it, and is recorded
on the job instance. A job stopped by a failed step comes back to life through retry, ignore or skip.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from app.extensions import db, redis
from app.models import (
    HostResult,
    HostStatus,
    JobInstance,
    OnFailure,
    RunStatus,
    Slice,
    StepInstance,
    StepType,
)
from app.models.base import utcnow
from app.services import dispatch, executions, records
from app.services.access import Action, Actor, require, role_in
from app.services.errors import Conflict, Forbidden, NotFound
from app.services.progress import next_batch, settle_job


def job_and_step(
    actor: Actor, project_id: int, job_id: int, step_id: int
) -> tuple[JobInstance, StepInstance]:
    require(actor, project_id, Action.OPERATE)
    job = records.get(JobInstance, job_id, project_id)
    step = next((step for step in job.steps if step.id == step_id), None)
    if step is None:
        raise NotFound(f"job instance {job.id} has no step {step_id}")
    if job.status == RunStatus.STOPPING or job.cancelled_by:
        raise Conflict(f"job instance {job.id} was terminated by {job.cancelled_by}", "status")
    return job, step


def require_ended_failing(job: JobInstance, step: StepInstance, operation: str) -> None:
    """The step ended failing and nothing of its job runs: the state retry, ignore and skip act on."""
    status = RunStatus(step.status)
    if not status.failing and not (operation == "retry" and status == RunStatus.IGNORED_ERROR):
        raise Conflict(
            f"step {step.id} is {step.status}: only a step that failed can be {operation_done(operation)}",
            "status",
        )
    busy = [other for other in job.steps if other.status == RunStatus.RUNNING]
    if busy:
        raise Conflict(f"step {busy[0].id} of job instance {job.id} is running; wait for it to end", "status")


def operation_done(operation: str) -> str:
    return {"retry": "retried", "ignore": "ignored", "skip": "skipped"}[operation]


def retry(actor: Actor, project_id: int, job_id: int, step_id: int, failed_only: bool) -> JobInstance:
    """Run a failed step again on the hosts that did not succeed, or on all the hosts it ran on."""
    job, step = job_and_step(actor, project_id, job_id, step_id)
    if step.kind == StepType.MANUAL:
        raise Conflict(f"step {step.id} is a manual confirmation: it is confirmed, not retried", "kind")
    require_ended_failing(job, step, "retry")
    # The latest attempts' keys only: a host's output may run to megabytes.
    query = (
        select(
            HostResult.id, HostResult.host_id, HostResult.host_name, HostResult.address, HostResult.attempt
        )
        .join(Slice, HostResult.slice_id == Slice.id)
        .where(
            HostResult.step_instance_id == step.id,
            HostResult.latest,
            Slice.batch <= step.current_batch,
        )
        .order_by(HostResult.id)
    )
    if failed_only:
        query = query.where(HostResult.status != HostStatus.SUCCESS)
    hosts = db.session.execute(query).all()
    if not hosts:
        raise Conflict(f"step {step.id} has no failed host to retry", "failed_only")
    db.session.execute(
        update(HostResult).where(HostResult.id.in_([host.id for host in hosts])).values(latest=False)
    )
    first_index = max(piece.index for piece in step.slices) + 1
    pieces = []
    for offset, (_, members) in enumerate(executions.chunked(hosts, [])):
        piece = Slice(index=first_index + offset, batch=step.current_batch, host_count=len(members))
        step.slices.append(piece)
        pieces.append((piece, members))
    db.session.flush()
    db.session.execute(
        insert(HostResult),
        [
            {
                "job_instance_id": job.id,
                "step_instance_id": step.id,
                "slice_id": piece.id,
                "host_id": member.host_id,
                "host_name": member.host_name,
                "address": member.address,
                "attempt": member.attempt + 1,
                "status": HostStatus.WAITING,
            }
            for piece, members in pieces
            for member in members
        ],
    )
    step.status = RunStatus.RUNNING
    step.ended_at = None
    executions.record_operation(
        job,
        actor,
        "retry",
        step,
        failed_only=failed_only,
        hosts=[host.host_name for host in hosts][:100],
        host_count=len(hosts),
    )
    return revive(job)


def ignore(actor: Actor, project_id: int, job_id: int, step_id: int, reason: str) -> JobInstance:
    """Take a failed step's error as ignored and go on: with its next batch if it rolls, else with the
    next step."""
    job, step = job_and_step(actor, project_id, job_id, step_id)
    require_ended_failing(job, step, "ignore")
    if step.current_batch < len(step.batches):
        next_batch(step)
        step.on_failure = OnFailure.IGNORE
    else:
        step.status = RunStatus.IGNORED_ERROR
    executions.record_operation(job, actor, "ignore", step, reason)
    return revive(job)


def skip(actor: Actor, project_id: int, job_id: int, step_id: int, reason: str) -> JobInstance:
    """Skip a step that has not started, that waits for a confirmation, or that failed."""
    job, step = job_and_step(actor, project_id, job_id, step_id)
    status = RunStatus(step.status)
    not_started = status == RunStatus.WAITING and step.dispatched_at is None
    if status.failing:
        require_ended_failing(job, step, "skip")
    elif not (not_started or status == RunStatus.WAITING_USER):
        raise Conflict(
            f"step {step.id} is {step.status}: skip a step before it starts, while it waits for a "
            "confirmation, or after it failed; terminate the job to stop a running one",
            "status",
        )
    now = utcnow()
    for piece in step.slices:
        if piece.status == RunStatus.WAITING:
            piece.status = RunStatus.SKIPPED
            piece.ended_at = now
    db.session.execute(
        update(HostResult)
        .where(HostResult.step_instance_id == step.id, HostResult.status == HostStatus.WAITING)
        .values(status=HostStatus.SKIPPED, ended_at=now)
    )
    step.status = RunStatus.SKIPPED
    step.dispatched_at = step.dispatched_at or now
    step.ended_at = now
    executions.record_operation(job, actor, "skip", step, reason)
    return revive(job)


def confirm(actor: Actor, project_id: int, job_id: int, step_id: int, reason: str) -> JobInstance:
    """Let a step waiting for a confirmation go on: a manual step succeeds, a rolling step runs its
    next batch."""
    job, step = waiting_step(actor, project_id, job_id, step_id)
    if step.kind == StepType.MANUAL:
        step.status = RunStatus.SUCCESS
        step.ended_at = utcnow()
    else:
        next_batch(step)
    executions.record_operation(job, actor, "confirm", step, reason)
    return revive(job)


def reject(actor: Actor, project_id: int, job_id: int, step_id: int, reason: str) -> JobInstance:
    """Refuse a step waiting for a confirmation: the step and its job end terminated."""
    job, step = waiting_step(actor, project_id, job_id, step_id)
    executions.record_operation(job, actor, "reject", step, reason)
    return executions.cancel(actor, project_id, job.id, reason)


def waiting_step(
    actor: Actor, project_id: int, job_id: int, step_id: int
) -> tuple[JobInstance, StepInstance]:
    job, step = job_and_step(actor, project_id, job_id, step_id)
    if step.status != RunStatus.WAITING_USER:
        raise Conflict(f"step {step.id} is {step.status}, not waiting for a confirmation", "status")
    if step.kind == StepType.MANUAL and not may_confirm(actor, project_id, step.spec.get("confirmers") or {}):
        raise Forbidden(f"step {step.id} is confirmed by {describe(step.spec['confirmers'])} only")
    return job, step


def may_confirm(actor: Actor, project_id: int, confirmers: dict[str, Any]) -> bool:
    users, roles = confirmers.get("users") or [], confirmers.get("roles") or []
    if not users and not roles:
        return True
    if actor.username in users:
        return True
    role = role_in(actor, project_id)
    return (role is not None and role in roles) or (actor.is_admin and "admin" in roles)


def describe(confirmers: dict[str, Any]) -> str:
    named = [
        *(f"user {user}" for user in confirmers.get("users", [])),
        *(f"role {role}" for role in confirmers.get("roles", [])),
    ]
    return ", ".join(named)


def revive(job: JobInstance) -> JobInstance:
    """After an operation: the job runs again, ends if nothing is left, and its next work is queued;
    a job the project's running limit still holds back stays held."""
    if job.dispatched_at is None:
        db.session.commit()
        return job
    job.status = RunStatus.RUNNING
    job.ended_at = None
    settle_job(job)
    dispatch.next_steps_after_commit(job)
    # An operation whose work cannot be queued is refused whole (503) rather than left half done.
    redis.client.ping()
    db.session.commit()
    dispatch.after_commit()
    return job
