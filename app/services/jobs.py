"""Reading job instances: history, progress counts, per-host results and logs."""

from __future__ import annotations

import io
import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import contains_eager

from app.extensions import db
from app.models import HostResult, HostStatus, JobInstance, RunStatus, Slice, StepInstance, TaskResult
from app.services import records
from app.services.errors import NotFound
from app.services.progress import counts_by_step
from app.status import HOST_PENDING

# Host names shown with each group of identical output; the rest are paged through host-results.
HOSTS_PER_OUTPUT_GROUP = 100
# Host results read per round trip while streaming an archive of logs.
ARCHIVE_BATCH = 200


def all_counts(counts: dict[str, int]) -> dict[str, int]:
    """Counts for every host status, zeros included, so clients need no defaults."""
    return {str(status): counts.get(status, 0) for status in HostStatus}


def job_with_counts(project_id: int, job_id: int) -> JobInstance:
    """The job instance, its steps carrying `counts` of hosts per status."""
    job = records.get(JobInstance, job_id, project_id)
    per_batch = counts_by_batch(job) if any(step.batches for step in job.steps) else {}
    return with_counts(job, counts_by_step(job.id), per_batch)


def launched_with_counts(job: JobInstance) -> JobInstance:
    """A job instance just launched, its steps carrying `counts`: every host of it waits, so they are
    counted from its slices rather than read."""
    per_step: dict[int, Counter] = {}
    per_batch: dict[tuple[int, int], Counter] = {}
    for step in job.steps:
        for piece in step.slices:
            if piece.host_count:
                waiting = {HostStatus.WAITING: piece.host_count}
                per_step.setdefault(step.id, Counter()).update(waiting)
                per_batch.setdefault((step.id, piece.batch), Counter()).update(waiting)
    return with_counts(job, per_step, per_batch)


def with_counts(
    job: JobInstance, per_step: dict[int, Counter], per_batch: dict[tuple[int, int], Counter]
) -> JobInstance:
    """The job instance, its steps carrying these counts of hosts per status, by step and by batch."""
    total: dict[str, int] = {}
    for step in job.steps:
        counts = per_step.get(step.id, {})
        step.counts = all_counts(counts)
        step.batch_view = [
            batch_view(step, number, size, per_batch.get((step.id, number), Counter()))
            for number, size in enumerate(step.batches, 1)
        ]
        for status, count in counts.items():
            total[status] = total.get(status, 0) + count
    job.counts = all_counts(total)
    return job


def counts_by_batch(job: JobInstance) -> dict[tuple[int, int], Counter]:
    """Hosts per status in each batch of the job's rolling steps."""
    rows = db.session.execute(
        select(Slice.step_instance_id, Slice.batch, HostResult.status, func.count())
        .join(Slice, HostResult.slice_id == Slice.id)
        .where(HostResult.job_instance_id == job.id, HostResult.latest)
        .group_by(Slice.step_instance_id, Slice.batch, HostResult.status)
    ).all()
    counts: dict[tuple[int, int], Counter] = {}
    for step_id, batch, status, count in rows:
        counts.setdefault((step_id, batch), Counter())[status] = count
    return counts


def batch_view(step: StepInstance, number: int, size: int, counts: Counter) -> dict[str, Any]:
    """One batch of a rolling step: its size, hosts per status, and where it stands."""
    if number > step.current_batch or not step.current_batch:
        status = RunStatus.SKIPPED if step.status == RunStatus.SKIPPED else RunStatus.WAITING
    elif counts.keys() & HOST_PENDING:
        status = RunStatus.RUNNING
    elif set(counts) <= {HostStatus.SUCCESS}:
        status = RunStatus.SUCCESS
    else:
        status = RunStatus.FAILED
    return {"batch": number, "size": size, "status": status, "counts": all_counts(counts)}


def contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards taken literally."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def history_filters(query: Select, model: Any, filters: dict[str, Any], exact: tuple[str, ...]) -> Select:
    """The filters every history list shares: any of the statuses given, the `exact` columns equal to
    their value, a name fragment, and a creation time range."""
    if filters.get("status"):
        query = query.where(model.status.in_(filters["status"]))
    for name in exact:
        if name in filters:
            query = query.where(getattr(model, name) == filters[name])
    if "name" in filters:
        query = query.where(model.name.ilike(contains(filters["name"]), escape="\\"))
    if "created_after" in filters:
        query = query.where(model.created_at >= filters["created_after"])
    if "created_before" in filters:
        query = query.where(model.created_at < filters["created_before"])
    return query


def jobs_query(project_id: int, filters: dict[str, Any]) -> Select:
    """History: the project's job instances matching every filter given, newest first."""
    query = select(JobInstance).where(JobInstance.project_id == project_id)
    query = history_filters(query, JobInstance, filters, ("launched_by", "launch_type", "timed_job_id"))
    if "host" in filters:
        host = filters["host"]
        targeted = select(HostResult.job_instance_id).where(
            or_(HostResult.host_name == host, HostResult.address == host)
        )
        query = query.where(JobInstance.id.in_(targeted))
    return query.order_by(JobInstance.created_at.desc(), JobInstance.id.desc())


def attempt_filter(attempt: int | None):
    """Each host's attempt number `attempt`, or, when None, each host's latest attempt."""
    return HostResult.latest if attempt is None else HostResult.attempt == attempt


def host_results_query(job: JobInstance, filters: dict[str, Any]) -> Select:
    query = select(HostResult).where(
        HostResult.job_instance_id == job.id, attempt_filter(filters.get("attempt"))
    )
    for name in ("step", "status", "exit_code", "output_digest"):
        if name in filters:
            column = HostResult.step_instance_id if name == "step" else getattr(HostResult, name)
            query = query.where(column == filters[name])
    return query.order_by(HostResult.step_instance_id, HostResult.id)


def job_step(job: JobInstance, step_id: int) -> StepInstance:
    step = db.session.get(StepInstance, step_id)
    if step is None or step.job_instance_id != job.id:
        raise NotFound(f"step instance {step_id} is not a step of job instance {job.id}")
    return step


@dataclass
class OutputGroup:
    """Hosts of one step that ended alike: same status, exit code and stdout."""

    status: str
    exit_code: int | None
    output_digest: str
    count: int
    stdout: str
    stdout_truncated: bool
    hosts: list[str]


def output_groups(step: StepInstance, first: int, size: int) -> tuple[int, list[OutputGroup]]:
    """One page of the step's distinct (status, exit code, stdout) groups, largest first, and their total."""
    key = (HostResult.status, HostResult.exit_code, HostResult.output_digest)
    grouped = select(*key, func.count().label("count"), func.min(HostResult.id).label("sample")).where(
        HostResult.step_instance_id == step.id, HostResult.latest
    )
    grouped = grouped.group_by(*key)
    total = db.session.scalar(select(func.count()).select_from(grouped.subquery()))
    rows = db.session.execute(
        grouped.order_by(func.count().desc(), func.min(HostResult.id)).offset(first).limit(size)
    ).all()
    samples = {
        result.id: result
        for result in db.session.scalars(
            select(HostResult).where(HostResult.id.in_([r.sample for r in rows]))
        )
    }
    groups = []
    for row in rows:
        hosts = db.session.scalars(
            select(HostResult.host_name)
            .where(
                HostResult.step_instance_id == step.id,
                HostResult.latest,
                HostResult.status == row.status,
                HostResult.exit_code == row.exit_code,
                HostResult.output_digest == row.output_digest,
            )
            .order_by(HostResult.id)
            .limit(HOSTS_PER_OUTPUT_GROUP)
        ).all()
        sample = samples[row.sample]
        groups.append(
            OutputGroup(
                row.status,
                row.exit_code,
                row.output_digest,
                row.count,
                sample.stdout,
                sample.stdout_truncated,
                list(hosts),
            )
        )
    return total, groups


def host_log(
    job: JobInstance, host_id: int, step_id: int | None = None, attempt: int | None = None
) -> Iterator[str]:
    """One host's whole log for the job (its latest attempts, or its attempt number `attempt`), step by
    step and task by task, as text chunks."""
    query = select(HostResult).where(
        HostResult.job_instance_id == job.id, HostResult.host_id == host_id, attempt_filter(attempt)
    )
    if step_id is not None:
        query = query.where(HostResult.step_instance_id == step_id)
    results = db.session.scalars(query.order_by(HostResult.step_instance_id)).all()
    if not results:
        which = "" if attempt is None else f" at attempt {attempt}"
        raise NotFound(f"host {host_id} has no result{which} in job instance {job.id}")
    return _log_lines(results)


def host_tasks_query(job: JobInstance, host_id: int, filters: dict[str, Any]) -> Select:
    """One host's task results in the job, as they ran (step by step, then in the host's order): of its
    latest attempt of each step, or of its attempt number `attempt`; `step` and `status` narrow them."""
    results = select(HostResult.id).where(
        HostResult.job_instance_id == job.id,
        HostResult.host_id == host_id,
        attempt_filter(filters.get("attempt")),
    )
    if "step" in filters:
        results = results.where(HostResult.step_instance_id == filters["step"])
    if db.session.scalar(results.limit(1)) is None:
        attempt = filters.get("attempt")
        which = "" if attempt is None else f" at attempt {attempt}"
        step = f" in step {filters['step']}" if "step" in filters else ""
        raise NotFound(f"host {host_id} has no result{which}{step} in job instance {job.id}")
    query = (
        select(TaskResult)
        .join(TaskResult.host_result)
        .options(contains_eager(TaskResult.host_result))
        .where(TaskResult.host_result_id.in_(results))
    )
    if filters.get("status"):
        query = query.where(TaskResult.outcome.in_(filters["status"]))
    return query.order_by(HostResult.step_instance_id, HostResult.attempt, TaskResult.seq)


def step_logs_archive(step: StepInstance) -> Iterator[bytes]:
    """Every host's log of the step as one .tar.gz, produced host by host as it is read."""
    # The archive is produced after the request's session has closed: it keeps plain values only.
    return _archive(step.id, step.task_count != 1, step.job.created_at)


def _archive(step_id: int, with_tasks: bool, launched: datetime) -> Iterator[bytes]:
    buffer = _Chunks()
    names: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w|gz") as archive:
        last_id = 0
        while True:
            results = db.session.scalars(
                select(HostResult)
                .where(HostResult.step_instance_id == step_id, HostResult.latest, HostResult.id > last_id)
                .order_by(HostResult.id)
                .limit(ARCHIVE_BATCH)
            ).all()
            if not results:
                break
            for result in results:
                data = "".join(_log_lines([result], with_tasks)).encode()
                member = tarfile.TarInfo(_member_name(result, names))
                member.size = len(data)
                member.mtime = int((result.ended_at or result.started_at or launched).timestamp())
                archive.addfile(member, io.BytesIO(data))
                yield buffer.take()
            last_id = results[-1].id
    yield buffer.take()


class _Chunks(io.RawIOBase):
    """A write-only file that hands over what was written since the last `take`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        chunk, self.parts = b"".join(self.parts), []
        return chunk


def _member_name(result: HostResult, taken: set[str]) -> str:
    """A file name for the host's log: no path separators, no leading dots, unique in the archive."""
    name = re.sub(r"[^\w.@-]", "_", result.host_name).lstrip(".") or "host"
    if name in taken:
        name = f"{name}-{result.id}"
    taken.add(name)
    return f"{name}.log"


def _log_lines(results: list[HostResult], with_tasks: bool = True) -> Iterator[str]:
    for result in results:
        yield f"== step {result.step_instance_id} · {result.host_name} ({result.address}) · {result.status}"
        if result.attempt > 1:
            yield f" · attempt {result.attempt}"
        yield f" · exit code {result.exit_code}\n" if result.exit_code is not None else "\n"
        if result.error:
            yield f"error: {result.error}\n"
        tasks = (
            db.session.scalars(
                select(TaskResult).where(TaskResult.host_result_id == result.id).order_by(TaskResult.seq)
            ).all()
            if with_tasks
            else []
        )
        for task in tasks or [result]:
            if isinstance(task, TaskResult):
                name = f"{task.role} : {task.task}" if task.role else task.task
                yield f"-- task {task.seq} {name} · {task.outcome}\n"
                if task.msg:
                    yield f"msg: {task.msg}\n"
            if task.stdout:
                yield task.stdout if task.stdout.endswith("\n") else task.stdout + "\n"
            if task.stderr:
                yield "-- stderr\n"
                yield task.stderr if task.stderr.endswith("\n") else task.stderr + "\n"
            if isinstance(task, TaskResult) and task.diff:
                yield "-- diff\n"
                yield task.diff if task.diff.endswith("\n") else task.diff + "\n"
        if result.stdout_truncated or result.stderr_truncated:
            yield "-- output truncated at the per-host cap\n"
