"""Big steps split into slices; events delivered twice; workers that die mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
from sqlalchemy import func, select, update

from app.execution.events import vouched
from app.execution.ingest import GROUP, Ingester, apply_events
from app.execution.keys import heartbeat_key
from app.execution.tasks import heartbeat
from app.execution.watchdog import DONE, WORKER_DIED
from app.extensions import db, redis
from app.models import HostResult, HostStatus, JobInstance, RunStatus, Slice, StepInstance, TaskResult
from app.secrets import Cipher
from tests.conftest import add_hosts, run_script
from tests.test_script_execution import ansible_processes, wait_until


def test_500_hosts_split_into_slices_recorded_once(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 500, first=1000)
    job = run_script(service, project, hosts, 'echo "$(hostname) ok"', account_id=account["id"])
    slices = job["steps"][0]["slices"]
    assert len(slices) == 3 and sum(piece["host_count"] for piece in slices) == 500
    done = service.wait_job(project["id"], job["id"], timeout=600)
    assert done["status"] == "success", done["counts"]
    assert done["counts"]["success"] == 500
    ended = [(piece["status"], piece["error"], piece["worker"]) for piece in done["steps"][0]["slices"]]
    assert all(status == "success" for status, _, _ in ended), ended
    results = service.host_results(project["id"], job["id"])
    assert len(results) == 500
    assert sorted(r["host_id"] for r in results) == sorted(h["id"] for h in hosts)
    assert all(r["stdout"].endswith(" ok\n") and r["exit_code"] == 0 for r in results)


def make_job(project_id: int, hosts: list[str], task_count: int) -> Slice:
    """A job instance with one slice, written directly: its events are fed by hand."""
    job = JobInstance(project_id=project_id, name="hand-made", kind="script_execution", host_count=len(hosts))
    step = StepInstance(name="hand-made", kind="script", task_count=task_count, host_count=len(hosts))
    piece = Slice(index=0, host_count=len(hosts), status=RunStatus.RUNNING)
    step.slices.append(piece)
    job.steps.append(step)
    db.session.add(job)
    db.session.flush()
    add_host_rows(piece, hosts)
    return piece


def add_host_rows(piece: Slice, hosts: list[str], attempt: int = 1) -> None:
    """Each host's attempt in the slice, waiting for its events."""
    for name in hosts:
        db.session.add(
            HostResult(
                job_instance_id=piece.step.job_instance_id,
                step_instance_id=piece.step_instance_id,
                slice_id=piece.id,
                host_name=name,
                address=name,
                attempt=attempt,
            )
        )
    db.session.commit()


def events_for(piece: Slice, hosts: list[str]) -> list[dict]:
    now = time.time()
    events = []
    for seq in (1, 2):
        for name in hosts:
            events.append({"type": "task_start", "slice": piece.id, "host": name, "ts": now})
            events.append(
                {
                    "type": "task_result", "slice": piece.id, "host": name, "seq": seq, "task": f"t{seq}",
                    "action": "raw", "outcome": "changed", "rc": 0, "stdout": f"{name} {seq}\n", "stderr": "",
                    "stdout_truncated": False, "stderr_truncated": False, "msg": "", "start": now, "end": now,
                }
            )  # fmt: skip
    summary = {"ok": 2, "failures": 0, "unreachable": 0}
    events.append({"type": "stats", "slice": piece.id, "hosts": dict.fromkeys(hosts, summary), "ts": now})
    events.append({"type": "slice_done", "slice": piece.id, "status": "success", "error": None})
    return vouched(Cipher.configured_key(), events)


def test_redelivered_batch_creates_no_duplicates(service, project):
    hosts = ["alpha", "beta", "gamma"]
    piece = make_job(project["id"], hosts, task_count=2)
    stream = f"test:events:{piece.id}"
    client = redis.client
    first = Ingester(client, stream, "crashing")
    first.ensure_group()
    client.xadd(stream, {"events": json.dumps(events_for(piece, hosts)[:8])})
    client.xadd(stream, {"events": json.dumps(events_for(piece, hosts)[8:])})
    # Read and applied, then the ingester dies before acknowledging.
    [[_, entries]] = client.xreadgroup(GROUP, "crashing", {stream: ">"}, count=10)
    apply_events([event for _, fields in entries for event in json.loads(fields[b"events"])])
    db.session.commit()
    # Another consumer claims what was never acknowledged and applies it again.
    second = Ingester(client, stream, "crashing")
    while second.consume():
        pass
    assert client.xpending(stream, GROUP)["pending"] == 0
    host_rows = db.session.scalars(select(HostResult).where(HostResult.slice_id == piece.id)).all()
    assert sorted(row.status for row in host_rows) == [HostStatus.SUCCESS] * 3
    task_rows = db.session.scalar(
        select(func.count())
        .select_from(TaskResult)
        .where(TaskResult.host_result_id.in_([r.id for r in host_rows]))
    )
    assert task_rows == 6
    db.session.refresh(piece)
    assert piece.status == RunStatus.SUCCESS
    job = db.session.get(JobInstance, piece.step.job_instance_id)
    db.session.refresh(job)
    assert job.status == RunStatus.SUCCESS
    log = service.api("GET", f"/projects/{project['id']}/jobs/{job.id}/host-results/0/log", 404)
    assert log.get_json()["error"]["code"] == "not_found"


def test_redelivered_events_of_an_earlier_attempt_change_neither_attempt(service, project):
    hosts = ["alpha", "beta"]
    first = make_job(project["id"], hosts, task_count=2)
    apply_events(events_for(first, hosts))
    db.session.commit()
    # A retry: each host's second attempt, in a slice of its own.
    step = first.step
    step.status = RunStatus.RUNNING
    second = Slice(index=1, host_count=len(hosts), status=RunStatus.RUNNING)
    step.slices.append(second)
    db.session.flush()
    db.session.execute(update(HostResult).where(HostResult.slice_id == first.id).values(latest=False))
    add_host_rows(second, hosts, attempt=2)
    retried = events_for(second, hosts)
    for event in retried:
        if event["type"] == "task_result":
            event["stdout"] = "second " + event["stdout"]
    apply_events([*events_for(first, hosts), *retried, *events_for(first, hosts)])
    db.session.commit()
    rows = db.session.scalars(select(HostResult).where(HostResult.step_instance_id == step.id)).all()
    assert sorted((row.host_name, row.attempt, row.latest, row.stdout) for row in rows) == [
        ("alpha", 1, False, "alpha 2\n"),
        ("alpha", 2, True, "second alpha 2\n"),
        ("beta", 1, False, "beta 2\n"),
        ("beta", 2, True, "second beta 2\n"),
    ]
    for row in rows:
        assert [task.seq for task in row.tasks] == [1, 2]
    job = service.get(f"/projects/{project['id']}/jobs/{step.job_instance_id}")
    assert job["status"] == "success" and job["counts"]["success"] == 2


def worker_tree(service, name: str) -> list[psutil.Process]:
    main = psutil.Process(service.processes[name].pid)
    return [main, *main.children(recursive=True)]


def test_worker_killed_mid_run_is_reaped(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 2, first=3000)
    job = run_script(service, project, hosts, "sleep 120", account_id=account["id"])
    wait_until(lambda: service.get(f"/projects/{project['id']}/jobs/{job['id']}")["counts"]["running"] == 2)
    [piece] = service.get(f"/projects/{project['id']}/jobs/{job['id']}")["steps"][0]["slices"]
    owner = next(
        name for name in ("worker-1", "worker-2")
        if any(p.pid == int(piece["worker"].rsplit(":", 1)[1]) for p in worker_tree(service, name))
    )  # fmt: skip
    killed_at = time.monotonic()
    # Everything the worker started dies with it, except its runs' watchdogs, which live in sessions of
    # their own for this very case: they end what the run left (its detached ssh masters included).
    for process in worker_tree(service, owner):
        # A process already gone, or a zombie (the sandbox's processes end with their parent), is skipped.
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if "app.execution.watchdog" not in " ".join(process.cmdline()):
                os.kill(process.pid, signal.SIGKILL)
    try:
        done = service.wait_job(project["id"], job["id"], timeout=60)
        elapsed = time.monotonic() - killed_at
        assert done["status"] == "abnormal", done
        assert done["counts"]["abnormal"] == 2
        # The run's watchdog reports the death itself, before the heartbeat expires.
        assert done["steps"][0]["slices"][0]["error"] == WORKER_DIED
        assert elapsed < 30
        wait_until(lambda: ansible_processes(service) == [], timeout=15)
    finally:
        service.stop(owner)
        service.start(owner, "worker")


def test_a_killed_work_horse_is_reported_by_its_watchdog(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 2, first=3010)
    job = run_script(service, project, hosts, "sleep 120", account_id=account["id"])
    path = f"/projects/{project['id']}/jobs/{job['id']}"
    wait_until(lambda: service.get(path)["counts"]["running"] == 2)
    [piece] = service.get(path)["steps"][0]["slices"]
    # Only the work horse dies (as when RQ kills it); its worker lives on and takes the next job.
    os.kill(int(piece["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    done = service.wait_job(project["id"], job["id"], timeout=60)
    assert done["status"] == "abnormal", done
    assert done["counts"]["abnormal"] == 2
    assert done["steps"][0]["slices"][0]["error"] == WORKER_DIED
    results = service.host_results(project["id"], job["id"])
    assert {result["error"] for result in results} == {WORKER_DIED}
    wait_until(lambda: ansible_processes(service) == [], timeout=15)
    after = run_script(service, project, hosts, "echo alive", account_id=account["id"])
    assert service.wait_job(project["id"], after["id"])["status"] == "success"


def test_a_watchdog_whose_run_ended_well_reports_nothing(service, project, tmp_path):
    stream = f"test:watchdog:{uuid.uuid4().hex}"
    environ = {
        **os.environ,
        "OPSFLOW_REDIS_URL": service.env["REDIS_URL"],
        "OPSFLOW_EVENT_STREAM": stream,
        "OPSFLOW_SLICE_TOKEN": "the slice's token",
    }
    command = [sys.executable, "-m", "app.execution.watchdog", uuid.uuid4().hex, str(tmp_path)]
    for stdin, slice_id in ((DONE, "41"), (b"", "42")):
        subprocess.run(command, input=stdin, env={**environ, "OPSFLOW_SLICE_ID": slice_id}, check=True)
    reported = [json.loads(fields[b"events"]) for _, fields in redis.client.xrange(stream)]
    lost = {
        "type": "slice_done",
        "slice": 42,
        "status": "abnormal",
        "error": WORKER_DIED,
        "token": "the slice's token",
    }
    assert reported == [[lost]]
    redis.client.delete(stream)


def test_a_watchdog_loads_neither_the_models_nor_flask_nor_redis():
    # Every slice starts a watchdog beside ansible-playbook's own start-up, on the same cores: loading
    # the models, SQLAlchemy and Flask there cost a second of CPU per slice, and redis-py 80 ms.
    heavy = "{'sqlalchemy', 'flask', 'app.models', 'redis'}"
    probe = f"import sys, app.execution.watchdog; print(sorted({heavy} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_a_slice_beats_several_times_per_heartbeat_ttl(service):
    # With one beat per TTL, a beat a moment late would read as a lost worker.
    ttl = service.app.config["OPSFLOW"].heartbeat_ttl
    slice_id = int(time.time() * 1000)
    beat = heartbeat_key(slice_id)
    try:
        with heartbeat(slice_id):
            time.sleep(ttl / 2)
            assert redis.client.pttl(beat) > ttl * 1000 / 2
    finally:
        redis.client.delete(beat)
