"""Job instances (one launch each), their steps, slices, and per-host results."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import EncryptedText, UTCDateTime, index_where, utcnow
from app.status import RUN_FINAL, HostStatus, RunStatus


class LaunchType(StrEnum):
    """How a job instance was started."""

    API = "api"
    TIMED = "timed"
    RELAUNCH = "relaunch"
    # Started by a node of a flow task.
    FLOW = "flow"


class OnFailure(StrEnum):
    """What a step's failure does to its job."""

    STOP = "stop"
    # The step ends ignored_error and the job goes on as if it had succeeded.
    IGNORE = "ignore"
    # The job goes on and ends failed: a plain transfer pushes what its other sources brought.
    CONTINUE = "continue"


class RollingMode(StrEnum):
    """What a rolling step does after a batch."""

    PAUSE = "pause"
    IGNORE = "ignore"
    CONFIRM = "confirm"


def digest_of(stdout: str) -> str:
    """The key that groups hosts with identical output."""
    return hashlib.blake2b(stdout.encode(), digest_size=16).hexdigest()


# Job instances that hold a place in their project's limit: dispatched, and neither ended nor waiting
# for someone's confirmation; and those the limit holds back. Literal SQL rather than bound values, in
# the partial indexes and the queries alike, so that both databases' planners see that a query's
# condition is its index's: counting them then reads those rows alone, however long the history.
PLACE_HOLDING_STATUSES = sorted(set(RunStatus) - RUN_FINAL - {RunStatus.WAITING_USER})
HOLDING_PLACE = "dispatched_at IS NOT NULL AND status IN ({})".format(
    ", ".join(f"'{status}'" for status in PLACE_HOLDING_STATUSES)
)
HELD = f"dispatched_at IS NULL AND status = '{RunStatus.WAITING}'"

EMPTY_OUTPUT_DIGEST = digest_of("")
# The task count of a user's playbook, which is not known ahead: each host's recap decides its status.
PLAYBOOK_TASKS = 0
# The step (and job) kind of an ad-hoc command: one task, whose result is kept as a task result too.
AD_HOC = "ad_hoc"


class JobInstance(db.Model):
    __tablename__ = "job_instance"
    # History is read newest first within a project, narrowed by one of these.
    __table_args__ = (
        Index("ix_job_instance_project_created", "project_id", "created_at"),
        Index("ix_job_instance_project_status_created", "project_id", "status", "created_at"),
        Index("ix_job_instance_project_launcher_created", "project_id", "launched_by", "created_at"),
        Index("ix_job_instance_project_type_created", "project_id", "launch_type", "created_at"),
        index_where("ix_job_instance_project_holding_place", "project_id", condition=HOLDING_PLACE),
        index_where("ix_job_instance_project_held", "project_id", "id", condition=HELD),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.WAITING, index=True)
    host_count: Mapped[int] = mapped_column(Integer, default=0)
    launched_by: Mapped[str] = mapped_column(String(64), default="")
    launch_type: Mapped[str] = mapped_column(String(16), default=LaunchType.API)
    relaunch_of_id: Mapped[int | None] = mapped_column(ForeignKey("job_instance.id", ondelete="SET NULL"))
    # The launch request as validated, minus sensitive values (those stay encrypted on the steps);
    # a relaunch replays it.
    request: Mapped[dict] = mapped_column(JSON, default=dict)
    # When its slices went on the queue; None while the project's running limit holds it back.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Matches of dangerous-command rules whose action is scan: the launch went on, with these warnings.
    warnings: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("job_template.id", ondelete="SET NULL"), index=True
    )
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("job_plan.id", ondelete="SET NULL"), index=True)
    # The global variables as launched: {name: {"type", "value"}}, secret values left out.
    variables: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")
    # Secret variable values as launched: encrypted JSON {name: value}.
    secret_variables: Mapped[str | None] = mapped_column(EncryptedText)
    callback_url: Mapped[str | None] = mapped_column(Text)
    # The client's key this launch answers to, while it is kept.
    idempotency: Mapped[IdempotencyKey | None] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )
    # The timed job whose run launched it.
    timed_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("timed_job.id", ondelete="SET NULL"), index=True
    )

    steps: Mapped[list[StepInstance]] = relationship(
        back_populates="job", order_by="StepInstance.seq", cascade="all, delete-orphan"
    )
    operations: Mapped[list[JobOperation]] = relationship(
        order_by="JobOperation.id", cascade="all, delete-orphan"
    )


class IdempotencyKey(db.Model):
    """A client's key for one launch endpoint of a project: a retried launch with the same key and the
    same body answers with the job instance the first one started, until the key expires."""

    __tablename__ = "idempotency_key"
    # The loser of two simultaneous launches with one key is refused here, and answers as a replay.
    __table_args__ = (UniqueConstraint("project_id", "endpoint", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    # The launch route under the project, e.g. "script-executions" or "job-plans/3/launch".
    endpoint: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the launch's validated body, so that the same key with another request is refused.
    request_digest: Mapped[str] = mapped_column(String(64))
    job_instance_id: Mapped[int] = mapped_column(
        ForeignKey("job_instance.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    job: Mapped[JobInstance] = relationship(back_populates="idempotency")


class StepInstance(db.Model):
    __tablename__ = "step_instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_instance_id: Mapped[int] = mapped_column(
        ForeignKey("job_instance.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.WAITING)
    # What the compiler needs, minus secrets: language, content, params, timeout, forks, account id.
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    # Sensitive parameters, as encrypted JSON.
    secret_params: Mapped[str | None] = mapped_column(EncryptedText)
    # The library script version it runs, if any; kept in the spec too, which outlives the version.
    script_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("script_version.id", ondelete="SET NULL"), index=True
    )
    # How many tasks the compiled playbook runs per host: with one, a host's first result is final;
    # 0 for a user's playbook, whose tasks are not counted (its recap decides).
    task_count: Mapped[int] = mapped_column(Integer, default=1)
    host_count: Mapped[int] = mapped_column(Integer, default=0)
    # The template step it comes from (a transfer step makes a fetch step per source path and a push step).
    template_step: Mapped[str | None] = mapped_column(String(255))
    on_failure: Mapped[str] = mapped_column(String(16), default=OnFailure.STOP, server_default="stop")
    # A rolling step's batch sizes, in order; empty: one batch of every host.
    batches: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    rolling_mode: Mapped[str | None] = mapped_column(String(16))
    # The batch running or last run (0 before the first).
    current_batch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When its slices went on the queue: steps of a higher seq wait for the lower ones to end.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What a step that acts on no host printed: a repository sync's log, a syntax check's answer.
    output: Mapped[str | None] = mapped_column(Text)

    job: Mapped[JobInstance] = relationship(back_populates="steps")
    slices: Mapped[list[Slice]] = relationship(order_by="Slice.index", cascade="all, delete-orphan")


class Slice(db.Model):
    """A part of a step's hosts, run by one RQ job on one worker."""

    __tablename__ = "step_slice"
    __table_args__ = (Index("ix_step_slice_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    step_instance_id: Mapped[int] = mapped_column(
        ForeignKey("step_instance.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    # The rolling batch it belongs to (1 for a step run in one batch).
    batch: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.WAITING)
    host_count: Mapped[int] = mapped_column(Integer, default=0)
    # When it went on the queue: a step's slices go batch by batch, and a retry adds slices.
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    step: Mapped[StepInstance] = relationship(back_populates="slices")

    @property
    def rq_job_id(self) -> str:
        return f"opsflow-slice-{self.id}"


class HostResult(db.Model):
    __tablename__ = "host_result"
    __table_args__ = (
        # A retry adds an attempt of the host, never overwrites one.
        UniqueConstraint("step_instance_id", "host_name", "attempt", name="uq_host_result_step_host_attempt"),
        Index("ix_host_result_step_status", "step_instance_id", "status"),
        Index("ix_host_result_job_status", "job_instance_id", "status"),
        Index("ix_host_result_host_name", "host_name"),
        Index("ix_host_result_address", "address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_instance_id: Mapped[int] = mapped_column(ForeignKey("job_instance.id", ondelete="CASCADE"))
    step_instance_id: Mapped[int] = mapped_column(ForeignKey("step_instance.id", ondelete="CASCADE"))
    slice_id: Mapped[int] = mapped_column(ForeignKey("step_slice.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int | None] = mapped_column(ForeignKey("host.id", ondelete="SET NULL"), index=True)
    host_name: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255))
    # 1 for the host's first run of the step; each retry of the step on the host adds one.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The host's last attempt of the step, the one counts, lists and the step's status read: kept as a
    # flag, so that every such query stays one indexed filter instead of a max() per host.
    latest: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    status: Mapped[str] = mapped_column(String(16), default=HostStatus.WAITING)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str] = mapped_column(Text, default="")
    output_digest: Mapped[str] = mapped_column(String(32), default=EMPTY_OUTPUT_DIGEST)
    stderr: Mapped[str] = mapped_column(Text, default="")
    stdout_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    stderr_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tasks: Mapped[list[TaskResult]] = relationship(
        order_by="TaskResult.seq", cascade="all, delete-orphan", back_populates="host_result"
    )

    @property
    def duration(self) -> float | None:
        if self.started_at and self.ended_at:
            return round((self.ended_at - self.started_at).total_seconds(), 3)
        return None


class TaskResult(db.Model):
    """One task's result on one host (one attempt of it), for playbooks of several tasks and ad-hoc
    commands; `seq` is its place in the host's run."""

    __tablename__ = "task_result"
    __table_args__ = (UniqueConstraint("host_result_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_result_id: Mapped[int] = mapped_column(ForeignKey("host_result.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(255), default="")
    # The role the task belongs to, if any.
    role: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(128), default="")
    # ok, changed, failed, skipped, unreachable, ignored or rescued (TaskStatus).
    outcome: Mapped[str] = mapped_column(String(16))
    changed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    msg: Mapped[str] = mapped_column(Text, default="")
    # What the task changed, as a unified diff, when it ran in diff mode.
    diff: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    host_result: Mapped[HostResult] = relationship(back_populates="tasks")

    @property
    def duration(self) -> float | None:
        if self.started_at and self.ended_at:
            return round((self.ended_at - self.started_at).total_seconds(), 3)
        return None


class JobOperation(db.Model):
    """Something done to a job instance or one of its steps: who, when, what, and why."""

    __tablename__ = "job_operation"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_instance_id: Mapped[int] = mapped_column(
        ForeignKey("job_instance.id", ondelete="CASCADE"), index=True
    )
    step_instance_id: Mapped[int | None] = mapped_column(ForeignKey("step_instance.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NamespaceValue(db.Model):
    """One host's own value of a namespace variable in a job instance, set from its output in a step."""

    __tablename__ = "namespace_value"
    __table_args__ = (UniqueConstraint("job_instance_id", "name", "host_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_instance_id: Mapped[int] = mapped_column(ForeignKey("job_instance.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    host_name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    step_instance_id: Mapped[int | None] = mapped_column(ForeignKey("step_instance.id", ondelete="SET NULL"))
