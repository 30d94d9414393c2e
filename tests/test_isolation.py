"""Runs are sandboxed away from the service's data; local hosts are a system administrator's decision;
the data directory and the SQLite database are private; a server without bubblewrap says so and
refuses what would run unsandboxed on the controller; in Redis, a run may only add events."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import stat
import uuid
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, NoPermissionError
from sqlalchemy import select

from app import datadir, redis_acl
from app.cli import start_embedded_redis
from app.config import Settings, embedded_redis_urls
from app.execution import events
from app.execution.compiler import ScriptStep, Target, compile_script
from app.execution.ingest import vouched_for
from app.execution.isolation import Isolation, probe, warning
from app.execution.runner import Runner, RunRequest
from app.extensions import db
from app.models import Slice, StepInstance
from app.services.errors import Conflict
from app.status import RunStatus
from tests.conftest import add_hosts, add_local_host, make_member, run_script, runner_for

MISSING_BWRAP = "/nonexistent/bwrap"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def service_secrets(service) -> list[Path]:
    """Files a run must never read: the admin token, the secret key, the database, another run's key."""
    other_run = service.data_dir / "runs" / f"{random.randint(10**6, 10**7)}-other"
    other_run.mkdir(parents=True)
    (other_run / "ssh_key").write_text("another run's key\n")
    paths = [service.data_dir / "admin.token", service.data_dir / "secret.key", other_run / "ssh_key"]
    database = datadir.sqlite_file(service.env["DATABASE_URL"])
    paths += [database] if database else []
    for path in paths:
        assert path.exists(), path
    return paths


@pytest.fixture
def operator(service, project) -> str:
    return make_member(service, project["id"], "operator")


def test_an_operator_may_not_create_change_or_import_a_local_host(service, project, operator, lab):
    pid = project["id"]
    local = {"name": "controller", "address": "127.0.0.1", "connection": "local"}
    error = service.post(f"/projects/{pid}/hosts", local, 403, token=operator).get_json()["error"]
    assert error["field"] == "connection" and "system administrator" in error["message"]

    [ssh_host] = add_hosts(service, project, lab, 1)
    path = f"/projects/{pid}/hosts/{ssh_host['id']}"
    service.api("PATCH", path, 403, token=operator, json={"connection": "local"})
    service.api("PATCH", path, 200, token=operator, json={"labels": {"role": "web"}})

    admins_host = add_local_host(service, project)
    service.api(
        "PATCH", f"/projects/{pid}/hosts/{admins_host['id']}", 403, token=operator, json={"labels": {}}
    )

    inventory = "[web]\nsneaky ansible_connection=local\nplain ansible_host=127.0.0.9\n"
    for dry_run in (True, False):
        body = {"format": "ini", "content": inventory, "dry_run": dry_run}
        response = service.post(f"/projects/{pid}/inventories/import", body, 403, token=operator)
        assert response.get_json()["error"]["field"] == "content"
    names = {host["name"] for host in service.get(f"/projects/{pid}/hosts")}
    assert names == {ssh_host["name"], "controller"}
    # An import that would change the system administrator's local host is refused as well.
    body = {"format": "ini", "content": "controller ansible_host=127.0.0.5\n"}
    service.post(f"/projects/{pid}/inventories/import", body, 403, token=operator)
    body = {"format": "ini", "content": "plain ansible_host=127.0.0.9\n"}
    service.post(f"/projects/{pid}/inventories/import", body, 200, token=operator)

    service.post(f"/projects/{pid}/inventories/import", {"format": "ini", "content": inventory}, 200)
    connections = {host["name"]: host["connection"] for host in service.get(f"/projects/{pid}/hosts")}
    assert connections["sneaky"] == "local"


def test_a_script_on_a_local_host_finds_none_of_the_service_data(service, project, operator):
    host = add_local_host(service, project)
    paths = service_secrets(service)
    probes = "".join(f"if [ -e '{path}' ]; then echo 'seen {path}'; fi\n" for path in paths)
    content = f"{probes}ls -a '{service.data_dir}' '{service.data_dir / 'runs'}'\necho ran\n"
    body = {
        "script": {"language": "bash", "content": content},
        "targets": {"hosts": [host["id"]]},
        "timeout": 60,
    }
    job = service.post(f"/projects/{project['id']}/script-executions", body, 202, token=operator).get_json()
    done = service.wait_job(project["id"], job["id"])
    [result] = service.host_results(project["id"], job["id"])
    assert done["status"] == "success", result
    assert result["stdout"].strip().endswith("ran")
    assert "seen" not in result["stdout"]
    listed = set(result["stdout"].split())
    assert not listed & {"admin.token", "secret.key", "test.db", "staging", "files"}
    assert not any(name.endswith("-other") for name in listed)


def test_a_playbook_lookup_finds_none_of_the_service_data(service, project):
    pid = project["id"]
    project_admin = make_member(service, pid, "admin")
    host = add_local_host(service, project)
    paths = service_secrets(service)
    reads = ", ".join(f"lookup('ansible.builtin.file', '{path}', errors='ignore')" for path in paths)
    playbook = f"""\
- hosts: all
  gather_facts: false
  tasks:
    - name: read
      ansible.builtin.debug:
        msg: "{{{{ [{reads}] | map('default', 'absent', true) | join(',') }}}}|{{{{
          lookup('ansible.builtin.fileglob', '{service.data_dir}/*') }}}}|"
"""
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": playbook},
        "targets": {"hosts": [host["id"]]},
        "timeout": 60,
    }
    body = {"name": f"t-{uuid.uuid4().hex[:8]}", "steps": [step]}
    template = service.post(f"/projects/{pid}/job-templates", body, 201, token=project_admin).get_json()
    launch = f"/projects/{pid}/job-templates/{template['id']}/launch"
    job = service.post(launch, {"variables": {}}, 202, token=project_admin).get_json()
    done = service.wait_job(pid, job["id"])
    assert done["status"] == "success", service.host_results(pid, job["id"])
    log = service.api("GET", f"/projects/{pid}/jobs/{job['id']}/host-results/{host['id']}/log", 200)
    text = log.get_data(as_text=True)
    # Each file read as absent, and no file at all in the data dir.
    assert f"msg: {','.join(['absent'] * len(paths))}|[]|" in text, text


def test_the_data_dir_and_the_database_are_private(service):
    assert mode_of(service.data_dir) == 0o700
    database = datadir.sqlite_file(service.env["DATABASE_URL"])
    if database is None:
        pytest.skip("PostgreSQL keeps its own files")
    files = [database, *(Path(f"{database}{suffix}") for suffix in ("-wal", "-shm"))]
    assert {path.name: mode_of(path) for path in files if path.exists()} == {
        path.name: 0o600 for path in files
    }


def test_an_existing_data_dir_and_database_are_tightened(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    database = data_dir / "opsflow.db"
    for path in (database, Path(f"{database}-wal")):
        path.touch()
        path.chmod(0o644)
    settings = dataclasses.replace(
        Settings.from_env(), data_dir=data_dir, database_url=f"sqlite:///{database}"
    )
    datadir.prepare(settings)
    assert mode_of(data_dir) == 0o700
    assert mode_of(database) == mode_of(Path(f"{database}-wal")) == 0o600

    fresh = tmp_path / "fresh" / "data"
    datadir.prepare(dataclasses.replace(settings, data_dir=fresh, database_url=f"sqlite:///{fresh}/db"))
    assert mode_of(fresh) == 0o700 and mode_of(fresh / "db") == 0o600


def test_a_missing_bubblewrap_is_found_and_named():
    assert probe(MISSING_BWRAP) == f"{MISSING_BWRAP} is not installed"
    assert probe("bwrap") is None
    # An executable that runs but cannot sandbox (as bwrap where user namespaces are off) is named too.
    assert probe("false") == "false cannot run: exit status 1"
    state = Isolation(probe(MISSING_BWRAP), allow_unisolated=False)
    assert state.describe().startswith("unavailable: ")
    with pytest.raises(Conflict, match="OPSFLOW_ALLOW_UNISOLATED"):
        state.refuse("local hosts")
    state.refuse(None)
    Isolation(probe(MISSING_BWRAP), allow_unisolated=True).refuse("local hosts")


@pytest.fixture
def without_bubblewrap(service):
    """The API process as on a server where bubblewrap is missing."""
    settings = service.app.config["OPSFLOW"]
    service.app.config["OPSFLOW"] = dataclasses.replace(settings, isolation_executable=MISSING_BWRAP)
    yield service.app.config["OPSFLOW"]
    service.app.config["OPSFLOW"] = settings


def test_without_bubblewrap_local_hosts_and_playbooks_are_refused(
    service, project, account, lab, without_bubblewrap
):
    pid = project["id"]
    health = service.get("/health")
    assert health["status"] == "ok" and health["isolation"]["detail"].startswith(
        f"unavailable: {MISSING_BWRAP}"
    )
    local = add_local_host(service, project)
    error = run_script(service, project, [local], "id", expect=409, timeout=60)["error"]
    assert error["field"] == "targets" and "bubblewrap" in error["message"]
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": "- hosts: all\n  gather_facts: false\n  tasks: []\n"},
        "targets": {"hosts": [local["id"]]},
        "timeout": 60,
    }
    template = service.post(
        f"/projects/{pid}/job-templates", {"name": f"t-{uuid.uuid4().hex[:8]}", "steps": [step]}, 201
    ).get_json()
    launch = f"/projects/{pid}/job-templates/{template['id']}/launch"
    assert service.post(launch, {"variables": {}}, 409).get_json()["error"]["field"] == "steps"
    # Scripts on SSH hosts run on the hosts, not on the controller: they go on.
    ssh_hosts = add_hosts(service, project, lab, 1)
    job = run_script(service, project, ssh_hosts, "echo fine", timeout=60, account_id=account["id"])
    assert service.wait_job(pid, job["id"])["status"] == "success"

    service.app.config["OPSFLOW"] = dataclasses.replace(without_bubblewrap, allow_unisolated=True)
    assert service.get("/health")["isolation"]["detail"].startswith("off: ")
    job = run_script(service, project, [local], "echo accepted", timeout=60)
    assert service.wait_job(pid, job["id"])["status"] == "success"


@pytest.fixture
def bare_runner(tmp_path, redis_url):
    """A runner of a worker where bubblewrap is missing."""
    with runner_for(redis_url, tmp_path / "data", isolation_executable=MISSING_BWRAP) as runner:
        yield runner


def local_request(marker: Path) -> RunRequest:
    target = Target("me", "127.0.0.1", connection="local")
    compiled = compile_script(ScriptStep("bash", f"touch '{marker}'"), [target], None)
    slice_id = random.randint(10**9, 2 * 10**9)
    return RunRequest(slice_id=slice_id, job_id=slice_id, compiled=compiled, forks=1, timeout=60)


def test_a_worker_without_bubblewrap_refuses_local_runs_unless_allowed(bare_runner, tmp_path):
    marker = tmp_path / "ran-unsandboxed"
    outcome = bare_runner.run(local_request(marker))
    assert outcome.status is RunStatus.FAILED and "bubblewrap" in outcome.error
    assert not marker.exists()
    allowed = Runner(dataclasses.replace(bare_runner.settings, allow_unisolated=True), bare_runner.redis)
    assert allowed.run(local_request(marker)).status is RunStatus.SUCCESS
    # Unsandboxed, the script saw the controller's own /tmp.
    assert marker.exists()
    os.unlink(marker)


# A script on a local host logs in to Redis with the connection it inherits, speaking RESP itself.
RESP_CLIENT = """\
import json, os, socket
from urllib.parse import unquote, urlsplit


def connect(url):
    parts = urlsplit(url)
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(unquote(parts.path))
    else:
        sock = socket.create_connection((parts.hostname, parts.port or 6379))
    return sock, parts


def command(sock, *words):
    encoded = [word.encode() for word in words]
    sock.sendall(b"*%d\\r\\n" % len(encoded) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(w), w) for w in encoded))
    return sock.recv(65536).decode(errors="replace").split("\\r\\n")[0]


print("REDIS_URL=" + repr(os.environ.get("REDIS_URL")))
sock, parts = connect(os.environ["OPSFLOW_REDIS_URL"])
print("AUTH", command(sock, "AUTH", unquote(parts.username), unquote(parts.password)))
if parts.scheme != "unix" and parts.path.strip("/"):
    print("SELECT", command(sock, "SELECT", parts.path.strip("/")))
stream = os.environ["OPSFLOW_EVENT_STREAM"]
"""
# It tries what that connection allows.
REDIS_PROBE = f"""{RESP_CLIENT}
for words in (
    ("RPUSH", "rq:queue:opsflow", "forged"),
    ("LPUSH", "rq:queue:opsflow", "forged"),
    ("GET", "rq:workers"),
    ("KEYS", "*"),
    ("XRANGE", stream, "-", "+"),
    ("PUBLISH", "opsflow:timed-jobs", "forged"),
    ("CONFIG", "GET", "*"),
    ("EVAL", "return 1", "0"),
    ("FLUSHDB",),
):
    print("probe", words[0], command(sock, *words))
if os.environ.get("PROBE_DEFAULT_USER"):
    anonymous, _ = connect(os.environ["OPSFLOW_REDIS_URL"])
    print("probe default-user", command(anonymous, "GET", "rq:workers"))
print("done")
"""
REFUSALS = ("-NOPERM", "-NOAUTH", "-WRONGPASS")


def assert_refused(stdout: str, probes: int) -> None:
    """Every probe refused, the service's own Redis URL not inherited."""
    lines = [line for line in stdout.splitlines() if line.startswith("probe ")]
    assert len(lines) == probes and stdout.strip().endswith("done"), stdout
    assert all(line.split(" ", 2)[2].startswith(REFUSALS) for line in lines), stdout
    assert "REDIS_URL=''" in stdout or "REDIS_URL=None" in stdout, stdout


def launch_python(service, project: dict, token: str, host: dict, content: str) -> int:
    body = {
        "script": {"language": "python", "content": content},
        "targets": {"hosts": [host["id"]]},
        "timeout": 60,
    }
    return service.post(f"/projects/{project['id']}/script-executions", body, 202, token=token).get_json()[
        "id"
    ]


def ended_alone(service, project: dict, job_id: int) -> tuple[dict, dict]:
    """The job instance once ended, and the result of its one host."""
    done = service.wait_job(project["id"], job_id)
    [result] = service.host_results(project["id"], job_id)
    return done, result


def test_a_script_on_a_local_host_may_only_add_events_to_redis(service, project, operator):
    host = add_local_host(service, project)
    done, result = ended_alone(service, project, launch_python(service, project, operator, host, REDIS_PROBE))
    assert done["status"] == "success", result
    assert "AUTH +OK" in result["stdout"], result["stdout"]
    assert_refused(result["stdout"], 9)
    client = Redis.from_url(service.env["REDIS_URL"])
    assert client.llen("rq:queue:opsflow") == 0 and client.exists("opsflow:timed-jobs") == 0


def test_events_a_run_adds_for_another_slice_are_dropped(service, project, operator):
    host = add_local_host(service, project)
    pid = project["id"]
    victim = run_script(service, project, [host], "sleep 4; echo mine", timeout=60)["id"]
    service.wait_job(pid, victim, statuses={"running"})
    [slice_id] = db.session.scalars(
        select(Slice.id).join(StepInstance).where(StepInstance.job_instance_id == victim)
    ).all()
    forged = [
        {"type": "slice_done", "slice": slice_id, "status": "failed", "error": "forged"},
        {"type": "slice_done", "slice": slice_id, "status": "failed", "error": "forged", "token": "0" * 64},
        {"type": "stats", "slice": slice_id, "hosts": {host["name"]: {"failures": 1}}, "ts": 0},
    ]
    content = f"""{RESP_CLIENT}
events = json.loads({json.dumps(forged)!r})
print("XADD", command(sock, "XADD", stream, "*", "events", json.dumps(events)))
"""
    done, result = ended_alone(service, project, launch_python(service, project, operator, host, content))
    assert done["status"] == "success" and "XADD $" in result["stdout"], result
    done, result = ended_alone(service, project, victim)
    assert done["status"] == "success" and result["stdout"] == "mine\n", result
    db.session.remove()


def test_without_a_runs_redis_user_health_and_the_start_warning_name_the_setting(service):
    settings = service.app.config["OPSFLOW"]
    assert service.get("/health")["isolation"] == {"status": "ok", "detail": "ok"}
    assert warning(settings) is None
    service.app.config["OPSFLOW"] = dataclasses.replace(settings, run_redis_url=None)
    try:
        detail = service.get("/health")["isolation"]["detail"]
    finally:
        service.app.config["OPSFLOW"] = settings
    assert detail.startswith("ok; runs can write anything to Redis") and "OPSFLOW_RUN_REDIS_URL" in detail
    line = warning(dataclasses.replace(settings, run_redis_url=None))
    assert line is not None and "OPSFLOW_RUN_REDIS_URL" in line


def test_the_runs_user_may_only_add_to_the_event_stream():
    assert redis_acl.run_user_rules("opsflow:events") == [
        "resetkeys", "~opsflow:events", "resetchannels", "-@all", "+xadd", "+select",
    ]  # fmt: skip
    users = {redis_acl.SERVICE_USER: "service-secret", redis_acl.RUN_USER: "run-secret"}
    arguments = redis_acl.server_arguments(users, "opsflow:events")
    assert not {"service-secret", "run-secret"} & set(arguments)
    assert arguments.count("--user") == 2 and "+@all" in arguments


@pytest.fixture
def embedded(tmp_path_factory) -> Settings:
    """A worker's settings on an embedded Redis of its own, started as the service starts it."""
    data_dir = tmp_path_factory.mktemp("acl")
    data_dir.chmod(0o700)
    settings = dataclasses.replace(Settings.from_env(), data_dir=data_dir, embedded_redis=True)
    process = start_embedded_redis(settings)
    service_url, run_url = embedded_redis_urls(data_dir)
    try:
        yield dataclasses.replace(settings, redis_url=service_url, run_redis_url=run_url)
    finally:
        process.terminate()
        process.wait()


def test_the_embedded_redis_has_a_password_and_a_user_for_runs(embedded):
    assert mode_of(embedded.data_dir / redis_acl.PASSWORDS_FILE) == 0o600
    with pytest.raises(AuthenticationError):
        Redis(unix_socket_path=str(embedded.redis_socket)).ping()
    assert Redis.from_url(embedded.redis_url).ping()
    runs = Redis.from_url(embedded.run_redis_url)
    runs.xadd(embedded.event_stream, {"events": "[]"})
    for refused in (lambda: runs.get("x"), lambda: runs.rpush("rq:queue:opsflow", "x"), runs.ping):
        with pytest.raises(NoPermissionError):
            refused()
    # Started again, it keeps its passwords.
    assert embedded_redis_urls(embedded.data_dir) == (embedded.redis_url, embedded.run_redis_url)


def test_a_local_run_on_the_embedded_redis_may_only_add_events(embedded):
    service = Redis.from_url(embedded.redis_url)
    passwords = str(embedded.data_dir / redis_acl.PASSWORDS_FILE)
    content = (
        f"import os\nos.environ['PROBE_DEFAULT_USER'] = '1'\n"
        f"print('passwords seen', os.path.exists({passwords!r}))\n{REDIS_PROBE}"
    )
    target = Target("me", "127.0.0.1", connection="local")
    compiled = compile_script(ScriptStep("python", content), [target], None)
    slice_id = random.randint(10**9, 2 * 10**9)
    request = RunRequest(slice_id=slice_id, job_id=slice_id, compiled=compiled, forks=1, timeout=60)
    assert Runner(embedded, service).run(request).status is RunStatus.SUCCESS
    pushed = [
        event
        for _, fields in service.xrange(embedded.event_stream)
        for event in json.loads(fields[b"events"])
    ]
    [result] = [event for event in pushed if event["type"] == "task_result"]
    assert "AUTH +OK" in result["stdout"] and "passwords seen False" in result["stdout"], result["stdout"]
    assert_refused(result["stdout"], 10)
    assert service.llen("rq:queue:opsflow") == 0


def test_only_events_with_their_slices_token_are_kept():
    key = b"the service's key"
    mine = events.vouched(key, [{"type": "stats", "slice": 1}, {"type": "slice_done", "slice": 2}])
    forged = [
        {**mine[0], "slice": 2},
        {"type": "slice_done", "slice": 3},
        {"type": "slice_done", "slice": "x", "token": "0"},
        ["not", "an", "event"],
    ]
    assert vouched_for([*mine, *forged], key) == mine
    assert vouched_for(mine, b"another key") == []
