"""Script executions over real SSH to loopback hosts, and on the local connection."""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from rq import Queue
from sqlalchemy import event, select, text

from app.config import Settings
from app.extensions import db, redis
from app.models import JobInstance, Slice, StepInstance
from app.services import executions
from app.services.progress import finish_slice, settle_job
from app.status import RunStatus
from tests.conftest import add_hosts, add_local_host, add_unreachable_host, run_script

# Statements and commits of a launch on hosts named directly, in a project with room: the token and
# its user, the project, hosts, account and rules read; the room counted, and again under the
# project's lock; the job instance, its step, slice, host rows and audit entry inserted, dispatched,
# in one commit. The answer is built from what was written.
LAUNCH_ROUND_TRIPS_MAX = 13
INJECTION = "{{ lookup('pipe', 'id') }}"
# A command line no other test run on this machine uses, so leftovers found are this run's.
LONG_SLEEP = f"sleep {random.randint(1000, 9999)}"


def test_success_on_several_hosts(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 3)
    job = run_script(
        service,
        project,
        hosts,
        'echo "out:$1:$2"; echo "err:$(hostname -I 2>/dev/null | wc -c)" >&2',
        params=["a b", "c"],
        account_id=account["id"],
    )
    assert job["status"] in ("waiting", "running")
    assert job["host_count"] == 3
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success", done
    assert done["counts"]["success"] == 3
    results = service.host_results(project["id"], job["id"])
    assert sorted(r["host_name"] for r in results) == [h["name"] for h in hosts]
    for result in results:
        assert result["status"] == "success"
        assert result["exit_code"] == 0
        assert result["stdout"] == "out:a b:c\n"
        assert result["stderr"].startswith("err:")
        assert "out:" not in result["stderr"]
        assert result["started_at"] and result["ended_at"] and result["duration"] >= 0
    # The run's ssh ControlPersist masters end with it rather than linger for their 60 s.
    assert ssh_masters(service) == []


def test_non_zero_exit_keeps_streams_apart(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 2, first=10)
    job = run_script(
        service, project, hosts, "echo to-out; echo to-err >&2; exit 7", account_id=account["id"]
    )
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "failed"
    assert done["counts"]["failed"] == 2
    for result in service.host_results(project["id"], job["id"], status="failed"):
        assert (result["exit_code"], result["stdout"], result["stderr"]) == (7, "to-out\n", "to-err\n")


def test_unreachable_host_fails_alone(service, project, account, lab):
    good = add_hosts(service, project, lab, 1, first=20)
    bad = add_unreachable_host(service, project)
    job = run_script(service, project, [*good, bad], "echo hi", account_id=account["id"])
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "failed"
    assert done["counts"]["success"] == 1
    assert done["counts"]["unreachable"] == 1
    [result] = service.host_results(project["id"], job["id"], status="unreachable")
    assert result["host_name"] == "nowhere"
    assert result["error"]


def test_wrong_credentials(service, project, lab, tmp_path):
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    stranger = service.post(
        f"/projects/{project['id']}/accounts",
        {"name": "stranger", "username": lab.user, "private_key": key.read_text()},
        expect=201,
    ).get_json()
    hosts = add_hosts(service, project, lab, 1, first=30)
    job = run_script(service, project, hosts, "echo hi", account_id=stranger["id"])
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "failed"
    [result] = service.host_results(project["id"], job["id"])
    assert result["status"] == "auth_failed", result


def test_injection_reaches_the_host_as_characters(service, project, account, lab, tmp_path):
    hosts = add_hosts(service, project, lab, 1, first=40)
    marker = tmp_path / "controller-ran-it"
    evil = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    job = run_script(
        service,
        project,
        hosts,
        f"cat <<'END'\n{INJECTION}\nEND\necho \"$1\"",
        params=[evil],
        account_id=account["id"],
    )
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success", done
    [result] = service.host_results(project["id"], job["id"])
    assert result["stdout"] == f"{INJECTION}\n{evil}\n"
    assert not marker.exists()


def test_sensitive_params_never_stored(service, project, account, lab):
    secret = "s3cr3t-Value-42"
    hosts = add_hosts(service, project, lab, 1, first=50)
    job = run_script(
        service,
        project,
        hosts,
        'echo "token=$1"; echo "again $1" >&2; exit 1',
        params=[secret],
        sensitive=True,
        account_id=account["id"],
    )
    assert secret not in str(job)
    done = service.wait_job(project["id"], job["id"])
    [result] = service.host_results(project["id"], job["id"])
    assert result["stdout"] == "token=******\n"
    assert result["stderr"] == "again ******\n"
    log = service.api("GET", f"/projects/{project['id']}/jobs/{job['id']}/host-results/{hosts[0]['id']}/log")
    assert secret not in log.get_data(as_text=True)
    assert secret not in str(done)
    from sqlalchemy import text

    from app.extensions import db

    for table in ("step_instance", "host_result", "task_result"):
        dump = " ".join(str(row) for row in db.session.execute(text(f"SELECT * FROM {table}")))
        assert secret not in dump, table
    for log_file in service.data_dir.glob("*.log"):
        assert secret not in log_file.read_text(errors="replace"), log_file


def test_output_over_the_cap_is_truncated(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 1, first=60)
    cap = int(service.env["OPSFLOW_OUTPUT_CAP_BYTES"])
    job = run_script(
        service,
        project,
        hosts,
        f"head -c {cap * 3} /dev/zero | tr '\\0' x; echo small >&2",
        account_id=account["id"],
    )
    service.wait_job(project["id"], job["id"])
    [result] = service.host_results(project["id"], job["id"])
    assert result["status"] == "success"
    assert result["stdout_truncated"] is True
    assert len(result["stdout"]) == cap
    assert result["stderr"] == "small\n" and result["stderr_truncated"] is False


def test_local_connection_without_account(service, project):
    host = add_local_host(service, project)
    job = run_script(
        service, project, [host], "import sys; print('py', sys.argv[1])", language="python", params=["ok"]
    )
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success", done
    [result] = service.host_results(project["id"], job["id"])
    assert result["stdout"] == "py ok\n"


def test_runs_are_nicer_than_the_service(service, project):
    """A run and what it starts take the CPU only when the API and the ingester leave it free: their
    niceness, and where Linux schedules by session, their session's."""
    host = add_local_host(service, project)
    job = run_script(service, project, [host], "nice; cat /proc/self/autogroup 2>/dev/null || true")
    done = service.wait_job(project["id"], job["id"])
    [result] = service.host_results(project["id"], job["id"])
    assert done["status"] == "success", result
    # The workers are this process's children; a work horse adds the setting's niceness to theirs.
    expected = min(os.nice(0) + Settings.__dataclass_fields__["worker_nice"].default, 19)
    niceness, *session = result["stdout"].splitlines()
    assert niceness == str(expected)
    # The script runs in the session of the fork that started it. Without CAP_SYS_ADMIN a fork may find
    # the session's niceness refused for 100 ms, and does not wait.
    if Path("/proc/self/autogroup").exists() and os.geteuid() == 0:
        assert session[0].endswith(f" nice {expected}"), session


def test_a_run_prints_through_ansibles_own_display_callback(service, project):
    """ansible-runner's display callback encoded every event into the run's output, which the work horse
    read and decoded while Ansible waited on the pseudo-terminal; the run's events come from the
    service's callback plugin."""
    host = add_local_host(service, project)
    job = run_script(service, project, [host], 'echo "$ANSIBLE_STDOUT_CALLBACK"')
    done = service.wait_job(project["id"], job["id"])
    [result] = service.host_results(project["id"], job["id"])
    assert done["status"] == "success", result
    assert result["stdout"] == "default\n"


def test_a_launch_makes_few_round_trips_to_the_database(service, project, account, lab):
    """Each statement is a round trip a launch waits for: under load, its latency is their sum."""
    hosts = add_hosts(service, project, lab, 3)
    statements = []
    engine = db.engine

    def count(*_):
        statements.append(1)

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "commit", count)
    try:
        job = run_script(service, project, hosts, "echo hi", account_id=account["id"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "commit", count)
    assert job["dispatched_at"], "the project had room"
    assert len(statements) <= LAUNCH_ROUND_TRIPS_MAX, len(statements)
    service.wait_job(project["id"], job["id"])


def ansible_processes(service) -> list[psutil.Process]:
    """Processes of this service's runs (other services on the machine have other data dirs)."""
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        env = process.info.get("environ") or {}
        if "OPSFLOW_RUN_MARKER" in env and env.get("OPSFLOW_DATA_DIR") == str(service.data_dir):
            found.append(process)
    return found


def ssh_masters(service) -> list[psutil.Process]:
    """Live ssh ControlPersist masters of this service's runs (their title names the run's control path)."""
    runs = f"{service.data_dir}/runs/"
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        title = " ".join(process.info["cmdline"] or [])
        if runs in title and "[mux]" in title and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def host_processes(command: str) -> list[psutil.Process]:
    """Processes the script started on the hosts (which all live on this machine)."""
    return [p for p in psutil.process_iter(["cmdline"]) if command in " ".join(p.info["cmdline"] or [])]


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_timeout_ends_every_process(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 3, first=70)
    job = run_script(service, project, hosts, LONG_SLEEP, timeout=3, account_id=account["id"])
    done = service.wait_job(project["id"], job["id"], timeout=60)
    assert done["status"] == "timeout", done
    assert done["counts"]["timeout"] == 3
    assert ansible_processes(service) == []
    assert host_processes(LONG_SLEEP) == []


def test_cancel_ends_every_host_and_process(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 4, first=80)
    job = run_script(service, project, hosts, f"echo started; {LONG_SLEEP}", account_id=account["id"])
    wait_until(lambda: service.get(f"/projects/{project['id']}/jobs/{job['id']}")["counts"]["running"] == 4)
    wait_until(lambda: ansible_processes(service) != [])
    cancelled = service.post(f"/projects/{project['id']}/jobs/{job['id']}/cancel", expect=202).get_json()
    assert cancelled["status"] in ("stopping", "terminated")
    done = service.wait_job(project["id"], job["id"], timeout=60)
    assert done["status"] == "terminated", done
    assert done["counts"]["cancelled"] == 4
    assert ansible_processes(service) == []
    assert host_processes(LONG_SLEEP) == []
    again = service.post(f"/projects/{project['id']}/jobs/{job['id']}/cancel", expect=409).get_json()
    assert again["error"]["code"] == "conflict"


def wait_for_a_lock_wait() -> None:
    """Until some session of this database waits for a row lock (PostgreSQL shows it; an SQLite writer
    waits inside the library, so give it a moment)."""
    if db.engine.dialect.name != "postgresql":
        time.sleep(0.5)
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def some_session_waits() -> bool:
        # A transaction reads one snapshot of pg_stat_activity: each look needs a new one.
        count = db.session.execute(waiting).scalar()
        db.session.rollback()
        return count > 0

    wait_until(some_session_waits, timeout=10)


def test_a_cancel_and_a_claim_of_the_same_slice_both_go_through(service, project, monkeypatch):
    """A worker claims the slice (its row locked, the step and job still to mark started) while the
    operator cancels: neither waits for the other in a cycle, and the claimed slice is left to its run."""
    local = add_local_host(service, project)
    # No worker serves this queue: the test claims the slice itself, at the moment it chooses.
    unserved = dataclasses.replace(
        service.app.config["OPSFLOW"], queue_name=f"test:unserved:{uuid.uuid4().hex}"
    )
    monkeypatch.setitem(service.app.config, "OPSFLOW", unserved)
    job = run_script(service, project, [local], "sleep 30")
    slice_id = db.session.scalar(
        select(Slice.id).join(StepInstance).where(StepInstance.job_instance_id == job["id"])
    )
    db.session.rollback()
    holding, go_on = threading.Event(), threading.Event()
    mark_started = executions.mark_started

    def held_then_marked(piece: Slice) -> None:
        holding.set()
        go_on.wait(30)
        mark_started(piece)

    monkeypatch.setattr(executions, "mark_started", held_then_marked)

    def claim() -> object:
        with service.app.app_context():
            return executions.claim(slice_id, "test-claimer")

    with ThreadPoolExecutor(max_workers=2) as pool:
        claimed = pool.submit(claim)
        assert holding.wait(10)
        cancelling = pool.submit(service.post, f"/projects/{project['id']}/jobs/{job['id']}/cancel")
        wait_for_a_lock_wait()
        go_on.set()
        assert claimed.result(30) is not None
        response = cancelling.result(30)
    assert response.status_code == 202, response.get_data(as_text=True)
    seen = service.get(f"/projects/{project['id']}/jobs/{job['id']}")
    assert seen["status"] == "stopping"
    assert [step["status"] for step in seen["steps"]] == ["running"]
    with service.app.app_context():
        finish_slice(slice_id, RunStatus.TERMINATED, "the test's claim never ran")
        settle_job(db.session.get(JobInstance, job["id"]))
        db.session.commit()
    Queue(unserved.queue_name, connection=redis.client).delete()
    assert service.wait_job(project["id"], job["id"])["status"] == "terminated"
