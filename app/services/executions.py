"""Launching script executions, starting their slices on workers, and cancelling them."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from app.config import SLICE_DONE_PATIENCE_SECONDS, TIMEOUT_MAX
from app.config import current as settings
from app.execution import events
from app.execution.compiler import Account as LoginAccount
from app.execution.compiler import CompiledStep, ScriptStep, Target, compile_script
from app.execution.isolation import isolation
from app.execution.keys import cancel_key, heartbeat_key
from app.execution.runner import RunOutcome, RunRequest
from app.extensions import db, redis
from app.models import (
    Account,
    Connection,
    Host,
    HostResult,
    HostStatus,
    JobInstance,
    JobOperation,
    LaunchType,
    RunStatus,
    Slice,
    StepInstance,
    StepType,
)
from app.models.base import utcnow
from app.secrets import Cipher
from app.services import audit, danger, dispatch, idempotency, records, scripts
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, TooManyRequests
from app.services.inventory import effective_variables, resolve_targets
from app.services.progress import finish_slice, mark_started, settle_job
from app.services.step_values import step_values
from app.status import RUN_FINAL

T = TypeVar("T")
# A cancel request outlives any run it can concern.
CANCEL_KEY_TTL = TIMEOUT_MAX + dispatch.RQ_TIMEOUT_MARGIN
RETRY_AFTER_SECONDS = 30


def refuse_over_limit(project_id: int) -> None:
    """429 when the project runs as many job instances as it may and launches over it are refused."""
    limits = settings()
    if limits.over_limit == "refuse" and not dispatch.has_room(project_id):
        raise TooManyRequests(
            f"project {project_id} runs {limits.project_running_limit} job instances already; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def require_account(project_id: int, account_id: int | None, hosts: list[Host], field: str) -> None:
    """The account exists in the project, or none is needed: every host is local."""
    if account_id is not None:
        records.get_many(Account, [account_id], project_id, field)
    elif any(host.connection != Connection.LOCAL for host in hosts):
        raise Invalid("an account is required to reach ssh and winrm hosts", field)


def launch_script(
    actor: Actor,
    project_id: int,
    data: dict[str, Any],
    launch_type: LaunchType = LaunchType.API,
    relaunch_of: int | None = None,
    timed_job_id: int | None = None,
) -> JobInstance:
    """Create the job instance of a script run and queue its slices; returns at once."""
    require(actor, project_id, Action.OPERATE)
    refuse_over_limit(project_id)
    hosts = resolve_targets(project_id, data["targets"])
    step, warnings = script_step(project_id, data, hosts)
    step.name = data.get("name") or "script execution"
    job = JobInstance(
        project_id=project_id,
        name=step.name,
        kind="script_execution",
        host_count=len(hosts),
        launched_by=actor.username,
        launch_type=launch_type,
        relaunch_of_id=relaunch_of,
        timed_job_id=timed_job_id,
        request={
            key: value
            for key, value in data.items()
            if key != "idempotency" and not (data.get("sensitive") and key == "params")
        },
        warnings=warnings,
        idempotency=data.get("idempotency"),
    )
    job.steps.append(step)
    return enqueue(job, [hosts])


def script_step(project_id: int, data: dict[str, Any], hosts: list[Host]) -> tuple[StepInstance, list]:
    """The step that runs a script on `hosts`, checked against the dangerous-command rules, and the
    warnings of the rules that only scan."""
    script = scripts.runnable(project_id, data["script"])
    danger.refuse_oversized(script.content, "script.content")
    verdict = danger.check(project_id, script.content, script.language)
    danger.refuse_intercepted(verdict, "script.content")
    account_id = data.get("account_id")
    require_account(project_id, account_id, hosts, "account_id")
    if script.language != "powershell" and any(host.connection == Connection.WINRM for host in hosts):
        raise Invalid("winrm hosts run powershell scripts only", "script.language")
    params = data.get("params", [])
    sensitive = data.get("sensitive", False)
    step = StepInstance(
        name="script",
        kind="script",
        host_count=len(hosts),
        script_version_id=script.version_id,
        spec={
            "language": script.language,
            "content": script.content,
            "script_id": script.script_id,
            "version_id": script.version_id,
            "params": None if sensitive else params,
            "sensitive": sensitive,
            "account_id": account_id,
            "timeout": data["timeout"],
            "forks": data.get("forks"),
        },
        secret_params=json.dumps(params) if sensitive else None,
    )
    return step, verdict.warnings


def refuse_unsandboxed(steps: list[StepInstance], hosts_of_steps: list[list[Host]]) -> None:
    """Conflict when a step would run user content on the controller and runs cannot be sandboxed."""
    state = isolation(settings())
    for step, hosts in zip(steps, hosts_of_steps, strict=True):
        if step.kind == StepType.PLAYBOOK:
            state.refuse("playbook steps", "steps")
        if any(host.connection == Connection.LOCAL for host in hosts):
            state.refuse("local hosts", "targets")


def enqueue(job: JobInstance, hosts_of_steps: list[list[Host]]) -> JobInstance:
    """Write a new job instance, its steps' slices and host rows (the hosts of each step in order), and
    queue it when its project has room."""
    refuse_unsandboxed(job.steps, hosts_of_steps)
    chunks_of_steps = []
    for step, hosts in zip(job.steps, hosts_of_steps, strict=True):
        if step.spec.get("whole") or (not hosts and step.spec.get("hostless")):
            # One run for them all: a repository's inventory, or a step that acts on no host.
            chunks = [(1, hosts)]
        else:
            chunks = list(chunked(hosts, step.batches))
        step.slices.extend(
            Slice(index=index, batch=batch, host_count=len(chunk))
            for index, (batch, chunk) in enumerate(chunks)
        )
        chunks_of_steps.append([chunk for _, chunk in chunks])
    # A new job has no operations: known as such, they need not be read for its answer.
    job.operations = []
    with dispatch.admission(job):
        db.session.add(job)
        try:
            db.session.flush()
        except IntegrityError as exc:
            db.session.rollback()
            if job.idempotency is None:
                raise
            raise idempotency.KeyTaken from exc
        rows = [
            {
                "job_instance_id": job.id,
                "step_instance_id": step.id,
                "slice_id": piece.id,
                "host_id": host.id,
                "host_name": host.name,
                "address": host.address,
                "status": HostStatus.WAITING,
            }
            for step, chunks in zip(job.steps, chunks_of_steps, strict=True)
            for piece, chunk in zip(step.slices, chunks, strict=True)
            for host in chunk
        ]
        if rows:
            db.session.execute(insert(HostResult), rows)
        audit.add_expected(str(job.id))
        records.commit_keeping([job, *job.steps, *(piece for step in job.steps for piece in step.slices)])
    return job


def chunked(hosts: Sequence[T], batches: list[int]) -> Iterator[tuple[int, Sequence[T]]]:
    """(batch, hosts) of each slice: hosts in batches of the given sizes (one batch when none), each
    batch cut into slices of at most the slice size."""
    size = settings().slice_size
    start = 0
    for batch, batch_size in enumerate(batches or [len(hosts)], 1):
        members = hosts[start : start + batch_size]
        start += batch_size
        for offset in range(0, len(members), size):
            yield batch, members[offset : offset + size]


# The launchers a relaunch can replay, by job kind (file transfers add theirs: app/services/transfers.py).
RELAUNCHABLE = {"script_execution": launch_script}


def relaunch(actor: Actor, project_id: int, job_id: int, only_failed: bool = False) -> JobInstance:
    """Launch an ended job instance again with its parameters, on all its hosts or on its failed ones."""
    require(actor, project_id, Action.OPERATE)
    job = records.get(JobInstance, job_id, project_id)
    if not RunStatus(job.status).final:
        raise Conflict(f"job instance {job.id} is {job.status}; relaunch it once it has ended", "status")
    if job.kind not in RELAUNCHABLE or not job.request:
        raise Conflict(f"job instance {job.id} ({job.kind}) has no launch request to replay", "kind")
    data = copy.deepcopy(job.request)
    if data.get("sensitive"):
        data["params"] = json.loads(job.steps[0].secret_params or "[]")
    if only_failed:
        failed = db.session.scalars(
            select(HostResult.host_id)
            .where(
                # The last step's hosts are the targets; earlier steps reach sources.
                HostResult.step_instance_id == job.steps[-1].id,
                HostResult.latest,
                HostResult.status != HostStatus.SUCCESS,
                HostResult.host_id.is_not(None),
            )
            .distinct()
        ).all()
        if not failed:
            raise Conflict(f"job instance {job.id} has no failed host that still exists", "failed_only")
        data["targets"] = {"hosts": sorted(failed)}
    return RELAUNCHABLE[job.kind](actor, project_id, data, LaunchType.RELAUNCH, job.id)


def claim(slice_id: int, worker: str) -> RunRequest | LocalWork | None:
    """Mark a waiting slice running on this worker and compile it; None when it is not waiting."""
    claimed = db.session.execute(
        update(Slice)
        .where(Slice.id == slice_id, Slice.status == RunStatus.WAITING)
        .values(status=RunStatus.RUNNING, worker=worker, started_at=utcnow())
    ).rowcount
    if not claimed:
        db.session.rollback()
        return None
    piece = db.session.get(Slice, slice_id)
    mark_started(piece)
    db.session.commit()
    redis.client.set(heartbeat_key(slice_id), "1", ex=settings().heartbeat_ttl)
    return compile_slice(piece)


@dataclass
class LocalWork:
    """A slice that runs no ansible-playbook: work the worker does itself, such as a repository sync."""

    job_id: int
    work: Callable[[], RunOutcome]


def compile_slice(piece: Slice) -> RunRequest | LocalWork:
    return STEP_COMPILERS[piece.step.kind](piece)


def compile_script_slice(piece: Slice) -> RunRequest:
    step = piece.step
    spec = step.spec
    scripts.require_runnable(spec)
    targets = slice_targets(piece)
    account = step_account(spec)
    params = json.loads(step.secret_params) if spec.get("sensitive") else spec.get("params") or []
    secrets = params if spec.get("sensitive") else []
    environment, per_host = {}, None
    # Steps of a template's job (they carry the job's namespace names) read its variables.
    if "namespaces" in spec:
        values = step_values(step, [target.name for target in targets])
        environment, per_host, secrets = values.environment, values.per_host, [*secrets, *values.secrets]
    compiled = compile_script(
        ScriptStep(spec["language"], spec["content"], params, environment),
        targets,
        login_of(account),
        per_host,
    )
    return run_request(piece, compiled, len(targets), account, secrets)


# How a worker compiles a slice, by step kind (transfers and reachability checks add theirs).
STEP_COMPILERS: dict[str, Callable[[Slice], RunRequest | LocalWork]] = {"script": compile_script_slice}


def slice_targets(piece: Slice) -> list[Target]:
    """The slice's hosts that still exist, as the compiler sees them."""
    results = db.session.scalars(select(HostResult).where(HostResult.slice_id == piece.id)).all()
    host_ids = [result.host_id for result in results if result.host_id is not None]
    hosts = {host.id: host for host in db.session.scalars(select(Host).where(Host.id.in_(host_ids)))}
    variables = effective_variables(list(hosts.values()))
    return [
        Target(host.name, host.address, host.port, host.connection, variables[host.id])
        for host in (hosts.get(result.host_id) for result in results)
        if host is not None
    ]


def step_account(spec: dict[str, Any]) -> Account | None:
    """The account a step logs in with, if it names one."""
    return db.session.get(Account, spec["account_id"]) if spec.get("account_id") else None


def login_of(account: Account | None) -> LoginAccount | None:
    if account is None:
        return None
    return LoginAccount(account.username, account.become, account.become_method, account.become_user)


def run_request(
    piece: Slice,
    compiled: CompiledStep,
    host_count: int,
    account: Account | None,
    secrets: list[str],
    readable: Sequence[Path] = (),
    writable: Sequence[Path] = (),
) -> RunRequest:
    """What the runner needs for a compiled slice: forks, timeout, the secrets to use and to mask, and
    the paths outside its directory its sandbox shows (read-only, writable)."""
    spec = piece.step.spec
    forks = min(spec.get("forks") or settings().forks_max, settings().forks_max, max(host_count, 1))
    masked = [account.password, account.become_password, *secrets] if account else list(secrets)
    return RunRequest(
        slice_id=piece.id,
        event_token=events.slice_token(Cipher.configured_key(), piece.id),
        job_id=piece.step.job_instance_id,
        compiled=compiled,
        forks=forks,
        timeout=spec["timeout"],
        private_key=account.private_key if account else None,
        password=account.password if account else None,
        become_password=account.become_password if account else None,
        secrets=[secret for secret in masked if secret],
        project_id=piece.step.job.project_id,
        readable=list(readable),
        writable=list(writable),
    )


def record_output(slice_id: int, output: str) -> None:
    """Keep what a run that acts on no host printed, as its step's output."""
    piece = db.session.get(Slice, slice_id)
    piece.step.output = output[-settings().output_cap_bytes :]
    db.session.commit()


def cancel(actor: Actor, project_id: int, job_id: int, reason: str = "") -> JobInstance:
    """Terminate a job: slices not started end at once, running ones are stopped by their runner,
    steps waiting for a confirmation end terminated."""
    require(actor, project_id, Action.OPERATE)
    job = records.get(JobInstance, job_id, project_id)
    if RunStatus(job.status).final:
        raise Conflict(f"job instance {job.id} has already ended ({job.status})", "status")
    redis.client.set(cancel_key(job.id), "1", ex=CANCEL_KEY_TTL)
    db.session.execute(
        update(JobInstance)
        .where(JobInstance.id == job.id, JobInstance.status.not_in(RUN_FINAL))
        .values(status=RunStatus.STOPPING, cancelled_by=actor.username)
    )
    record_operation(job, actor, "terminate", reason=reason)
    db.session.commit()
    db.session.refresh(job)
    # Slices before their steps, as a worker's claim and a slice's end lock them: in any other order
    # the two wait on each other, and PostgreSQL ends one of them.
    for step in job.steps:
        for piece in step.slices:
            if piece.status == RunStatus.WAITING:
                finish_slice(
                    piece.id, RunStatus.TERMINATED, "cancelled before it started", unstarted_only=True
                )
    now = utcnow()
    for step in job.steps:
        if step.status in (RunStatus.WAITING_USER, RunStatus.WAITING) and not any(
            piece.status == RunStatus.RUNNING for piece in step.slices
        ):
            step.status = RunStatus.TERMINATED
            step.ended_at = now
    settle_job(job)
    db.session.commit()
    dispatch.after_commit()
    return job


def record_operation(
    job: JobInstance,
    actor: Actor,
    action: str,
    step: StepInstance | None = None,
    reason: str = "",
    **details: Any,
) -> None:
    """Note on the job instance who did what, when, and why."""
    db.session.add(
        JobOperation(
            job_instance_id=job.id,
            step_instance_id=step.id if step else None,
            action=action,
            actor=actor.username,
            reason=reason,
            details=details,
        )
    )


def publish_slice_done(slice_id: int, status: RunStatus, error: str | None = None) -> None:
    """Report how a slice ended, waiting a while for a Redis that went away (past that, the reaper ends
    the slice once Redis is back)."""
    events.publish(
        redis.client,
        settings().event_stream,
        events.vouched(Cipher.configured_key(), [events.slice_done(slice_id, status, error)]),
        patience=SLICE_DONE_PATIENCE_SECONDS,
    )
