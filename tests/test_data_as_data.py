"""User data reaches Ansible and the hosts as data: the same characters, never a command or a template.

The pure part writes compiled steps as the runner does and reads them back with Ansible's own loader,
as ansible-playbook reads its playbook, inventory and extra vars. The rest runs real jobs over SSH to
loopback hosts and checks what arrived there, and that each host's status is its own and true.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import is_trusted_as_template
from ansible.vars.manager import VariableManager
from sqlalchemy import update

from app.execution.compiler import (
    Account,
    ScriptStep,
    Target,
    Unsafe,
    compile_script,
    host_vars,
    login_vars,
    posix_command,
    to_ansible,
)
from app.execution.playbook import PlaybookStep, compile_playbook
from app.execution.transfer import compile_fetch
from app.extensions import db
from app.models import Account as AccountRow
from tests.conftest import add_hosts, add_local_host, run_script
from tests.test_file_transfers import file_results, transfer

# Every YAML indicator alone, then in combinations and the plain words YAML would read as other types.
INDICATORS = ["*", "&", "!", "|", ">", "'", '"', "%", "@", "`", "- ", "? ", ": ", "#", " leading", "~", ""]
COMBINATIONS = [
    "null",
    "Null",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "0x1",
    "0o17",
    "1e3",
    ".inf",
    "-.5",
    "2026-12-01",
    "=",
    "<<",
    "*&!",
    "&anchor *alias",
    "!tag value",
    "!!str x",
    "!unsafe '*'",
    "|\n  block",
    ">- folded",
    "'\"'",
    "%TAG ! tag:x,2026:",
    "@`",
    "- - -",
    "? : ",
    "a: b # c",
    "key: value",
    " ~",
    "trailing ",
    "[1, 2]",
    "{a: 1}",
    "---",
    "...",
    "line\nbreak",
    "crlf\r\nend\n",
    "tab\there",
    "ünïcödé ✓ 日本 🚀",
    "\\u0041 \\n",
    "$(touch pwned) `id` $HOME",
    "{{ lookup('pipe', 'id') }}",
    "{% raw %}x{% endraw %}",
    "{# comment #}",
    '{"__ansible_unsafe": "x"}',
]
VALUES = INDICATORS + COMBINATIONS


def ansible_reads(path: Path, text: str) -> Any:
    """The data as ansible-playbook loads a playbook or `-e @file`: trusted, as a file of its own."""
    path.write_text(text, encoding="utf-8")
    return DataLoader().load_from_file(str(path), trusted_as_template=True)


def assert_same(loaded: Any, produced: Any, where: str = "") -> None:
    """What Ansible loaded is what the compiler produced: unsafe strings are the same characters and
    not trusted as templates, the compiler's own strings are trusted, other values keep their type."""
    if isinstance(produced, Unsafe):
        assert isinstance(loaded, str) and loaded == produced, (where, loaded, produced)
        assert not is_trusted_as_template(loaded), where
    elif isinstance(produced, dict):
        assert list(loaded) == list(produced), where
        for key, value in produced.items():
            assert_same(loaded[key], value, f"{where}.{key}")
    elif isinstance(produced, list | tuple):
        assert len(loaded) == len(produced), where
        for index, value in enumerate(produced):
            assert_same(loaded[index], value, f"{where}[{index}]")
    elif isinstance(produced, str):
        assert loaded == produced and is_trusted_as_template(loaded), where
    else:
        assert loaded == produced and isinstance(loaded, type(produced)), (where, loaded, produced)


@pytest.mark.parametrize("value", VALUES)
def test_every_value_reaches_ansible_as_the_same_characters_and_unsafe(value, tmp_path):
    variables = {"plain": value, "nested": {"list": [value, 1, True, None], "map": {value: value}}}
    target = Target("web1", "10.0.0.1", 22, "ssh", variables)
    step = ScriptStep("bash", f"echo {value}", [value, "x"], {"GLOBAL": value})
    compiled = [
        compile_script(step, [target], Account("deploy", become=True)),
        compile_script(step, [target], None, host_environment={"web1": {"OWN": value}}),
        compile_fetch(f"/dir/{value}", f"/staging/{value}", [target], None, None),
        compile_playbook(PlaybookStep("- hosts: all\n  tasks: []\n", {"extra": value}), [target], {}, None),
    ]
    for number, run in enumerate(compiled):
        for part in ("playbook", "inventory", "extra_vars"):
            produced = getattr(run, part)
            if produced:
                assert_same(ansible_reads(tmp_path / f"{number}-{part}.yml", to_ansible(produced)), produced)

    # The inventory as ansible-playbook sees it: the yaml plugin, variables merged for the host.
    path = tmp_path / "hosts.yml"
    path.write_text(to_ansible(compiled[0].inventory), encoding="utf-8")
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(path)])
    seen = VariableManager(loader=loader, inventory=inventory).get_vars(host=inventory.get_host("web1"))
    assert seen["plain"] == value and not is_trusted_as_template(seen["plain"])
    assert seen["nested"]["list"] == [value, 1, True, None]
    assert seen["nested"]["map"] == {value: value}
    assert seen["ansible_user"] == "deploy" and seen["ansible_become"] is True
    task = ansible_reads(tmp_path / "main.yml", to_ansible(compiled[0].playbook))[0]["tasks"][0]
    assert task["raw"] == posix_command(step, over_ssh=True) and not is_trusted_as_template(task["raw"])


def test_a_transfer_glob_is_the_pattern_ansible_gets(tmp_path):
    play = ansible_reads(
        tmp_path / "fetch.yml",
        to_ansible(compile_fetch("/dir/*", "/s", [Target("h", "10.0.0.1")], None, None).playbook),
    )[0]
    assert (play["vars"]["opsflow_directory"], play["vars"]["opsflow_pattern"]) == ("/dir", "*")


def test_ansible_s_own_keys_are_no_data():
    for key in ("__ansible_unsafe", "__ansible_vault", "__ansible_type"):
        with pytest.raises(ValueError, match=key):
            host_vars(Target("h", "10.0.0.1", variables={"cfg": [{key: "x"}]}))


def test_a_become_user_reaches_ansible_quoted():
    assert login_vars(Account("u", become=True, become_user="svc-app_1.x@corp"))["ansible_become_user"] == (
        "svc-app_1.x@corp"
    )
    # A value stored before user names were checked stays one word that names no one.
    assert login_vars(Account("u", become=True, become_user="$(touch pwned)"))["ansible_become_user"] == (
        "'$(touch pwned)'"
    )
    values = host_vars(Target("h", "10.0.0.1", variables={"ansible_become_user": "a;id"}))
    assert values["ansible_become_user"] == "'a;id'"


# Over the API, against real hosts.


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def become_account(service, pid: int, lab, become_user: str = "root") -> dict:
    """The lab's login, becoming `become_user` with su (no password asked of root, no sudo needed)."""
    body = {
        "name": unique("su"),
        "username": lab.user,
        "private_key": lab.private_key,
        "become": True,
        "become_method": "su",
        "become_user": become_user,
    }
    return service.post(f"/projects/{pid}/accounts", body, expect=201).get_json()


def error_of(response) -> dict:
    assert response.status_code == 422, response.get_data(as_text=True)
    return response.get_json()["error"]


def test_a_become_user_is_a_user_name(service, project):
    pid = project["id"]
    base = {"name": unique("a"), "username": "deploy", "password": "pw", "become": True}
    for bad in ["$(touch pwned)", "a b", "root;id", "`id`", "-u", "#0", "a'b", ""]:
        error = error_of(service.post(f"/projects/{pid}/accounts", {**base, "become_user": bad}))
        assert error["field"] == "become_user", (bad, error)
        error = error_of(
            service.post(
                f"/projects/{pid}/hosts",
                {"name": unique("h"), "address": "10.0.0.1", "variables": {"ansible_become_user": bad}},
            )
        )
        assert error["field"] == "variables.ansible_become_user", (bad, error)
    error = error_of(
        service.post(
            f"/projects/{pid}/groups", {"name": unique("g"), "variables": {"ansible_become_user": 0}}
        )
    )
    assert error["field"] == "variables.ansible_become_user" and "string" in error["message"]
    account = service.post(
        f"/projects/{pid}/accounts", {**base, "become_user": "svc@corp.example"}, 201
    ).get_json()
    assert account["become_user"] == "svc@corp.example"
    response = service.api(
        "PATCH", f"/projects/{pid}/accounts/{account['id']}", json={"become_user": "x$(id)"}
    )
    assert error_of(response)["field"] == "become_user"
    imported = service.post(
        f"/projects/{pid}/inventories/import",
        {"format": "ini", "content": "web1 ansible_host=10.0.0.1 ansible_become_user='$(touch pwned)'\n"},
    )
    assert error_of(imported)["field"] == "hosts.web1.variables.ansible_become_user"
    assert not [h for h in service.get(f"/projects/{pid}/hosts") if h["name"] == "web1"]


def test_interpreters_are_commands_without_shell_syntax(service, project):
    pid = project["id"]
    for name in ("ansible_python_interpreter", "ansible_shell_executable"):
        for bad in ["/usr/bin/python3; touch pwned", "$(id)", "/bin/sh  -x", "`id`", "a|b", ""]:
            host = {"name": unique("h"), "address": "10.0.0.1", "variables": {name: bad}}
            assert error_of(service.post(f"/projects/{pid}/hosts", host))["field"] == f"variables.{name}", bad
    good = {"ansible_python_interpreter": "/usr/bin/env python3", "ansible_shell_executable": "/bin/bash"}
    host = {"name": unique("h"), "address": "10.0.0.1", "variables": good}
    assert service.post(f"/projects/{pid}/hosts", host, expect=201).get_json()["variables"] == good


def test_ansible_s_own_keys_are_refused_in_variables(service, project):
    pid = project["id"]
    host = {
        "name": unique("h"),
        "address": "10.0.0.1",
        "variables": {"cfg": {"list": [{"__ansible_vault": "x"}]}},
    }
    assert (
        error_of(service.post(f"/projects/{pid}/hosts", host))["field"]
        == "variables.cfg.list.0.__ansible_vault"
    )
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": "- hosts: all\n  tasks: []\n", "extra_vars": {"__ansible_unsafe": "x"}},
        "targets": {"hosts": [1]},
    }
    template = {"name": unique("t"), "steps": [step]}
    error = error_of(service.post(f"/projects/{pid}/job-templates", template))
    assert error["field"].endswith("extra_vars.__ansible_unsafe"), error


def test_a_become_user_stored_before_the_check_runs_nothing(service, project, lab, tmp_path):
    pid = project["id"]
    [host] = add_hosts(service, project, lab, 1)
    account = become_account(service, pid, lab)
    proof = tmp_path / "pwned"
    db.session.execute(
        update(AccountRow).where(AccountRow.id == account["id"]).values(become_user=f"$(touch {proof})")
    )
    db.session.commit()
    job = run_script(service, project, [host], "id -un", account_id=account["id"], timeout=60)
    done = service.wait_job(pid, job["id"])
    [result] = service.host_results(pid, job["id"])
    assert done["status"] == "failed" and result["status"] == "failed", result
    assert not proof.exists()


def test_values_reach_the_host_unchanged(service, project, account, lab, tmp_path):
    """As a host variable, a group variable, a playbook extra var, a global variable and a script
    parameter, each value arrives as it was given, and every task ran."""
    pid = project["id"]
    [host] = add_hosts(service, project, lab, 1)
    service.api("PATCH", f"/projects/{pid}/hosts/{host['id']}", 200, json={"variables": {"values": VALUES}})
    group = {"name": unique("g"), "hosts": [host["id"]], "variables": {"group_values": VALUES}}
    service.post(f"/projects/{pid}/groups", group, expect=201)
    playbook = """\
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        content: "{{ {'host': values, 'group': group_values, 'extra': extra_values, 'global': global_values,
                      'star': star} | to_json }}"
"""
    one_line = [value for value in VALUES if "\n" not in value]
    targets = {"hosts": [host["id"]]}
    steps = [
        {
            "key": "play",
            "name": "play",
            "type": "playbook",
            "playbook": {
                "content": playbook,
                "extra_vars": {"extra_values": VALUES, "out_dir": str(tmp_path)},
            },
            "targets": targets,
            "account_id": account["id"],
            "timeout": 120,
        },
        {
            "key": "script",
            "name": "script",
            "type": "script",
            "script": {
                "language": "python",
                "content": "import json, os, sys\n"
                "print(json.dumps({'params': sys.argv[1:], 'star': os.environ['star'],"
                " 'global': os.environ['global_values']}))\n",
                "params": VALUES,
            },
            "targets": targets,
            "account_id": account["id"],
            "timeout": 120,
        },
    ]
    variables = [
        {"name": "global_values", "type": "array", "default": one_line},
        {"name": "star", "type": "string", "default": "*"},
    ]
    template = service.post(
        f"/projects/{pid}/job-templates",
        {"name": unique("t"), "steps": steps, "variables": variables},
        expect=201,
    ).get_json()
    job = service.post(
        f"/projects/{pid}/job-templates/{template['id']}/launch", {"variables": {}}, 202
    ).get_json()
    done = service.wait_job(pid, job["id"], timeout=240)
    assert done["status"] == "success", service.host_results(pid, job["id"])
    written = json.loads((tmp_path / f"{host['name']}.json").read_text(encoding="utf-8"))
    assert written == {"host": VALUES, "group": VALUES, "extra": VALUES, "global": one_line, "star": "*"}
    script = next(step for step in done["steps"] if step["name"] == "script")
    [result] = service.host_results(pid, job["id"], step=script["id"])
    assert json.loads(result["stdout"]) == {"params": VALUES, "star": "*", "global": "\n".join(one_line)}


def test_a_transfer_source_glob_reaches_every_file(service, project, account, lab, tmp_path):
    pid = project["id"]
    source_host, target_host = add_hosts(service, project, lab, 2)
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    names = ["a.txt", "b c.log", "ü ✓.txt", "- dash", "{{ x }}"]
    for name in names:
        (source / name).write_text(f"content of {name}\n", encoding="utf-8")
    body = {
        "sources": [
            {
                "path": f"{source}/*",
                "source_hosts": {"hosts": [source_host["id"]]},
                "account_id": account["id"],
            }
        ],
        "target_path": str(target),
        "targets": {"hosts": [target_host["id"]]},
        "account_id": account["id"],
        "mode": "force",
        "timeout": 120,
    }
    job = transfer(service, project, body)
    done = service.wait_job(pid, job["id"], timeout=240)
    assert done["status"] == "success", file_results(service, project, job["id"])
    assert sorted(path.name for path in target.iterdir()) == sorted(names)
    for name in names:
        assert (target / name).read_text(encoding="utf-8") == f"content of {name}\n"


def test_one_host_s_become_failure_stays_its_own(service, project, lab):
    """A local host whose become fails, next to an SSH host: the SSH host reads its own result."""
    pid = project["id"]
    failing = add_local_host(service, project, unique("local"))
    # su to an account without a login shell fails: "Premature end of stream waiting for become success".
    service.api(
        "PATCH",
        f"/projects/{pid}/hosts/{failing['id']}",
        200,
        json={"variables": {"ansible_become_user": "nobody"}},
    )
    [remote] = add_hosts(service, project, lab, 1)
    account = become_account(service, pid, lab)
    job = run_script(service, project, [failing, remote], "id -un", account_id=account["id"], timeout=60)
    service.wait_job(pid, job["id"])
    results = {result["host_name"]: result for result in service.host_results(pid, job["id"])}
    assert results[failing["name"]]["status"] == "failed"
    assert "become" in results[failing["name"]]["error"]
    assert (results[remote["name"]]["status"], results[remote["name"]]["stdout"]) == ("success", "root\n")


def test_a_failing_local_play_leaves_the_ssh_hosts_their_results(service, project, account, lab):
    """Every host of one connection failing does not keep the others from running."""
    pid = project["id"]
    local = add_local_host(service, project, unique("local"))
    [remote] = add_hosts(service, project, lab, 1)
    # Sessions of the lab's sshd have a home of their own; the controller's does not match it.
    script = f'[ "$HOME" = "{lab.home}" ] || exit 3; echo ran'
    job = run_script(service, project, [local, remote], script, account_id=account["id"], timeout=60)
    service.wait_job(pid, job["id"])
    statuses = {
        result["host_name"]: (result["status"], result["exit_code"])
        for result in service.host_results(pid, job["id"])
    }
    assert statuses == {local["name"]: ("failed", 3), remote["name"]: ("success", 0)}


def test_a_playbook_ansible_cannot_load_does_not_read_success(service, project, account, lab):
    pid = project["id"]
    [host] = add_hosts(service, project, lab, 1)
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": "- hosts: all\n  tasks:\n    - no_such_module_anywhere: {}\n"},
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
        "timeout": 60,
    }
    template = service.post(
        f"/projects/{pid}/job-templates", {"name": unique("t"), "steps": [step]}, 201
    ).get_json()
    job = service.post(
        f"/projects/{pid}/job-templates/{template['id']}/launch", {"variables": {}}, 202
    ).get_json()
    done = service.wait_job(pid, job["id"])
    [result] = service.host_results(pid, job["id"])
    assert done["status"] == "abnormal" and result["status"] == "abnormal", result
    assert "no_such_module_anywhere" in result["error"]
