"""Flows (versioned graphs), their tasks (one run of one version), node states, attempts, and the
project variables every flow of a project reads.

A task row carries a `version` that SQLAlchemy checks on every write (version_id_col), and every
transition of a task or of its nodes writes the task row: a transition based on a stale read fails
instead of overwriting, so a re-delivered event, a second engine process or a repeated callback changes
nothing. Node rows need no version of their own, so the changed nodes of a pass go out as one batch.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import EncryptedText, UTCDateTime, utcnow
from app.status import FlowTaskStatus, NodeStatus


class FlowCategory(StrEnum):
    PUBLISH = "publish"
    REGION_OPENING = "region_opening"
    EXPANSION = "expansion"
    REDUCTION = "reduction"
    MIGRATION = "migration"
    MERGE = "merge"
    TROUBLESHOOTING = "troubleshooting"
    OTHER = "other"


class Flow(db.Model):
    __tablename__ = "flow"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(32), default=FlowCategory.OTHER)
    # Seconds a task may run in all; None: no limit.
    timeout: Mapped[int | None] = mapped_column(Integer)
    # The newest version's number; raised by every change of nodes, edges, stages or variables.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    versions: Mapped[list[FlowVersion]] = relationship(
        back_populates="flow", cascade="all, delete-orphan", order_by="FlowVersion.version"
    )

    @property
    def current(self) -> FlowVersion:
        return self.versions[-1]


class FlowVersion(db.Model):
    __tablename__ = "flow_version"
    __table_args__ = (UniqueConstraint("flow_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # {variables, outputs, nodes, edges} (and stages when written so); secret defaults live apart.
    document: Mapped[dict] = mapped_column(JSON, default=dict)
    secret_defaults: Mapped[str | None] = mapped_column(EncryptedText)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    flow: Mapped[Flow] = relationship(back_populates="versions")

    @property
    def secret_default_values(self) -> dict[str, str]:
        return json.loads(self.secret_defaults or "{}")


class FlowTask(db.Model):
    __tablename__ = "flow_task"
    __table_args__ = (
        Index("ix_flow_task_project_created", "project_id", "created_at"),
        Index("ix_flow_task_project_status_created", "project_id", "status", "created_at"),
        UniqueConstraint("project_id", "idempotency_key", name="uq_flow_task_project_id_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    flow_id: Mapped[int] = mapped_column(ForeignKey("flow.id", ondelete="CASCADE"), index=True)
    flow_version_id: Mapped[int] = mapped_column(ForeignKey("flow_version.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=FlowTaskStatus.CREATED, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Every variable's value as launched and as nodes' outputs changed it; secrets live apart.
    values: Mapped[dict] = mapped_column(JSON, default=dict)
    secret_values: Mapped[str | None] = mapped_column(EncryptedText)
    # The values the task was created with (secrets masked), as shown.
    launch_values: Mapped[dict] = mapped_column(JSON, default=dict)
    skip_nodes: Mapped[list] = mapped_column(JSON, default=list)
    # Who did what to the task and its nodes, and why: [{at, username, operation, node, reason}].
    operations: Mapped[list] = mapped_column(JSON, default=list)
    launched_by: Mapped[str] = mapped_column(String(64), default="", index=True)
    # The timed job whose run started it.
    timed_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("timed_job.id", ondelete="SET NULL"), index=True
    )
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # What the request under that key asked for: the same key with another request is refused.
    request_digest: Mapped[str | None] = mapped_column(String(64))
    # The subflow node this task runs for, when it is a subflow.
    # (No foreign key: node states point at their task already, and the two would delete each other.)
    parent_node_id: Mapped[int | None] = mapped_column(Integer, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When an engine last wrote the task: the sweep looks for running tasks nobody moved for a while.
    advanced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    flow_version: Mapped[FlowVersion] = relationship()
    nodes: Mapped[list[NodeState]] = relationship(
        back_populates="task",
        cascade="all, delete-orphan",
        foreign_keys="NodeState.task_id",
        order_by="NodeState.id",
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def secret_value_map(self) -> dict[str, Any]:
        return json.loads(self.secret_values or "{}")

    def record(self, username: str, operation: str, node: str | None = None, reason: str = "") -> None:
        entry = {"at": utcnow().isoformat(), "username": username, "operation": operation, "reason": reason}
        if node is not None:
            entry["node"] = node
        self.operations = [*self.operations, entry]


class NodeState(db.Model):
    __tablename__ = "flow_node_state"
    __table_args__ = (
        UniqueConstraint("task_id", "node_id"),
        Index("ix_flow_node_state_due", "due_at"),
        Index("ix_flow_node_state_job", "job_instance_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("flow_task.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.WAITING)
    # How many times the node has started (a loop runs it again).
    runs: Mapped[int] = mapped_column(Integer, default=0)
    # Automatic retries used in this run.
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # A converge gateway: the branches that arrived, and how many started.
    arrived: Mapped[int] = mapped_column(Integer, default=0)
    expected: Mapped[int] = mapped_column(Integer, default=0)
    paused_before: Mapped[bool] = mapped_column(Boolean, default=False)
    # A time the node waits for (a sleep's end, an automatic retry, a timeout), and what it means.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_reason: Mapped[str | None] = mapped_column(String(32))
    # What the atom keeps while it waits (a job's id, an approval's approvers, a callback token).
    waiting: Mapped[dict] = mapped_column(JSON, default=dict)
    job_instance_id: Mapped[int | None] = mapped_column(ForeignKey("job_instance.id", ondelete="SET NULL"))
    # Inputs given by a retry, in place of the flow's.
    override_inputs: Mapped[dict | None] = mapped_column(JSON)
    inputs: Mapped[dict | None] = mapped_column(JSON)
    outputs: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    task: Mapped[FlowTask] = relationship(back_populates="nodes", foreign_keys=[task_id])
    attempts: Mapped[list[NodeAttempt]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="NodeAttempt.number"
    )


class NodeAttempt(db.Model):
    __tablename__ = "flow_node_attempt"
    __table_args__ = (UniqueConstraint("node_state_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_state_id: Mapped[int] = mapped_column(ForeignKey("flow_node_state.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # Which run of the node (a loop) this attempt belongs to.
    run: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.RUNNING)
    inputs: Mapped[dict | None] = mapped_column(JSON)
    outputs: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    job_instance_id: Mapped[int | None] = mapped_column(ForeignKey("job_instance.id", ondelete="SET NULL"))
    child_task_id: Mapped[int | None] = mapped_column(ForeignKey("flow_task.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    node: Mapped[NodeState] = relationship(back_populates="attempts")


class ProjectVariable(db.Model):
    """A project's business configuration, read by its flows as ${_project.NAME}."""

    __tablename__ = "project_variable"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
