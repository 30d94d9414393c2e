"""RQ entry points: what a worker runs."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import configure_mappers

from app.config import current as settings
from app.execution.keys import cancel_key, heartbeat_key
from app.execution.runner import Runner
from app.extensions import db, redis
from app.models import RunStatus
from app.services import callbacks, executions

# A slice's heartbeat is written this many times per TTL, so that two late beats in a row (a loaded
# machine) do not yet read as a lost worker.
HEARTBEATS_PER_TTL = 3


@contextlib.contextmanager
def heartbeat(slice_id: int) -> Iterator[None]:
    """Keep the slice's heartbeat fresh from its claim until its end is reported, whatever the worker does
    meanwhile (compiling, starting ansible-playbook on a busy machine, cleaning up, a sync's own work)."""
    stop = threading.Event()
    ttl = settings().heartbeat_ttl

    def beat() -> None:
        while not stop.wait(ttl / HEARTBEATS_PER_TTL):
            with contextlib.suppress(Exception):
                redis.client.set(heartbeat_key(slice_id), "1", ex=ttl)

    thread = threading.Thread(target=beat, name=f"heartbeat-{slice_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def prepare_work_horses() -> None:
    """What a worker does once before it forks, which each work horse would otherwise do again before it
    claims its slice: configure the models' mappers, and make the database dialect's first connection
    (its server queries). Together they were 40-60 ms of every slice's start. A database that cannot be
    reached yet only leaves the second to the work horses."""
    configure_mappers()
    with contextlib.suppress(SQLAlchemyError), db.engine.connect():
        pass
    db.engine.dispose()


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
    with heartbeat(slice_id):
        if isinstance(request, executions.LocalWork):
            outcome = request.work()
        else:
            outcome = Runner(settings(), redis.client).run(request)
            if outcome.output is not None:
                executions.record_output(slice_id, outcome.output)
    executions.publish_slice_done(slice_id, outcome.status, outcome.error)
    return str(outcome.status)


def post_callback(job_id: int, status: str) -> int:
    """Tell a job's callback URL how the job ended."""
    db.engine.dispose(close=False)
    try:
        return callbacks.post(job_id, status)
    finally:
        db.session.remove()
