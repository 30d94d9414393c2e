"""Ad-hoc commands (`ansible -m`) over real SSH to loopback hosts: per-host results, tasks, checks."""

from __future__ import annotations

import json
import uuid

from tests.conftest import add_hosts, add_local_host, add_unreachable_host, make_member
from tests.test_script_execution import INJECTION


def ad_hoc(service, project, hosts, module, args=None, expect=202, **extra):
    body = {"module": module, "targets": {"hosts": [host["id"] for host in hosts]}, **extra}
    if args is not None:
        body["args"] = args
    return service.post(f"/projects/{project['id']}/ad-hoc-runs", body, expect=expect).get_json()


def run(service, project, hosts, module, args=None, **extra) -> tuple[dict, dict[str, dict]]:
    """Run to its end: the job, and its host results by host name."""
    job = ad_hoc(service, project, hosts, module, args, **extra)
    assert job["kind"] == "ad_hoc" and job["host_count"] == len(hosts)
    done = service.wait_job(project["id"], job["id"])
    return done, {r["host_name"]: r for r in service.host_results(project["id"], job["id"])}


def tasks(service, project, job, host) -> list[dict]:
    return service.get_all(f"/projects/{project['id']}/jobs/{job['id']}/host-results/{host['id']}/tasks")


def test_modules_on_two_hosts(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 2, first=400)
    login = {"account_id": account["id"]}
    done, results = run(service, project, hosts, "ping", **login)
    assert done["status"] == "success" and done["counts"]["success"] == 2
    for host in hosts:
        result = results[host["name"]]
        assert result["status"] == "success" and result["exit_code"] is None
        # The module's result as `ansible` shows it after "=>".
        shown = json.loads(result["stdout"])
        assert (shown["ping"], shown["changed"]) == ("pong", False)
        [task] = tasks(service, project, done, host)
        assert (task["name"], task["action"], task["status"], task["changed"]) == (
            "ping",
            "ping",
            "ok",
            False,
        )
    # The same output everywhere: one group.
    [group] = service.get(
        f"/projects/{project['id']}/jobs/{done['id']}/steps/{done['steps'][0]['id']}/output-groups"
    )
    assert group["count"] == 2

    done, results = run(service, project, hosts, "command", "echo hello from $HOSTNAME", **login)
    assert done["status"] == "success"
    for result in results.values():
        # command runs no shell: $HOSTNAME stays as it is; its output is the command's own.
        assert (result["exit_code"], result["stdout"], result["stderr"]) == (0, "hello from $HOSTNAME", "")
    [task] = tasks(service, project, done, hosts[0])
    assert (task["status"], task["changed"], task["exit_code"]) == ("changed", True, 0)

    done, results = run(service, project, hosts, "shell", "echo out; echo err >&2; echo $((6 * 7))", **login)
    assert done["status"] == "success"
    for result in results.values():
        assert (result["stdout"], result["stderr"]) == ("out\n42", "err")

    path = f"/tmp/opsflow-adhoc-{uuid.uuid4().hex[:10]}"
    content = f"data {INJECTION}\n"
    done, results = run(
        service, project, [hosts[0]], "copy", {"content": content, "dest": path, "mode": "0600"}, **login
    )
    assert done["status"] == "success", results
    [task] = tasks(service, project, done, hosts[0])
    assert task["status"] == "changed" and task["action"] == "copy"
    assert json.loads(results[hosts[0]["name"]]["stdout"])["dest"] == path

    done, results = run(service, project, hosts, "stat", f"path={path}", **login)
    assert done["status"] == "success"
    stat = json.loads(results[hosts[0]["name"]]["stdout"])["stat"]
    assert stat["exists"] is True and stat["mode"] == "0600" and stat["size"] == len(content.encode())
    done, results = run(service, project, [hosts[1]], "command", f"cat {path}", **login)
    # The copy's content reached the host as written: nothing templated it.
    assert results[hosts[1]["name"]]["stdout"] == content.rstrip("\n")
    run(service, project, [hosts[0]], "file", {"path": path, "state": "absent"}, **login)


def test_arguments_are_data(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 1, first=410)
    done, results = run(
        service,
        project,
        hosts,
        "shell",
        f'echo "{INJECTION}"; echo "{{{{ 7 * 7 }}}}"',
        account_id=account["id"],
    )
    assert done["status"] == "success"
    [result] = results.values()
    assert result["stdout"] == f"{INJECTION}\n{{{{ 7 * 7 }}}}"
    assert "uid=" not in result["stdout"] and "49" not in result["stdout"]
    [task] = tasks(service, project, done, hosts[0])
    assert INJECTION in task["stdout"]
    # As an object too, and in the name of an option Ansible would look up.
    done, results = run(
        service,
        project,
        hosts,
        "command",
        {"cmd": f"echo {INJECTION}", "chdir": "/tmp"},
        account_id=account["id"],
    )
    assert "uid=" not in results[hosts[0]["name"]]["stdout"]
    assert results[hosts[0]["name"]]["stdout"].startswith("{{ lookup(")


def test_unreachable_host_and_non_zero_exit(service, project, account, lab):
    good = add_hosts(service, project, lab, 1, first=420)
    bad = add_unreachable_host(service, project)
    done, results = run(service, project, [*good, bad], "ping", account_id=account["id"])
    assert done["status"] == "failed"
    assert done["counts"]["success"] == 1 and done["counts"]["unreachable"] == 1
    assert results["nowhere"]["status"] == "unreachable" and results["nowhere"]["error"]
    [task] = tasks(service, project, done, bad)
    assert task["status"] == "unreachable" and task["msg"]

    done, results = run(service, project, good, "shell", "echo before; exit 3", account_id=account["id"])
    assert done["status"] == "failed" and done["counts"]["failed"] == 1
    [result] = results.values()
    assert (result["status"], result["exit_code"], result["stdout"]) == ("failed", 3, "before")
    assert "non-zero return code" in result["error"]
    [task] = tasks(service, project, done, good[0])
    assert (task["status"], task["exit_code"]) == ("failed", 3)
    # A relaunch runs the same command again, here on the failed host only.
    again = service.post(
        f"/projects/{project['id']}/jobs/{done['id']}/relaunch", {"failed_only": True}, expect=202
    ).get_json()
    assert again["kind"] == "ad_hoc" and again["relaunch_of_id"] == done["id"] and again["host_count"] == 1
    assert again["steps"][0]["spec"]["args"] == "echo before; exit 3"
    assert service.wait_job(project["id"], again["id"])["status"] == "failed"


def test_check_mode_changes_nothing(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 1, first=430)
    path = f"/tmp/opsflow-adhoc-check-{uuid.uuid4().hex[:10]}"
    done, results = run(
        service,
        project,
        hosts,
        "copy",
        {"content": "x\n", "dest": path},
        account_id=account["id"],
        check=True,
        diff=True,
    )
    assert done["status"] == "success"
    [task] = tasks(service, project, done, hosts[0])
    assert task["status"] == "changed" and "+x" in task["diff"]
    done, results = run(service, project, hosts, "stat", {"path": path}, account_id=account["id"])
    assert json.loads(results[hosts[0]["name"]]["stdout"])["stat"]["exists"] is False
    # A command is not run in check mode: Ansible skips it.
    done, results = run(
        service, project, hosts, "command", f"touch {path}", account_id=account["id"], check=True
    )
    assert done["status"] == "success"
    [task] = tasks(service, project, done, hosts[0])
    assert task["status"] == "skipped"


def test_allowed_modules_and_bad_input(service, project, account, lab):
    pid = project["id"]
    hosts = add_hosts(service, project, lab, 1, first=440)
    login = {"account_id": account["id"]}

    def refused(body: dict, field: str, status: int = 422) -> str:
        body = {"module": "ping", "targets": {"hosts": [hosts[0]["id"]]}, **login, **body}
        error = service.post(f"/projects/{pid}/ad-hoc-runs", body, expect=status).get_json()["error"]
        assert error["field"] == field, error
        return error["message"]

    for module in (
        "raw",
        "fetch",
        "debug",
        "script",
        "ansible.builtin.raw",
        "community.general.ping",
        "ping -a",
    ):
        assert "OPSFLOW_AD_HOC_MODULES" in refused({"module": module}, "module")
    refused({"module": ""}, "module")
    refused({"args": 42}, "args")
    refused({"args": ["a"]}, "args")
    refused({"args": {"x": {"__ansible_unsafe": "y"}}}, "args.x.__ansible_unsafe")
    refused({"module": "command"}, "args")
    refused({"module": "shell", "args": 'echo "unbalanced'}, "args")
    refused({"module": "copy", "args": {"_ansible_check_mode": False}}, "args")
    refused({"module": "shell", "args": "mkfs.ext4 /dev/sdz"}, "args")
    refused({"targets": {}}, "targets.hosts")
    refused({"targets": {"hosts": [999999]}}, "targets.hosts")
    refused({"account_id": None}, "account_id")
    refused({"timeout": 0}, "timeout")
    refused({"forks": 0}, "forks")
    refused({"check": "maybe"}, "check")
    refused({"become": "yes please"}, "become")
    refused({"surprise": 1}, "surprise")
    body = {"module": "ping", "targets": {"hosts": [hosts[0]["id"]]}}
    error = service.post(
        f"/projects/{pid}/ad-hoc-runs", {k: v for k, v in body.items() if k != "module"}, expect=422
    )
    assert error.get_json()["error"]["field"] == "module"
    # ansible.builtin's spelling of an allowed module is that module.
    done, _ = run(service, project, hosts, "ansible.builtin.ping", **login)
    assert done["status"] == "success"
    # The refused launches wrote nothing.
    assert [job["id"] for job in service.get(f"/projects/{pid}/jobs")] == [done["id"]]


def test_who_may_run_and_idempotency(service, project, account, lab):
    pid = project["id"]
    hosts = add_hosts(service, project, lab, 1, first=450)
    body = {"module": "ping", "targets": {"hosts": [hosts[0]["id"]]}, "account_id": account["id"]}
    viewer = make_member(service, pid, "viewer")
    service.post(f"/projects/{pid}/ad-hoc-runs", body, expect=403, token=viewer)
    operator = make_member(service, pid, "operator")
    key = {"Idempotency-Key": f"ping-{uuid.uuid4().hex}"}
    first = service.post(f"/projects/{pid}/ad-hoc-runs", body, expect=202, token=operator, headers=key)
    again = service.post(f"/projects/{pid}/ad-hoc-runs", body, expect=202, token=operator, headers=key)
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    service.post(f"/projects/{pid}/ad-hoc-runs", {**body, "module": "setup"}, expect=422, headers=key)
    job = service.wait_job(pid, first.get_json()["id"])
    assert job["status"] == "success" and job["launched_by"] != "admin"


def test_local_hosts_run_in_the_sandbox(service, project):
    host = add_local_host(service, project, f"controller-{uuid.uuid4().hex[:6]}")
    done, results = run(service, project, [host], "command", "ls /")
    assert done["status"] == "success", results
    assert "usr" in results[host["name"]]["stdout"].split()
    done, results = run(service, project, [host], "setup", "gather_subset=min")
    assert done["status"] == "success"
    assert "ansible_facts" in json.loads(results[host["name"]]["stdout"])
    # become needs an account to become with.
    error = ad_hoc(service, project, [host], "ping", expect=422, become=True)["error"]
    assert error["field"] == "become"
