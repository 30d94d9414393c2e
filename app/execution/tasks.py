"""RQ entry points: what a worker runs."""

from __future__ import annotations

import os
import socket

from app.config import current as settings
from app.execution.keys import cancel_key
from app.execution.runner import Runner
from app.extensions import db, redis
from app.models import RunStatus
from app.services import callbacks, executions


def run_slice(slice_id: int) -> str:
    """Run one slice of a step and report how it ended on the event stream."""
    # The work horse is a fork of the worker: never reuse the parent's connections.
    db.engine.dispose(close=False)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        request = executions.claim(slice_id, worker)
    except Exception as exc:
        db.session.rollback()
        executions.publish_slice_done(slice_id, RunStatus.ABNORMAL, f"the slice could not be prepared: {exc}")
        raise
    if request is None:
        return "not waiting"
    if redis.client.exists(cancel_key(request.job_id)):
        executions.publish_slice_done(slice_id, RunStatus.TERMINATED, "cancelled before it started")
        return str(RunStatus.TERMINATED)
    if isinstance(request, executions.LocalWork):
        outcome = request.work()
    else:
        outcome = Runner(settings(), redis.client).run(request)
    executions.publish_slice_done(slice_id, outcome.status, outcome.error)
    return str(outcome.status)


def post_callback(job_id: int, status: str) -> int:
    """Tell a job's callback URL how the job ended."""
    db.engine.dispose(close=False)
    try:
        return callbacks.post(job_id, status)
    finally:
        db.session.remove()
