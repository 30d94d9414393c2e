"""Reading job instances: history, progress counts, per-host results and logs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select, select

from app.extensions import db
from app.models import HostResult, HostStatus, JobInstance, TaskResult
from app.services import records
from app.services.errors import NotFound
from app.services.progress import counts_by_step


def all_counts(counts: dict[str, int]) -> dict[str, int]:
    """Counts for every host status, zeros included, so clients need no defaults."""
    return {str(status): counts.get(status, 0) for status in HostStatus}


def job_with_counts(project_id: int, job_id: int) -> JobInstance:
    """The job instance, its steps carrying `counts` of hosts per status."""
    job = records.get(JobInstance, job_id, project_id)
    per_step = counts_by_step(job.id)
    total: dict[str, int] = {}
    for step in job.steps:
        counts = per_step.get(step.id, {})
        step.counts = all_counts(counts)
        for status, count in counts.items():
            total[status] = total.get(status, 0) + count
    job.counts = all_counts(total)
    return job


def jobs_query(project_id: int, filters: dict[str, Any]) -> Select:
    query = select(JobInstance).where(JobInstance.project_id == project_id)
    if "status" in filters:
        query = query.where(JobInstance.status == filters["status"])
    return query.order_by(JobInstance.created_at.desc(), JobInstance.id.desc())


def host_results_query(job: JobInstance, filters: dict[str, Any]) -> Select:
    query = select(HostResult).where(HostResult.job_instance_id == job.id)
    if "step" in filters:
        query = query.where(HostResult.step_instance_id == filters["step"])
    if "status" in filters:
        query = query.where(HostResult.status == filters["status"])
    return query.order_by(HostResult.step_instance_id, HostResult.id)


def host_log(job: JobInstance, host_id: int, step_id: int | None = None) -> Iterator[str]:
    """One host's whole log for the job, step by step and task by task, as text chunks."""
    query = select(HostResult).where(HostResult.job_instance_id == job.id, HostResult.host_id == host_id)
    if step_id is not None:
        query = query.where(HostResult.step_instance_id == step_id)
    results = db.session.scalars(query.order_by(HostResult.step_instance_id)).all()
    if not results:
        raise NotFound(f"host {host_id} has no result in job instance {job.id}")
    return _log_lines(results)


def _log_lines(results: list[HostResult]) -> Iterator[str]:
    for result in results:
        yield f"== step {result.step_instance_id} · {result.host_name} ({result.address}) · {result.status}"
        yield f" · exit code {result.exit_code}\n" if result.exit_code is not None else "\n"
        if result.error:
            yield f"error: {result.error}\n"
        tasks = db.session.scalars(
            select(TaskResult).where(TaskResult.host_result_id == result.id).order_by(TaskResult.seq)
        ).all()
        for task in tasks or [result]:
            if isinstance(task, TaskResult):
                yield f"-- task {task.seq} {task.task} · {task.outcome}\n"
            if task.stdout:
                yield task.stdout if task.stdout.endswith("\n") else task.stdout + "\n"
            if task.stderr:
                yield "-- stderr\n"
                yield task.stderr if task.stderr.endswith("\n") else task.stderr + "\n"
        if result.stdout_truncated or result.stderr_truncated:
            yield "-- output truncated at the per-host cap\n"
