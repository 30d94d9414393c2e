"""RQ entry points: what a worker runs."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import configure_mappers

from app.config import current as settings
from app.execution.beat import every
from app.execution.keys import cancel_key, heartbeat_key
from app.execution.runner import DEFINITIONS_SCRIPT, Runner
from app.extensions import db, redis
from app.models import RunStatus
from app.services import callbacks, executions

# A slice's heartbeat is written this many times per TTL, so that two late beats in a row (a loaded
# machine) do not yet read as a lost worker.
HEARTBEATS_PER_TTL = 3
DEFINITIONS_TIMEOUT_SECONDS = 60

log = logging.getLogger(__name__)


@contextlib.contextmanager
def heartbeat(slice_id: int) -> Iterator[None]:
    """Keep the slice's heartbeat fresh from its claim until its end is reported, whatever the worker does
    meanwhile (compiling, starting ansible-playbook on a busy machine, cleaning up, a sync's own work)."""
    ttl = settings().heartbeat_ttl

    def beat() -> None:
        with contextlib.suppress(Exception):
            redis.client.set(heartbeat_key(slice_id), "1", ex=ttl)

    with every(ttl / HEARTBEATS_PER_TTL, beat, f"heartbeat-{slice_id}"):
        yield


def prepare_work_horses() -> None:
    """What a worker does once before it forks, which each work horse would otherwise do again before it
    claims its slice: configure the models' mappers, and make the database dialect's first connection
    (its server queries). Together they were 40-60 ms of every slice's start. A database that cannot be
    reached yet only leaves the second to the work horses. Then the parsed copies of Ansible's own
    definition files that the runs read; a run without them parses the files itself."""
    configure_mappers()
    with contextlib.suppress(SQLAlchemyError), db.engine.connect():
        pass
    db.engine.dispose()
    write_ansible_definitions()


def write_ansible_definitions() -> None:
    try:
        written = subprocess.run(
            [sys.executable, str(DEFINITIONS_SCRIPT), str(settings().ansible_definitions_dir)],
            capture_output=True,
            text=True,
            timeout=DEFINITIONS_TIMEOUT_SECONDS,
        )
        failure = written.stderr if written.returncode else None
    except (OSError, subprocess.SubprocessError) as exc:
        failure = str(exc)
    if failure is not None:
        log.warning("Ansible's definition files were not copied, so each run parses them: %s", failure)


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
