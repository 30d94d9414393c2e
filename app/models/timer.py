"""Timed jobs (a target bound to a schedule) and their runs, one row per fire."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import EncryptedText, UTCDateTime, utcnow
from app.models.flow import FlowTask
from app.models.job import JobInstance
from app.status import TimedRunStatus


class Overlap(StrEnum):
    """What a fire does while the timed job's previous run is still running."""

    ALLOW = "allow"
    SKIP = "skip"
    # At most one run waits for the running one to end.
    QUEUE = "queue"


class RunOrigin(StrEnum):
    """What made a run: its schedule, a user's run-now, or a call of the trigger endpoint."""

    SCHEDULE = "schedule"
    RUN_NOW = "run_now"
    TRIGGER = "trigger"


class TimedJob(db.Model):
    __tablename__ = "timed_job"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # {plan_id}, {template_id}, {flow_id} or {script_execution: body}; sensitive params are in secret_values.
    target: Mapped[dict] = mapped_column(JSON)
    # Overrides of the target's variables, secrets left out (they live in secret_values).
    variables: Mapped[dict] = mapped_column(JSON, default=dict)
    # Encrypted JSON {"variables": {name: value}, "params": [...]}: the secret parts of the above.
    secret_values: Mapped[str | None] = mapped_column(EncryptedText)
    schedule: Mapped[dict] = mapped_column(JSON)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the service disabled it (its schedule can never fire again); None when a user did, or it runs.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    overlap: Mapped[str] = mapped_column(String(8), default=Overlap.SKIP)
    misfire_grace: Mapped[int] = mapped_column(Integer, default=60)
    notify_after_failures: Mapped[int | None] = mapped_column(Integer)
    # Fire times before this never count as missed: the schedule was set or the timed job enabled then.
    schedule_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # SHA-256 of the trigger secret; None: the trigger endpoint takes project tokens only.
    trigger_secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The user whose rights its scheduled runs launch with: the last one who changed what it runs.
    run_as_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def target_kind(self) -> str:
        return next(iter(self.target))

    @property
    def secrets(self) -> dict:
        return json.loads(self.secret_values or "{}")

    @property
    def override_values(self) -> dict:
        """Its variables' values, secrets included."""
        return {**self.variables, **self.secrets.get("variables", {})}


class TimedJobRun(db.Model):
    """One fire of a timed job: when it was due, when it fired and launched, and what it started."""

    __tablename__ = "timed_job_run"
    __table_args__ = (
        # Several schedulers may fire the same time: the one whose insert wins launches.
        UniqueConstraint("timed_job_id", "origin", "scheduled_at", name="uq_timed_job_run_fire"),
        # A caller's retried trigger with the same key finds the run the first one made.
        UniqueConstraint("timed_job_id", "run_key", name="uq_timed_job_run_key"),
        Index("ix_timed_job_run_job_scheduled", "timed_job_id", "scheduled_at"),
        Index("ix_timed_job_run_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    timed_job_id: Mapped[int] = mapped_column(ForeignKey("timed_job.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(16), default=RunOrigin.SCHEDULE)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=TimedRunStatus.FIRING)
    reason: Mapped[str | None] = mapped_column(Text)
    run_key: Mapped[str | None] = mapped_column(String(255))
    triggered_by: Mapped[str] = mapped_column(String(64), default="")
    job_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("job_instance.id", ondelete="SET NULL"), index=True
    )

    flow_task_id: Mapped[int | None] = mapped_column(ForeignKey("flow_task.id", ondelete="SET NULL"))

    job_instance: Mapped[JobInstance | None] = relationship()
    flow_task: Mapped[FlowTask | None] = relationship()

    @property
    def lateness_ms(self) -> int | None:
        if self.fired_at is None:
            return None
        return round((self.fired_at - self.scheduled_at).total_seconds() * 1000)

    @property
    def target_status(self) -> str | None:
        """The status of the job instance or flow task it started."""
        started = self.job_instance or self.flow_task
        return started.status if started else None
