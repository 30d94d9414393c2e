"""Timed jobs: saving them (target, variables and schedule checked), their runs, and launching a run through
the same launch services the API uses.

A run row is inserted before anything is launched, under a unique constraint on (timed job, origin, scheduled
time): when several schedulers fire the same time, the one whose insert wins launches, the others do nothing.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.config import MISSED_RECORDED_MAX
from app.config import current as settings
from app.execution.bulk import insert_ignoring_duplicates
from app.extensions import db, redis
from app.flows import engine
from app.models import (
    Flow,
    FlowTask,
    JobInstance,
    JobPlan,
    JobTemplate,
    LaunchType,
    Overlap,
    RunOrigin,
    TimedJob,
    TimedJobRun,
    TimedRunStatus,
    User,
)
from app.models.base import utcnow
from app.scheduler.fire_times import Schedule, fire_times, next_fire, parse_schedule
from app.secrets import MASK
from app.services import (
    audit,
    executions,
    flow_tasks,
    idempotency,
    launches,
    records,
    templates,
    variables,
)
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, ServiceError, Unauthorized, fields_under
from app.services.identity import hash_token
from app.services.inventory import resolve_targets
from app.status import (
    FLOW_TASK_ENDED,
    FLOW_TASK_FAILING,
    RUN_FAILING,
    RUN_FINAL,
    FlowTaskStatus,
    RunStatus,
)

SECRET_PREFIX = "opt_"
# Fields whose change sets the schedule anew: fire times before the change never count as missed.
SCHEDULE_SHAPE = ("schedule", "timezone", "start_at", "end_at")
SCHEDULE_FIELDS = (*SCHEDULE_SHAPE, "enabled")
TARGET_FIELDS = ("target", "variables")
# A run claimed this long ago and still not launched lost its scheduler: another one launches it.
STALE_FIRING = timedelta(seconds=30)
STATISTICS_WINDOW = timedelta(hours=24)
STATISTICS_RUNS = 10
SCHEDULER = Actor(0, "scheduler", False)


@dataclass(frozen=True)
class TargetKind:
    """What a timed job can run: how a target of this kind is checked on save (returning the variable
    definitions the overrides are of) and how a run launches it, once per run however often it is asked
    (returning what it started: the run's job_instance_id or flow_task_id)."""

    check: Callable[[int, Any, dict[str, Any]], list[dict[str, Any]]]
    launch: Callable[[Actor, TimedJob, dict[str, Any], int], dict[str, int]]


def check_plan(project_id: int, plan_id: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    with fields_under("target.plan_id", missing_is_invalid=True):
        plan = records.get(JobPlan, plan_id, project_id)
    launches.checked_values(project_id, launches.plan_steps(plan), plan, overrides)
    return plan.variables


def check_template(project_id: int, template_id: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    with fields_under("target.template_id", missing_is_invalid=True):
        template = records.get(JobTemplate, template_id, project_id)
    expanded = templates.expand(template)
    launches.checked_values(project_id, expanded, None, overrides)
    return expanded.variables


def check_flow(project_id: int, flow_id: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    with fields_under("target.flow_id", missing_is_invalid=True):
        flow = records.get(Flow, flow_id, project_id)
    graph = engine.graph_of(flow.current)
    flow_tasks.task_values(graph, flow.current.secret_default_values, overrides)
    return [{"name": variable.name, "type": variable.kind} for variable in graph.variables.values()]


def check_script(project_id: int, body: dict[str, Any], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    if overrides:
        raise Invalid("a script execution has no variables: give it params", "variables")
    with fields_under("target.script_execution", missing_is_invalid=True):
        executions.script_step(project_id, body, resolve_targets(project_id, body["targets"]))
    return []


def launched_by(timed_job: TimedJob) -> dict[str, Any]:
    return {"launch_type": LaunchType.TIMED, "timed_job_id": timed_job.id}


def run_key(run_id: int) -> str:
    """The idempotency key a run launches under: a run launched again (its scheduler died while firing)
    starts nothing new."""
    return f"timed-run-{run_id}"


def job_once(
    timed_job: TimedJob, run_id: int, launch: Callable[[dict[str, Any]], JobInstance]
) -> dict[str, int]:
    """Launch a job instance once per run; `launch` gets the idempotency claim to merge into its body."""
    job, _ = idempotency.launch_once(timed_job.project_id, TIMED_RUN_ENDPOINT, run_key(run_id), {}, launch)
    return {"job_instance_id": job.id}


def launch_job(actor: Actor, timed_job: TimedJob, overrides: dict[str, Any], run_id: int) -> dict[str, int]:
    kind, target_id = timed_job.target_kind, next(iter(timed_job.target.values()))
    launch = launches.launch_plan if kind == "plan_id" else launches.launch_template
    return job_once(
        timed_job,
        run_id,
        lambda claimed: launch(
            actor,
            timed_job.project_id,
            target_id,
            {"variables": overrides, **claimed},
            **launched_by(timed_job),
        ),
    )


def launch_script(
    actor: Actor, timed_job: TimedJob, _overrides: dict[str, Any], run_id: int
) -> dict[str, int]:
    body = dict(timed_job.target["script_execution"])
    if body.get("sensitive"):
        body["params"] = timed_job.secrets.get("params", [])
    return job_once(
        timed_job,
        run_id,
        lambda claimed: executions.launch_script(
            actor, timed_job.project_id, {**body, **claimed}, **launched_by(timed_job)
        ),
    )


def launch_flow(actor: Actor, timed_job: TimedJob, overrides: dict[str, Any], run_id: int) -> dict[str, int]:
    """A started task of the flow's newest version, under the flow tasks' own idempotency key."""
    flow_id = timed_job.target["flow_id"]
    key = run_key(run_id)
    data = {"name": timed_job.name, "variables": overrides, "idempotency_key": key}
    task = flow_tasks.replayed(timed_job.project_id, flow_id, data) or flow_tasks.create_task(
        actor, timed_job.project_id, flow_id, data, timed_job_id=timed_job.id
    )
    # Users choose flow tasks' keys too: a task someone else started under this one is not this run's.
    if task.timed_job_id != timed_job.id:
        raise Conflict(f"flow task {task.id}, not started by this timed job, holds this run's key {key!r}")
    return {"flow_task_id": task.id}


# The launch endpoint timed runs' idempotency keys belong to.
TIMED_RUN_ENDPOINT = "timed-runs"
# The one place a target kind meets its check and launch functions.
TARGET_KINDS = {
    "plan_id": TargetKind(check_plan, launch_job),
    "template_id": TargetKind(check_template, launch_job),
    "flow_id": TargetKind(check_flow, launch_flow),
    "script_execution": TargetKind(check_script, launch_script),
}


def timed_jobs_query(project_id: int, filters: dict[str, Any]) -> Select:
    query = select(TimedJob).where(TimedJob.project_id == project_id)
    if "enabled" in filters:
        query = query.where(TimedJob.enabled.is_(filters["enabled"]))
    return query.order_by(TimedJob.id)


def schedule_of(timed_job: TimedJob) -> Schedule:
    return parse_schedule(
        timed_job.schedule, timed_job.timezone, timed_job.start_at, timed_job.end_at, timed_job.schedule_since
    )


def next_fire_at(timed_job: TimedJob, after: datetime | None = None) -> datetime | None:
    """When it fires next (None: paused, or never again)."""
    if not timed_job.enabled:
        return None
    return next_fire(schedule_of(timed_job), after or utcnow())


def announce(timed_job_id: int) -> None:
    """Tell the schedulers that this timed job changed (or is gone)."""
    redis.client.publish(settings().timed_job_channel, str(timed_job_id))


def new_trigger_secret(timed_job: TimedJob) -> str:
    value = SECRET_PREFIX + secrets.token_urlsafe(32)
    timed_job.trigger_secret_hash = hash_token(value)
    return value


def create_timed_job(actor: Actor, project_id: int, data: dict[str, Any]) -> tuple[TimedJob, str]:
    """A new timed job and its trigger secret (shown once)."""
    require(actor, project_id, Action.OPERATE)
    timed_job = TimedJob(project_id=project_id, created_by=actor.username, secret_values=None)
    apply(actor, timed_job, {"enabled": True, **data})
    secret = new_trigger_secret(timed_job)
    records.save(timed_job)
    announce(timed_job.id)
    return timed_job, secret


def update_timed_job(actor: Actor, timed_job: TimedJob, data: dict[str, Any]) -> TimedJob:
    require(actor, timed_job.project_id, Action.OPERATE)
    apply(actor, timed_job, data)
    records.save(timed_job)
    announce(timed_job.id)
    return timed_job


def delete_timed_job(actor: Actor, timed_job: TimedJob) -> None:
    require(actor, timed_job.project_id, Action.OPERATE)
    timed_job_id = timed_job.id
    records.delete(timed_job)
    announce(timed_job_id)


def apply(actor: Actor, timed_job: TimedJob, data: dict[str, Any]) -> None:
    """Set the fields given, checking the target with its variables and the schedule with its bounds."""
    now = utcnow()
    for key in ("name", "description", "overlap", "misfire_grace", "notify_after_failures"):
        if key in data:
            setattr(timed_job, key, data[key])
    if any(key in data for key in TARGET_FIELDS):
        set_target(timed_job, data.get("target", timed_job.target), data.get("variables"))
        # Scheduled runs launch with the rights of whoever last chose what they run.
        timed_job.run_as_id = actor.user_id
    if any(key in data for key in SCHEDULE_FIELDS):
        set_schedule(timed_job, data, now)


def set_target(timed_job: TimedJob, target: dict[str, Any], given: dict[str, Any] | None) -> None:
    kind = next(iter(target))
    if kind == "script_execution" and target[kind].get("sensitive") and target[kind].get("params") is None:
        # The stored body, whose sensitive params are kept apart.
        target = {kind: {**target[kind], "params": timed_job.secrets.get("params", [])}}
    kept = timed_job.secrets.get("variables", {})
    overrides = given if given is not None else {**timed_job.variables, **kept}
    # A secret shown masked and given back keeps its value.
    overrides = {name: kept.get(name, value) if value == MASK else value for name, value in overrides.items()}
    definitions = TARGET_KINDS[kind].check(timed_job.project_id, target[kind], overrides)
    public, secret = variables.split_secrets(definitions, overrides)
    stored = dict(target)
    hidden: dict[str, Any] = {"variables": secret} if secret else {}
    if kind == "script_execution" and target[kind].get("sensitive"):
        stored[kind] = {**target[kind], "params": None}
        hidden["params"] = target[kind]["params"]
    timed_job.target = stored
    timed_job.variables = public
    timed_job.secret_values = json.dumps(hidden) if hidden else None


def set_schedule(timed_job: TimedJob, data: dict[str, Any], now: datetime) -> None:
    # On a whole second, so that intervals fire on whole seconds, and never before the change.
    since = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond else 0)
    given = {key: data.get(key, getattr(timed_job, key)) for key in SCHEDULE_FIELDS}
    schedule = parse_schedule(given["schedule"], given["timezone"], given["start_at"], given["end_at"], since)
    if schedule.at is not None and schedule.at <= now and "schedule" in data:
        raise Invalid("the time has passed: a one-shot time is in the future", "schedule.at")
    if given["enabled"] and next_fire(schedule, now) is None:
        field = "end_at" if schedule.end_at else "schedule"
        raise Invalid("this schedule has no fire time left", field)
    timed_job.schedule = given["schedule"]
    timed_job.timezone = given["timezone"]
    timed_job.start_at = schedule.start_at
    timed_job.end_at = schedule.end_at
    if (given["enabled"] and not timed_job.enabled) or any(key in data for key in SCHEDULE_SHAPE):
        timed_job.schedule_since = since
    timed_job.enabled = given["enabled"]
    timed_job.disabled_reason = None


def preview(timed_job: TimedJob, count: int) -> list[dict[str, str]]:
    """The next fire times, in the timed job's zone and in UTC (none while it is paused)."""
    if not timed_job.enabled:
        return []
    schedule = schedule_of(timed_job)
    return [
        {"at": time.astimezone(schedule.zone).isoformat(), "utc": time.isoformat()}
        for time in fire_times(schedule, utcnow(), count)
    ]


def rotate_secret(actor: Actor, project_id: int, timed_job_id: int) -> tuple[TimedJob, str]:
    """The timed job and its new trigger secret; the old one stops working at once."""
    require(actor, project_id, Action.OPERATE)
    timed_job = records.get(TimedJob, timed_job_id, project_id)
    secret = new_trigger_secret(timed_job)
    db.session.commit()
    return timed_job, secret


def revoke_secret(actor: Actor, project_id: int, timed_job_id: int) -> None:
    require(actor, project_id, Action.OPERATE)
    records.get(TimedJob, timed_job_id, project_id).trigger_secret_hash = None
    db.session.commit()


def secret_actor(project_id: int, timed_job_id: int, secret: str, address: str | None) -> Actor:
    """Whom a trigger with this timed job's secret acts as: the user its runs launch as."""
    timed_job = db.session.get(TimedJob, timed_job_id)
    if (
        timed_job is None
        or timed_job.project_id != project_id
        or timed_job.trigger_secret_hash is None
        or not hmac.compare_digest(timed_job.trigger_secret_hash, hash_token(secret))
    ):
        raise Unauthorized("the trigger secret is not valid")
    user = db.session.get(User, timed_job.run_as_id) if timed_job.run_as_id else None
    if user is None:
        raise Unauthorized("the user this timed job runs as no longer exists")
    return Actor(user.id, user.username, user.is_admin, False, address)


def run_as(timed_job: TimedJob) -> Actor | None:
    user = db.session.get(User, timed_job.run_as_id) if timed_job.run_as_id else None
    return Actor(user.id, user.username, user.is_admin) if user else None


def run_now(actor: Actor, project_id: int, timed_job_id: int) -> TimedJobRun:
    """One run at once, whatever the schedule, recorded like the others."""
    require(actor, project_id, Action.OPERATE)
    timed_job = records.get(TimedJob, timed_job_id, project_id)
    run = asked_run(timed_job, RunOrigin.RUN_NOW, actor)
    records.save(run, "scheduled_at")
    return start(run, actor)


def trigger(
    actor: Actor, project_id: int, timed_job_id: int, run_key: str | None, overrides: dict[str, Any]
) -> tuple[TimedJobRun, bool]:
    """A run asked for by an outside scheduler, and whether it is one an earlier call with the same run key
    made already."""
    require(actor, project_id, Action.OPERATE)
    timed_job = records.get(TimedJob, timed_job_id, project_id)
    if run_key:
        first = keyed_run(timed_job.id, run_key)
        if first is not None:
            return first, True
    merged = {**timed_job.override_values, **overrides}
    TARGET_KINDS[timed_job.target_kind].check(project_id, timed_job.target[timed_job.target_kind], merged)
    run = asked_run(timed_job, RunOrigin.TRIGGER, actor, run_key)
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        first = keyed_run(timed_job.id, run_key)
        if first is None:
            raise
        return first, True
    return start(run, actor, overrides), False


def asked_run(
    timed_job: TimedJob, origin: RunOrigin, actor: Actor, run_key: str | None = None
) -> TimedJobRun:
    """A run someone asked for now, fired as it is made."""
    now = utcnow()
    return TimedJobRun(
        timed_job_id=timed_job.id,
        origin=origin,
        scheduled_at=now,
        fired_at=now,
        run_key=run_key,
        triggered_by=actor.username,
    )


def keyed_run(timed_job_id: int, run_key: str | None) -> TimedJobRun | None:
    return db.session.scalar(
        select(TimedJobRun).where(TimedJobRun.timed_job_id == timed_job_id, TimedJobRun.run_key == run_key)
    )


def start(run: TimedJobRun, actor: Actor | None, overrides: dict[str, Any] | None = None) -> TimedJobRun:
    """Launch a claimed run's target; a refused launch leaves the run failed_to_launch with the reason."""
    run_id = run.id
    timed_job = db.session.get(TimedJob, run.timed_job_id)
    try:
        if actor is None:
            raise Invalid("the user this timed job runs as no longer exists")
        merged = {**timed_job.override_values, **(overrides or {})}
        started = TARGET_KINDS[timed_job.target_kind].launch(actor, timed_job, merged, run_id)
    except ServiceError as exc:
        db.session.rollback()
        reason = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return finish(run_id, TimedRunStatus.FAILED_TO_LAUNCH, reason=reason)
    return finish(run_id, TimedRunStatus.LAUNCHED, launched_at=utcnow(), **started)


def finish(run_id: int, status: TimedRunStatus, **values: Any) -> TimedJobRun:
    db.session.execute(update(TimedJobRun).where(TimedJobRun.id == run_id).values(status=status, **values))
    db.session.commit()
    return db.session.get(TimedJobRun, run_id)


def insert_runs(rows: list[dict[str, Any]]) -> list[int]:
    """Insert run rows, leaving out those whose fire another scheduler recorded first; the ids inserted."""
    statement = insert_ignoring_duplicates(TimedJobRun).values(rows).returning(TimedJobRun.id)
    ids = list(db.session.scalars(statement))
    db.session.commit()
    return ids


def fire(timed_job_id: int, scheduled_at: datetime, fired_at: datetime) -> TimedJobRun | None:
    """Fire one scheduled time: claim it, then launch (or skip, or queue, by the overlap rule). None when
    another scheduler claimed it, or the timed job is gone or paused."""
    # Fires of one timed job by several schedulers apply its overlap rule one after the other: the row
    # stays locked until this fire's run is recorded (a lock rows referring to it need not wait for).
    timed_job = db.session.get(TimedJob, timed_job_id, with_for_update={"key_share": True})
    if timed_job is None or not timed_job.enabled:
        db.session.rollback()
        return None
    status, reason = TimedRunStatus.FIRING, None
    if timed_job.overlap != Overlap.ALLOW:
        running = running_run(timed_job_id)
        # A queued run goes first even once the running one has ended: it is released within a second.
        waiting = waiting_run(timed_job_id) if timed_job.overlap == Overlap.QUEUE else None
        if waiting is not None:
            status, reason = TimedRunStatus.SKIPPED, f"run {waiting.id} already waits to run"
        elif running is not None and timed_job.overlap == Overlap.SKIP:
            status, reason = TimedRunStatus.SKIPPED, f"run {running.id} is still running"
        elif running is not None:
            status, reason = TimedRunStatus.QUEUED, f"waits for run {running.id}"
    row = {
        "timed_job_id": timed_job_id,
        "origin": RunOrigin.SCHEDULE,
        "scheduled_at": scheduled_at,
        "fired_at": fired_at,
        "status": status,
        "reason": reason,
        "triggered_by": SCHEDULER.username,
    }
    claimed = insert_runs([row])
    if not claimed:
        return None
    run = db.session.get(TimedJobRun, claimed[0])
    if status == TimedRunStatus.FIRING:
        run = start(run, run_as(db.session.get(TimedJob, timed_job_id)))
    disable_if_done(timed_job_id, scheduled_at)
    return run


def record_missed(timed_job_id: int, times: list[datetime], fired_at: datetime, reason: str) -> int:
    """Record fire times that did not run as missed (the latest ones, at most a bounded number); how many
    this scheduler recorded."""
    late = sorted(times)[-MISSED_RECORDED_MAX:]
    if not late:
        return 0
    rows = [
        {
            "timed_job_id": timed_job_id,
            "origin": RunOrigin.SCHEDULE,
            "scheduled_at": time,
            "fired_at": fired_at,
            "status": TimedRunStatus.MISSED,
            "reason": reason,
            "triggered_by": SCHEDULER.username,
        }
        for time in late
    ]
    recorded = len(insert_runs(rows))
    disable_if_done(timed_job_id, late[-1])
    return recorded


def disable_if_done(timed_job_id: int, last: datetime) -> None:
    """A timed job whose schedule has no fire time after `last` disables itself, and says why."""
    timed_job = db.session.get(TimedJob, timed_job_id)
    if timed_job is None or not timed_job.enabled or next_fire(schedule_of(timed_job), last) is not None:
        db.session.rollback()
        return
    reason = f"its schedule has no fire time after {last.isoformat()}"
    disabled = db.session.execute(
        update(TimedJob)
        .where(TimedJob.id == timed_job_id, TimedJob.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason)
    ).rowcount
    db.session.commit()
    if disabled:
        audit.record(
            SCHEDULER,
            resource="timed_job",
            action="disable",
            status_code=200,
            project_id=timed_job.project_id,
            resource_id=str(timed_job_id),
        )
        announce(timed_job_id)


def running_run(timed_job_id: int) -> TimedJobRun | None:
    """The timed job's latest run being launched, or launched with a job instance or flow task that has not
    ended."""
    return db.session.scalar(
        select(TimedJobRun)
        .outerjoin(JobInstance, JobInstance.id == TimedJobRun.job_instance_id)
        .outerjoin(FlowTask, FlowTask.id == TimedJobRun.flow_task_id)
        .where(
            TimedJobRun.timed_job_id == timed_job_id,
            or_(
                TimedJobRun.status == TimedRunStatus.FIRING,
                JobInstance.status.not_in(RUN_FINAL),
                FlowTask.status.not_in(FLOW_TASK_ENDED),
            ),
        )
        .order_by(TimedJobRun.id.desc())
        .limit(1)
    )


def waiting_run(timed_job_id: int) -> TimedJobRun | None:
    return db.session.scalar(
        select(TimedJobRun).where(
            TimedJobRun.timed_job_id == timed_job_id, TimedJobRun.status == TimedRunStatus.QUEUED
        )
    )


def release_waiting() -> None:
    """Launch each queued run whose timed job no longer runs, and each claimed run whose scheduler died
    before launching it (launch is idempotent per run, so a slow peer's run is not launched twice)."""
    now = utcnow()
    queued = db.session.scalars(select(TimedJobRun).where(TimedJobRun.status == TimedRunStatus.QUEUED)).all()
    stale = db.session.scalars(
        select(TimedJobRun).where(
            TimedJobRun.status == TimedRunStatus.FIRING, TimedJobRun.fired_at < now - STALE_FIRING
        )
    ).all()
    ready = [run.id for run in queued if running_run(run.timed_job_id) is None]
    db.session.rollback()
    for run_id, status in [
        *((id, TimedRunStatus.QUEUED) for id in ready),
        *((run.id, run.status) for run in stale),
    ]:
        claimed = db.session.execute(
            update(TimedJobRun)
            .where(TimedJobRun.id == run_id, TimedJobRun.status == status)
            .values(status=TimedRunStatus.FIRING, fired_at=utcnow())
        ).rowcount
        db.session.commit()
        if claimed:
            run = db.session.get(TimedJobRun, run_id)
            start(run, run_as(db.session.get(TimedJob, run.timed_job_id)))


def runs_query(timed_job: TimedJob, filters: dict[str, Any]) -> Select:
    """The timed job's runs matching every filter given, newest first."""
    query = select(TimedJobRun).where(TimedJobRun.timed_job_id == timed_job.id)
    if filters.get("status"):
        query = query.where(TimedJobRun.status.in_(filters["status"]))
    if "origin" in filters:
        query = query.where(TimedJobRun.origin == filters["origin"])
    if "scheduled_after" in filters:
        query = query.where(TimedJobRun.scheduled_at >= filters["scheduled_after"])
    if "scheduled_before" in filters:
        query = query.where(TimedJobRun.scheduled_at < filters["scheduled_before"])
    return query.order_by(TimedJobRun.scheduled_at.desc(), TimedJobRun.id.desc())


def outcome(run: TimedJobRun) -> str | None:
    """success or failed for a run that has come to an end one way or the other; None for the others."""
    if run.status == TimedRunStatus.FAILED_TO_LAUNCH:
        return "failed"
    if run.status != TimedRunStatus.LAUNCHED:
        return None
    if run.job_instance is not None:
        status, success, failing = run.job_instance.status, RunStatus.SUCCESS, RUN_FAILING
    elif run.flow_task is not None:
        status, success, failing = run.flow_task.status, FlowTaskStatus.SUCCESS, FLOW_TASK_FAILING
    else:
        return None
    if status == success:
        return "success"
    return "failed" if status in failing else None


def statistics(timed_job: TimedJob) -> dict[str, Any]:
    """Last run and its status, consecutive failures, success rate over the last 24 h (or the last 10 runs
    when fewer ran), the last 10 failures, and the next fire time."""
    recent = db.session.scalars(
        select(TimedJobRun)
        .where(
            TimedJobRun.timed_job_id == timed_job.id,
            TimedJobRun.status.in_([TimedRunStatus.LAUNCHED, TimedRunStatus.FAILED_TO_LAUNCH]),
        )
        .order_by(TimedJobRun.scheduled_at.desc(), TimedJobRun.id.desc())
        .limit(1000)
    ).all()
    last = db.session.scalar(
        select(TimedJobRun)
        .where(TimedJobRun.timed_job_id == timed_job.id)
        .order_by(TimedJobRun.scheduled_at.desc(), TimedJobRun.id.desc())
        .limit(1)
    )
    ended = [(run, outcome(run)) for run in recent if outcome(run)]
    consecutive = 0
    for _, result in ended:
        if result != "failed":
            break
        consecutive += 1
    since = utcnow() - STATISTICS_WINDOW
    window = [result for run, result in ended if run.scheduled_at >= since]
    if len(window) < STATISTICS_RUNS:
        window = [result for _, result in ended[:STATISTICS_RUNS]]
    failures = [run for run, result in ended if result == "failed"][:STATISTICS_RUNS]
    next_time = next_fire_at(timed_job)
    return {
        "last_run": run_summary(last) if last else None,
        "consecutive_failures": consecutive,
        "success_rate": round(window.count("success") / len(window), 4) if window else None,
        "runs_counted": len(window),
        "last_failures": [run_summary(run) for run in failures],
        "next_fire_at": next_time.isoformat() if next_time else None,
    }


def run_summary(run: TimedJobRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "scheduled_at": run.scheduled_at.isoformat(),
        "status": run.status,
        "reason": run.reason,
        "job_instance_id": run.job_instance_id,
        "flow_task_id": run.flow_task_id,
        "target_status": run.target_status,
    }


def enabled_timed_jobs() -> list[TimedJob]:
    return list(db.session.scalars(select(TimedJob).where(TimedJob.enabled.is_(True))))


def last_scheduled(timed_job_id: int) -> datetime | None:
    return db.session.scalar(
        select(func.max(TimedJobRun.scheduled_at)).where(
            TimedJobRun.timed_job_id == timed_job_id, TimedJobRun.origin == RunOrigin.SCHEDULE
        )
    )
