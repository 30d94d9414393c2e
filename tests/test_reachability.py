"""Reachability checks over real SSH: what each host records, and the host list's filters."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta

from app.execution.compiler import Account, Target, compile_connection_test
from tests.conftest import add_local_host, reachable
from tests.sshd import _free_port


def test_the_check_is_one_raw_no_op_for_every_connection():
    targets = [
        Target("linux", "10.0.0.1", 22, "ssh", {"ansible_user": "ops"}),
        Target("windows", "10.0.0.2", None, "winrm"),
        Target("controller", "127.0.0.1", None, "local"),
    ]
    compiled = compile_connection_test(targets, Account("deploy", become=True))
    assert compiled.playbook == [
        {
            "name": "reachability",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"name": "connect", "raw": "exit 0"}],
        }
    ]
    inventory = compiled.inventory["all"]
    assert list(inventory["children"]) == ["opsflow_ssh", "opsflow_winrm", "opsflow_local"]
    assert inventory["vars"]["ansible_user"] == "deploy" and inventory["vars"]["ansible_become"] is True
    assert inventory["children"]["opsflow_ssh"]["hosts"]["linux"]["ansible_user"] == "ops"
    assert compiled.task_count == 1 and compiled.files == {}


def check(service, pid: int, hosts: list[dict], account_id: int | None) -> dict:
    body = {"targets": {"hosts": [host["id"] for host in hosts]}, "account_id": account_id}
    job = service.post(f"/projects/{pid}/reachability-checks", body, expect=202).get_json()
    assert job["kind"] == "reachability_check" and job["status"] in ("waiting", "running")
    return service.wait_job(pid, job["id"])


def hosts_where(service, pid: int, **query) -> list[str]:
    return sorted(host["name"] for host in service.get(f"/projects/{pid}/hosts", query_string=query))


def test_reachable_unreachable_and_refused_hosts(service, project, account, lab, tmp_path):
    pid = project["id"]
    closed_port = _free_port()
    assert not reachable("127.0.0.1", closed_port)
    up = service.post(
        f"/projects/{pid}/hosts", {"name": "up", "address": lab.address(1), "port": lab.port}, 201
    )
    down = service.post(
        f"/projects/{pid}/hosts", {"name": "down", "address": "127.0.0.1", "port": closed_port}, 201
    )
    up, down = up.get_json(), down.get_json()
    assert up["reachable"] is None and up["last_checked_at"] is None

    first = check(service, pid, [up, down], account["id"])
    results = {result["host_name"]: result for result in service.host_results(pid, first["id"])}
    assert (results["up"]["status"], results["down"]["status"]) == ("success", "unreachable")
    up_now = service.get(f"/projects/{pid}/hosts/{up['id']}")
    down_now = service.get(f"/projects/{pid}/hosts/{down['id']}")
    assert (up_now["reachable"], up_now["last_check_error"], up_now["unreachable_since"]) == (
        True,
        None,
        None,
    )
    assert down_now["reachable"] is False and down_now["last_check_error"].startswith("unreachable: ")
    down_since = datetime.fromisoformat(down_now["unreachable_since"])
    assert down_since == datetime.fromisoformat(down_now["last_checked_at"])

    # A wrong account is the account's failure, not the host's: the verdicts stay as they were.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    wrong_logins = [
        {"name": "stranger", "username": "no-such-user", "private_key": lab.private_key},
        {"name": "wrong-key", "username": lab.user, "private_key": (tmp_path / "other").read_text()},
    ]
    for login in wrong_logins:
        wrong = service.post(f"/projects/{pid}/accounts", login, expect=201).get_json()
        refused = check(service, pid, [up, down], wrong["id"])
        statuses = {r["host_name"]: r["status"] for r in service.host_results(pid, refused["id"])}
        assert statuses == {"up": "auth_failed", "down": "unreachable"}, login["name"]
        refused_at = service.get(f"/projects/{pid}/hosts/{up['id']}")
        assert (refused_at["reachable"], refused_at["unreachable_since"]) == (True, None)
        assert refused_at["last_check_error"].startswith("auth_failed: ")
        assert refused_at["last_checked_at"] > up_now["last_checked_at"]
        still_down = service.get(f"/projects/{pid}/hosts/{down['id']}")
        assert datetime.fromisoformat(still_down["unreachable_since"]) == down_since

    check(service, pid, [up, down], account["id"])
    up_now = service.get(f"/projects/{pid}/hosts/{up['id']}")
    down_again = service.get(f"/projects/{pid}/hosts/{down['id']}")
    assert (up_now["reachable"], up_now["unreachable_since"]) == (True, None)
    assert down_again["last_checked_at"] > down_now["last_checked_at"]
    assert datetime.fromisoformat(down_again["unreachable_since"]) == down_since  # still the first failure

    assert hosts_where(service, pid, reachable="false") == ["down"]
    assert hosts_where(service, pid, reachable="true") == ["up"]
    assert hosts_where(service, pid, unreachable_since=(down_since + timedelta(seconds=1)).isoformat()) == [
        "down"
    ]
    assert hosts_where(service, pid, unreachable_since=(down_since - timedelta(seconds=1)).isoformat()) == []
    error = service.api("GET", f"/projects/{pid}/hosts", 422, query_string={"unreachable_since": "yesterday"})
    assert error.get_json()["error"]["field"] == "unreachable_since"


def test_local_hosts_need_no_account_and_bad_requests_are_refused(service, project):
    pid = project["id"]
    local = add_local_host(service, project)
    done = check(service, pid, [local], None)
    assert done["status"] == "success"
    assert service.get(f"/projects/{pid}/hosts/{local['id']}")["reachable"] is True

    remote = service.post(
        f"/projects/{pid}/hosts", {"name": "remote", "address": "127.0.0.2"}, expect=201
    ).get_json()
    cases = [
        ({"targets": {"hosts": [remote["id"]]}}, "account_id"),
        ({"targets": {"hosts": [remote["id"]]}, "account_id": 999999}, "account_id"),
        ({"targets": {}}, "targets.hosts"),
        ({"targets": {"hosts": [999999]}}, "targets.hosts"),
        ({"targets": {"hosts": [local["id"]]}, "timeout": 0}, "timeout"),
    ]
    for body, field in cases:
        error = service.post(f"/projects/{pid}/reachability-checks", body, expect=422).get_json()["error"]
        assert error["field"] == field, (body, error)
