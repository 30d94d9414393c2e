"""The ingester's batches: however a run's events fall into reads, the database ends the same."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from app.execution.events import vouched
from app.execution.ingest import Ingester, KnownSlices, apply_events
from app.extensions import db, redis
from app.models import HostResult, HostStatus, Slice, TaskResult
from app.models.job import PLAYBOOK_TASKS
from app.secrets import Cipher
from tests.test_slicing_and_recovery import make_job

HOSTS = ["alpha", "beta", "gamma"]
BEGAN = 1_790_000_000.0


def result(piece: Slice, host: str, seq: int, outcome: str, at: float, rc: int = 0, msg: str = "") -> dict:
    return {
        "type": "task_result", "slice": piece.id, "host": host, "seq": seq, "task": f"t{seq}",
        "action": "command", "outcome": outcome, "rc": rc, "stdout": f"{host} {seq}\n", "stderr": f"e{seq}",
        "stdout_truncated": False, "stderr_truncated": False, "msg": msg, "start": at, "end": at + 0.5,
    }  # fmt: skip


def run_events(piece: Slice) -> list[dict]:
    """A run with several results per host: a failure, an unreachable host, a result delivered twice, a
    host that started and never reported, and its recap delivered twice."""
    recap = {
        "type": "stats",
        "slice": piece.id,
        "ts": BEGAN + 9,
        "hosts": {
            "alpha": {"ok": 2, "failures": 1, "unreachable": 0},
            "beta": {"ok": 1, "failures": 0, "unreachable": 1},
        },
    }
    events = [
        {"type": "task_start", "slice": piece.id, "host": "alpha", "ts": BEGAN},
        result(piece, "alpha", 1, "changed", BEGAN + 1),
        {"type": "task_start", "slice": piece.id, "host": "gamma", "ts": BEGAN + 1.5},
        result(piece, "beta", 1, "ok", BEGAN + 2),
        result(piece, "alpha", 2, "failed", BEGAN + 3, rc=2, msg="non-zero return code"),
        result(
            piece, "beta", 2, "unreachable", BEGAN + 4, rc=None, msg="ssh: Permission denied (publickey)."
        ),
        result(piece, "alpha", 3, "ok", BEGAN + 5),
        result(piece, "alpha", 1, "changed", BEGAN + 1),
        recap,
        recap,
    ]
    return vouched(Cipher.configured_key(), events)


def host_rows(piece: Slice) -> list[tuple]:
    db.session.expire_all()
    return db.session.execute(
        select(
            HostResult.host_name, HostResult.status, HostResult.exit_code, HostResult.stdout,
            HostResult.output_digest, HostResult.stderr, HostResult.error, HostResult.started_at,
            HostResult.ended_at,
        )
        .where(HostResult.slice_id == piece.id)
        .order_by(HostResult.host_name)
    ).all()  # fmt: skip


def task_rows(piece: Slice) -> list[tuple]:
    return db.session.execute(
        select(
            HostResult.host_name, TaskResult.seq, TaskResult.outcome, TaskResult.stdout, TaskResult.started_at
        )
        .join(HostResult, TaskResult.host_result_id == HostResult.id)
        .where(HostResult.slice_id == piece.id)
        .order_by(HostResult.host_name, TaskResult.seq)
    ).all()


def test_a_slices_hosts_are_read_once_while_it_reports_and_again_after_it_ended(service, project):
    piece = make_job(project["id"], HOSTS, 3)
    known = KnownSlices()
    host_reads = []

    def count(conn, cursor, statement, *args) -> None:
        if statement.startswith("SELECT host_result.id, host_result.slice_id, host_result.host_name"):
            host_reads.append(statement)

    sqlalchemy_event.listen(db.engine, "before_cursor_execute", count)
    try:
        for event in run_events(piece):
            apply_events([event], known)
            db.session.commit()
        assert len(host_reads) == 1
        ended = {"type": "slice_done", "slice": piece.id, "status": "failed", "error": None}
        apply_events(vouched(Cipher.configured_key(), [ended]), known)
        db.session.commit()
        apply_events(run_events(piece)[:1], known)
        db.session.commit()
        assert len(host_reads) == 2
    finally:
        sqlalchemy_event.remove(db.engine, "before_cursor_execute", count)
    # The slice's end ended the host that never reported.
    statuses = [row.status for row in host_rows(piece)]
    assert statuses == [HostStatus.FAILED, HostStatus.AUTH_FAILED, HostStatus.ABNORMAL]


@pytest.mark.parametrize("task_count", [1, 3, PLAYBOOK_TASKS])
def test_a_read_of_many_events_per_host_ends_as_the_events_read_one_by_one(service, project, task_count):
    one_by_one = make_job(project["id"], HOSTS, task_count)
    at_once = make_job(project["id"], HOSTS, task_count)
    for event in run_events(one_by_one):
        apply_events([event])
        db.session.commit()
    apply_events(run_events(at_once))
    db.session.commit()
    written = host_rows(at_once)
    assert [row[1:] for row in written] == [row[1:] for row in host_rows(one_by_one)]
    assert [row[1:] for row in task_rows(at_once)] == [row[1:] for row in task_rows(one_by_one)]
    statuses = {row.host_name: row.status for row in written}
    if task_count == 1:
        # The first result of a one-task step is final: nothing after it changes the host.
        assert statuses == {
            "alpha": HostStatus.SUCCESS,
            "beta": HostStatus.SUCCESS,
            "gamma": HostStatus.RUNNING,
        }
        assert written[0].stdout == "alpha 1\n" and task_rows(at_once) == []
    else:
        # Refused credentials end a host at once; a failure, once it is known not to be rescued.
        assert statuses == {
            "alpha": HostStatus.FAILED,
            "beta": HostStatus.AUTH_FAILED,
            "gamma": HostStatus.RUNNING,
        }
        assert [(row.host_name, row.seq) for row in task_rows(at_once)] == [
            ("alpha", 1),
            ("alpha", 2),
            ("alpha", 3),
            ("beta", 1),
            ("beta", 2),
        ]
    # A host's start is its first event's: its task start, else its first result's.
    assert [row.started_at.timestamp() for row in written] == [BEGAN, BEGAN + 2, BEGAN + 1.5]


def test_a_read_takes_about_its_events_whatever_the_size_of_the_entries(service, project):
    piece = make_job(project["id"], HOSTS, task_count=PLAYBOOK_TASKS)
    stream = f"test:events:{piece.id}"
    small = [[event] for event in run_events(piece)[:8]] * 3
    large = [run_events(piece)[:8]] * 3
    for entry in [*small, *large]:
        redis.client.xadd(stream, {"events": json.dumps(entry)})
    ingester = Ingester(redis.client, stream, "sizing", batch=2, read_events=4)
    ingester.ensure_group()
    # After a look for entries it left unacknowledged (none), a read takes `batch` entries, then as many
    # as held about four events in the read before.
    taken = [ingester.consume() for _ in range(9)]
    assert taken == [0, 2, 4, 4, 4, 4, 4, 4, 1]
    assert redis.client.xlen(stream) == 0
    redis.client.delete(stream)
