"""Wake-ups: the times flow tasks wait for (a sleep's end, an automatic retry, a timeout), as one Redis
sorted set of task ids scored by due time.

A due member is claimed atomically (read and removed in one script), so several processes draining the
set never fire one twice. Drainers block until the earliest due time, or until `add` nudges them about an
earlier one, rather than polling. The database holds the same due times on the node states: `readd` puts
them back after Redis lost them, and the sweep calls it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from redis import Redis
from sqlalchemy import func, select

from app.extensions import db
from app.models import FlowTask, NodeState
from app.models.base import utcnow
from app.status import FlowTaskStatus

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

KEY = "opsflow:flow-wakeups"
# A list of at most one element: a drainer blocked on it wakes when a wake-up was added.
NUDGE_KEY = "opsflow:flow-wakeups:nudge"
CLAIM_BATCH = 500
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


def add(client: Redis, task_id: int, due: datetime) -> None:
    """Wake the task at `due`, or earlier if it is already due earlier."""
    add_all(client, {task_id: due})


def add_all(client: Redis, dues: dict[int, datetime]) -> None:
    """Wake each task at its due time, or earlier if it is already due earlier; one round trip."""
    if not dues:
        return
    pipe = client.pipeline()
    pipe.zadd(KEY, {str(task_id): due.timestamp() for task_id, due in dues.items()}, lt=True)
    pipe.lpush(NUDGE_KEY, 1)
    pipe.ltrim(NUDGE_KEY, 0, 0)
    pipe.execute()


def seconds_to_next(client: Redis, now: datetime) -> float | None:
    """How long until the earliest wake-up is due (0 or less when one is); None when there is none."""
    earliest = client.zrange(KEY, 0, 0, withscores=True)
    return earliest[0][1] - now.timestamp() if earliest else None


def claim_due(client: Redis, now: datetime, limit: int = CLAIM_BATCH) -> list[int]:
    """The tasks due by `now`, removed from the set: no other claimer gets them."""
    return [int(member) for member in client.eval(_CLAIM, 1, KEY, now.timestamp(), limit)]


def readd(client: Redis) -> int:
    """Put every due time the database holds for live tasks back in the set; returns how many."""
    rows = db.session.execute(
        select(NodeState.task_id, func.min(NodeState.due_at))
        .join(FlowTask, FlowTask.id == NodeState.task_id)
        .where(
            NodeState.due_at.is_not(None),
            FlowTask.status.in_([FlowTaskStatus.RUNNING, FlowTaskStatus.PAUSED, FlowTaskStatus.FAILED]),
        )
        .group_by(NodeState.task_id)
    ).all()
    db.session.rollback()
    add_all(client, dict(rows))
    return len(rows)


def drain(app: Flask, sweep_interval: float, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Fire due wake-ups (each asks the engine to advance its task) as they fall due, and sweep every
    `sweep_interval` seconds, until told to stop. Runs in the engine process, in a thread of its own."""
    from app.extensions import redis
    from app.flows import engine
    from app.flows.sweep import sweep

    next_sweep = 0.0
    with app.app_context():
        while not should_stop():
            try:
                due = claim_due(redis.client, utcnow())
                if due:
                    engine.enqueue(due)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_interval
                    sweep(redis.client)
                wait = next_sweep - time.monotonic()
                until_due = seconds_to_next(redis.client, utcnow())
                if until_due is not None:
                    wait = min(wait, until_due)
                # BLPOP waits whole milliseconds, and a timeout of 0 would wait forever.
                if wait >= 0.001:
                    redis.client.blpop([NUDGE_KEY], timeout=wait)
            except Exception:
                log.exception("flow wake-ups: draining failed; trying again")
                db.session.rollback()
                time.sleep(1)
