"""SSH host keys: trusted on first use per project, a changed key fails its host, a forgotten key is
accepted again, strict mode refuses what is not recorded; over real ssh to the lab's sshd."""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import host_key_checking, kex_algorithms
from app.execution.compiler import Account, ScriptStep, Target, compile_script
from app.execution.ingest import host_status
from app.execution.known_hosts import ProjectKnownHosts, fingerprint, keys_in, known_as, stamped, without
from app.execution.runner import Runner, RunOutcome, RunRequest
from app.status import HostStatus, RunStatus
from tests.conftest import add_hosts, run_script, runner_for

CHANGED_BANNER = """\
Failed to connect to the host via ssh: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
Host key verification failed."""


def new_public_key(directory: Path) -> tuple[str, str]:
    """(type, base64) of a fresh ed25519 key: what a moved or spoofed host would show."""
    path = directory / f"key-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    key_type, key, _ = Path(f"{path}.pub").read_text().split(maxsplit=2)
    return key_type, key


def lab_host_key(lab) -> tuple[str, str]:
    key_type, key, _ = (lab.workdir / "host_ed25519.pub").read_text().split(maxsplit=2)
    return key_type, key


def ssh_keygen_fingerprint(public_key_file: Path) -> str:
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return listed.stdout.split()[1]


def test_names_and_fingerprints_are_those_ssh_uses(lab, tmp_path):
    assert known_as("127.0.0.2", 2222) == "[127.0.0.2]:2222"
    assert known_as("db.example", 22) == known_as("db.example", None) == "db.example"
    key_type, key = lab_host_key(lab)
    assert fingerprint(key) == ssh_keygen_fingerprint(lab.workdir / "host_ed25519.pub")
    # A line ssh-keygen -H hashed is found by its name as well.
    file = tmp_path / "known_hosts"
    file.write_text(f"[127.0.0.7]:{lab.port} {key_type} {key}\nother {key_type} {key}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(file)], check=True, capture_output=True)
    assert "127.0.0.7" not in file.read_text()
    [found] = keys_in(file.read_text(), f"[127.0.0.7]:{lab.port}")
    assert (found.key_type, found.fingerprint, found.first_seen) == (key_type, fingerprint(key), None)


def test_new_lines_are_stamped_once_and_forgotten_by_name():
    _, key = "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIE8kPZcbyKsDvZk7mnXjJoqVhb2ww7wN8kv2yZ8xFjHq"
    first, later = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    text = f"# kept\n[a]:2222 ssh-ed25519 {key}\n"
    once = stamped(text, first)
    assert stamped(once + f"b ssh-ed25519 {key}\n", later).splitlines()[1] == once.splitlines()[1]
    [recorded] = keys_in(once, "[a]:2222")
    assert recorded.first_seen == first
    assert keys_in(once, "a") == [] and keys_in(once, "[a]:22") == []
    remaining, removed = without(once, "[a]:2222")
    assert (remaining, removed) == ("# kept\n", 1)


def test_changed_host_keys_are_told_apart_from_other_failures():
    assert host_status("unreachable", CHANGED_BANNER, 1) is HostStatus.HOST_KEY_CHANGED
    assert host_status("unreachable", "Host key for [h]:22 has changed and you have requested strict", 1) is (
        HostStatus.HOST_KEY_CHANGED
    )
    assert host_status("unreachable", "Permission denied (publickey).", 1) is HostStatus.AUTH_FAILED
    assert host_status("unreachable", "Connection refused", 1) is HostStatus.UNREACHABLE


def test_the_setting_takes_three_values_and_the_old_booleans():
    assert host_key_checking(None) == host_key_checking("") == "accept-new"
    assert [host_key_checking(value) for value in ("strict", "OFF", "true", "false")] == [
        "strict",
        "off",
        "strict",
        "off",
    ]
    with pytest.raises(ValueError, match="accept-new, strict, off"):
        host_key_checking("sometimes")


def known_hosts_file(service, project: dict) -> Path:
    return service.data_dir / "known_hosts" / str(project["id"]) / "known_hosts"


def statuses(service, project: dict, job: dict) -> dict[str, str]:
    service.wait_job(project["id"], job["id"])
    return {r["host_name"]: r["status"] for r in service.host_results(project["id"], job["id"])}


def test_first_key_recorded_changed_key_refused_forgotten_key_accepted(
    service, project, account, lab, tmp_path
):
    pid = project["id"]
    hosts = add_hosts(service, project, lab, 2)
    moved, steady = hosts
    key_path = f"/projects/{pid}/hosts/{moved['id']}/host-key"
    name = f"[{moved['address']}]:{lab.port}"
    assert service.get(key_path) == {"host_id": moved["id"], "known_as": name, "keys": []}

    run = {"timeout": 60, "account_id": account["id"]}
    job = run_script(service, project, hosts, "echo hi", **run)
    assert statuses(service, project, job) == {moved["name"]: "success", steady["name"]: "success"}
    [key] = service.get(key_path)["keys"]
    lab_type, lab_key = lab_host_key(lab)
    assert (key["key_type"], key["fingerprint"]) == (lab_type, fingerprint(lab_key))
    assert datetime.fromisoformat(key["first_seen"]) <= datetime.now(UTC)

    # The host now answers with another key than the one recorded.
    file = known_hosts_file(service, project)
    other_type, other_key = new_public_key(tmp_path)
    file.write_text(
        file.read_text().replace(f"{name} {lab_type} {lab_key}", f"{name} {other_type} {other_key}")
    )
    job = run_script(service, project, hosts, "echo hi", **run)
    assert statuses(service, project, job) == {moved["name"]: "host_key_changed", steady["name"]: "success"}
    job_view = service.get(f"/projects/{pid}/jobs/{job['id']}")
    assert job_view["status"] == "failed" and job_view["counts"]["host_key_changed"] == 1
    [result] = service.host_results(pid, job["id"], status="host_key_changed")
    assert "HOST IDENTIFICATION HAS CHANGED" in result["error"]
    assert service.get(key_path)["keys"][0]["fingerprint"] == fingerprint(other_key)

    # Reachability checks follow the same rules.
    check = {"targets": {"hosts": [moved["id"]]}, "account_id": account["id"]}
    job = service.post(f"/projects/{pid}/reachability-checks", check, 202).get_json()
    service.wait_job(pid, job["id"])
    host = service.get(f"/projects/{pid}/hosts/{moved['id']}")
    assert host["reachable"] is False and host["last_check_error"].startswith("host_key_changed: ")

    service.api("DELETE", key_path, 204)
    assert service.get(key_path)["keys"] == []
    assert f"{name} " not in file.read_text()
    job = run_script(service, project, [moved], "echo hi", **run)
    assert statuses(service, project, job) == {moved["name"]: "success"}
    assert [key["fingerprint"] for key in service.get(key_path)["keys"]] == [fingerprint(lab_key)]

    service.api("GET", f"/projects/{pid}/hosts/999999/host-key", 404)
    service.api("DELETE", f"/projects/{pid}/hosts/999999/host-key", 404)


@pytest.fixture
def strict_runner(redis_url, tmp_path):
    with runner_for(redis_url, tmp_path, ssh_host_key_checking="strict") as runner:
        yield runner


def test_a_run_under_a_deep_data_dir_reaches_its_host(redis_url, tmp_path, lab):
    # Deeper than a Unix socket's path may be: ssh's control sockets must not live under it.
    data_dir = tmp_path / ("d" * 60) / ("e" * 40)
    data_dir.mkdir(parents=True)
    with runner_for(redis_url, data_dir) as runner:
        outcome, [event] = run_on_lab(runner, lab, random.randint(10**6, 10**7))
    assert outcome == RunOutcome(RunStatus.SUCCESS), json.dumps(event)
    assert event["stdout"].strip() == "hi"


def run_on_lab(runner: Runner, lab, project_id: int) -> tuple[RunOutcome, list[dict]]:
    target = Target("h", lab.address(7), lab.port)
    compiled = compile_script(ScriptStep("bash", "echo hi"), [target], Account(lab.user))
    slice_id = random.randint(10**9, 2 * 10**9)
    request = RunRequest(
        slice_id=slice_id,
        job_id=slice_id,
        compiled=compiled,
        forks=1,
        timeout=60,
        private_key=lab.private_key,
        project_id=project_id,
    )
    outcome = runner.run(request)
    events = [
        event
        for _, fields in runner.redis.xrange(runner.settings.event_stream)
        for event in json.loads(fields[b"events"])
        if event["slice"] == slice_id and event["type"] == "task_result"
    ]
    return outcome, events


def test_strict_mode_refuses_an_unknown_host_and_accepts_a_recorded_one(strict_runner, lab):
    project_id = random.randint(10**6, 10**7)
    outcome, [event] = run_on_lab(strict_runner, lab, project_id)
    assert event["outcome"] == "unreachable" and "Host key verification failed" in event["msg"]
    assert host_status(event["outcome"], event["msg"], 1) is HostStatus.UNREACHABLE
    known_hosts = ProjectKnownHosts(strict_runner.settings.known_hosts_dir / str(project_id))
    # Strict mode records nothing itself.
    assert known_hosts.read() == ""

    key_type, key = lab_host_key(lab)
    known_hosts.path.write_text(f"[{lab.address(7)}]:{lab.port} {key_type} {key}\n")
    outcome, [event] = run_on_lab(strict_runner, lab, project_id)
    assert outcome == RunOutcome(RunStatus.SUCCESS) and event["stdout"].strip() == "hi", json.dumps(event)


def test_the_key_exchange_setting_reaches_ssh(redis_url, tmp_path, lab):
    with runner_for(redis_url, tmp_path / "fast", ssh_kex_algorithms="curve25519-sha256") as runner:
        outcome, [event] = run_on_lab(runner, lab, random.randint(10**6, 10**7))
    assert outcome == RunOutcome(RunStatus.SUCCESS) and event["stdout"].strip() == "hi", json.dumps(event)
    # One the lab's sshd does not offer: the host cannot be reached, so ssh was given it (ssh's
    # "no matching key exchange method" is below the runs' LogLevel=ERROR).
    with runner_for(redis_url, tmp_path / "old", ssh_kex_algorithms="diffie-hellman-group14-sha1") as runner:
        _, [event] = run_on_lab(runner, lab, random.randint(10**6, 10**7))
    assert event["outcome"] == "unreachable", json.dumps(event)


def test_the_key_exchange_setting_takes_algorithm_lists_only():
    assert kex_algorithms(None) == kex_algorithms(" ") == ""
    assert kex_algorithms("curve25519-sha256,sntrup761x25519-sha512@openssh.com") == (
        "curve25519-sha256,sntrup761x25519-sha512@openssh.com"
    )
    assert kex_algorithms("^curve25519-sha256") == "^curve25519-sha256"
    for wrong in ("curve25519-sha256 -o ProxyCommand=id", "a,,b", "a;id", "curve25519-sha256,"):
        with pytest.raises(ValueError, match="OPSFLOW_SSH_KEX_ALGORITHMS"):
            kex_algorithms(wrong)
