"""How slices, steps and job instances reach their final status.

A slice ends once (a `slice_done` event, or a cancel before it started); its
hosts still pending then get a final status from the way it ended. A step ends
when its last slice does, and the job instance when its last step does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    HostResult,
    HostStatus,
    JobInstance,
    OnFailure,
    RollingMode,
    RunStatus,
    Slice,
    StepInstance,
)
from app.models.base import utcnow
from app.models.job import PLAYBOOK_TASKS
from app.services.dispatch import (
    callback_after_commit,
    flow_job_ended_after_commit,
    mark_waiting_for_user,
    next_steps_after_commit,
    release_after_commit,
    stops_job,
)
from app.services.namespaces import record_namespace_values
from app.services.reachability import CHECK_STEP, record_results
from app.status import HOST_PENDING, HOST_STATUS_FOR_UNFINISHED

# What a step kind records once one of its slices has ended and its hosts are final (transfers add theirs).
AFTER_SLICE: dict[str, Callable[[Slice], None]] = {}


def host_counts(*where) -> dict[str, int]:
    """Hosts per status among the latest attempts matching `where`."""
    rows = db.session.execute(
        select(HostResult.status, func.count()).where(HostResult.latest, *where).group_by(HostResult.status)
    ).all()
    return {status: count for status, count in rows}


def finish_slice(
    slice_id: int, status: RunStatus, error: str | None = None, *, unstarted_only: bool = False
) -> bool:
    """End a slice and settle what depends on it; False when it had already ended (or, with
    `unstarted_only`, when a worker has started it)."""
    # Read again under the lock: a worker may have claimed it since this session loaded it.
    piece = db.session.get(Slice, slice_id, with_for_update=True, populate_existing=True)
    if piece is None or RunStatus(piece.status).final:
        return False
    if unstarted_only and piece.status != RunStatus.WAITING:
        return False
    now = utcnow()
    leftover = HOST_STATUS_FOR_UNFINISHED[status]
    reason = error or f"the run ended {status} before this host reported"
    if piece.step.task_count == PLAYBOOK_TASKS and status in (RunStatus.SUCCESS, RunStatus.FAILED):
        # Outside --limit, no play's hosts or no task left by tags: the playbook ran nothing there.
        db.session.execute(
            update(HostResult)
            .where(HostResult.slice_id == slice_id, HostResult.status == HostStatus.WAITING)
            .values(status=HostStatus.SKIPPED, ended_at=now, error="the playbook ran no task on this host")
        )
    db.session.execute(
        update(HostResult)
        .where(HostResult.slice_id == slice_id, HostResult.status.in_(HOST_PENDING))
        .values(status=leftover, ended_at=now, error=reason)
    )
    piece.status = status
    piece.error = error
    piece.ended_at = now
    if piece.step.kind in AFTER_SLICE:
        AFTER_SLICE[piece.step.kind](piece)
    settle_step(piece.step)
    return True


def step_status(counts: dict[str, int]) -> RunStatus:
    """The status a finished step takes from its hosts' statuses."""
    present = {status for status, count in counts.items() if count}
    if present <= {HostStatus.SUCCESS, HostStatus.SKIPPED}:
        return RunStatus.SUCCESS
    for host_status, run_status in (
        (HostStatus.CANCELLED, RunStatus.TERMINATED),
        (HostStatus.TIMEOUT, RunStatus.TIMEOUT),
        (HostStatus.ABNORMAL, RunStatus.ABNORMAL),
    ):
        if host_status in present:
            return run_status
    return RunStatus.FAILED


def slices_status(step: StepInstance) -> RunStatus:
    """The status of a step that acts on no host: its slice's."""
    statuses = [RunStatus(piece.status) for piece in step.slices]
    return next((status for status in statuses if status.failing), RunStatus.SUCCESS)


def settle_step(step: StepInstance) -> None:
    """Once the slices of its current batch have ended: start its next batch, wait for a
    confirmation, pause on a failed batch, or end the step."""
    if any(not RunStatus(piece.status).final for piece in step.slices if piece.batch <= step.current_batch):
        return
    job = step.job
    if step.spec.get("namespaces"):
        record_namespace_values(step)
    if step.current_batch < len(step.batches) and job.status != RunStatus.STOPPING:
        between_batches(step)
    else:
        status = (
            slices_status(step)
            if step.spec.get("hostless")
            else step_status(host_counts(HostResult.step_instance_id == step.id))
        )
        if status.failing and step.on_failure == OnFailure.IGNORE:
            status = RunStatus.IGNORED_ERROR
        step.status = status
        step.ended_at = utcnow()
        if step.kind == CHECK_STEP:
            record_results(step)
    next_steps_after_commit(job)
    settle_job(job)


def between_batches(step: StepInstance) -> None:
    """After a batch of a rolling step that has more: pause on a failure, wait for a confirmation,
    or go on with the next batch, as the step's mode says."""
    batch_failed = db.session.scalar(
        select(func.count())
        .select_from(HostResult)
        .join(Slice, HostResult.slice_id == Slice.id)
        .where(
            Slice.step_instance_id == step.id,
            Slice.batch == step.current_batch,
            HostResult.latest,
            HostResult.status != HostStatus.SUCCESS,
        )
    )
    if batch_failed and step.rolling_mode == RollingMode.PAUSE:
        step.status = step_status(
            host_counts(HostResult.step_instance_id == step.id, HostResult.status.not_in(HOST_PENDING))
        )
        step.ended_at = utcnow()
    elif step.rolling_mode == RollingMode.CONFIRM:
        step.status = RunStatus.WAITING_USER
    else:
        next_batch(step)


def next_batch(step: StepInstance) -> None:
    """A rolling step goes on with its next batch (queued by dispatch.advance)."""
    step.current_batch += 1
    step.status = RunStatus.RUNNING
    step.ended_at = None


def settle_job(job: JobInstance) -> None:
    """End the job once nothing of it is live and either a step stops it or every step has ended."""
    live = [step for step in job.steps if step.dispatched_at is not None and not RunStatus(step.status).final]
    if live:
        mark_waiting_for_user(job)
        return
    statuses = [RunStatus(step.status) for step in job.steps]
    blocking = next((step for step in job.steps if stops_job(step)), None)
    if blocking is None and not all(status.final for status in statuses):
        return
    if job.status == RunStatus.STOPPING:
        job.status = RunStatus.TERMINATED
    elif blocking is not None:
        job.status = blocking.status
    else:
        failed = [status for status in statuses if status.failing]
        job.status = failed[0] if failed else RunStatus.SUCCESS
    job.ended_at = utcnow()
    release_after_commit(job.project_id)
    callback_after_commit(job)
    flow_job_ended_after_commit(job)


def mark_started(piece: Slice) -> None:
    """The first slice to start starts its step and job."""
    now = utcnow()
    step = piece.step
    for row in (step, step.job):
        if row.status == RunStatus.WAITING:
            row.status = RunStatus.RUNNING
        if row.started_at is None:
            row.started_at = now


def counts_by_step(job_id: int) -> dict[int, Counter]:
    rows = db.session.execute(
        select(HostResult.step_instance_id, HostResult.status, func.count())
        .where(HostResult.job_instance_id == job_id, HostResult.latest)
        .group_by(HostResult.step_instance_id, HostResult.status)
    ).all()
    counts: dict[int, Counter] = {}
    for step_id, status, count in rows:
        counts.setdefault(step_id, Counter())[status] = count
    return counts
