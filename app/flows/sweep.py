"""The sweep: the safety net for a lost "advance task N" (a worker killed mid-pass, a queue entry or a
Redis lost). It puts the database's due times back among the wake-ups and advances every running task
that nobody has moved for a while and that has something to move: a ready node, or a running node whose
job instance has ended or whose atom never said what it waits for."""

from __future__ import annotations

from datetime import timedelta

from redis import Redis
from sqlalchemy import or_, select

from app.extensions import db
from app.flows import engine, wakeups
from app.models import FlowTask, JobInstance, NodeState
from app.models.base import utcnow
from app.status import RUN_FINAL, FlowTaskStatus, NodeStatus

# A task moved more recently than this is someone's work in progress.
IDLE_SECONDS = 10


def sweep(client: Redis) -> list[int]:
    """Re-add the due times, advance the idle tasks that can move; returns their ids."""
    wakeups.readd(client)
    now = utcnow()
    idle = now - timedelta(seconds=IDLE_SECONDS)
    job_ended = select(JobInstance.id).where(JobInstance.status.in_([str(status) for status in RUN_FINAL]))
    movable = (
        select(NodeState.task_id)
        .where(
            or_(
                (NodeState.status == NodeStatus.READY)
                & NodeState.paused_before.is_(False)
                & (NodeState.due_at.is_(None) | (NodeState.due_at <= now)),
                (NodeState.status == NodeStatus.RUNNING) & NodeState.job_instance_id.in_(job_ended),
                (NodeState.status == NodeStatus.RUNNING)
                & NodeState.job_instance_id.is_(None)
                & NodeState.due_at.is_(None)
                & (NodeState.started_at < idle),
            )
        )
        .distinct()
    )
    tasks = db.session.scalars(
        select(FlowTask.id).where(
            FlowTask.status == FlowTaskStatus.RUNNING, FlowTask.advanced_at < idle, FlowTask.id.in_(movable)
        )
    ).all()
    db.session.rollback()
    engine.enqueue(tasks)
    return list(tasks)
