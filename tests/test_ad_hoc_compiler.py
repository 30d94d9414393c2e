"""The ad-hoc compiler is pure: a module and its arguments in, a one-task playbook out."""

from __future__ import annotations

import pytest

from app.config import AD_HOC_MODULES_DEFAULT, ad_hoc_modules
from app.execution.ad_hoc import (
    AD_HOC_VAR,
    AdHocCommand,
    allowed,
    command_text,
    compile_ad_hoc,
    controller_use,
    parse_args,
)
from app.execution.compiler import Account, Target, to_ansible
from app.execution.ingest import error_of, host_status, task_row
from app.execution.runner import runs_on_controller
from app.models import HostStatus
from tests.test_compiler import INJECTION, load

TARGETS = [Target("web1", "10.0.0.1", 2222), Target("here", "127.0.0.1", connection="local")]


def test_string_args_split_as_ansible_splits_them():
    assert parse_args("file", 'path=/tmp/a state=touch mode="0644"') == {
        "path": "/tmp/a",
        "state": "touch",
        "mode": "0644",
    }
    # A free-form module keeps its command line whole, its own options apart.
    assert parse_args("shell", "echo a=b | wc -c chdir=/tmp") == {
        "_raw_params": "echo a=b | wc -c",
        "chdir": "/tmp",
    }
    assert parse_args("ansible.builtin.command", f"echo {INJECTION}") == {"_raw_params": f"echo {INJECTION}"}
    assert parse_args("copy", '{"content": "x", "dest": "/tmp/x"}') == {"content": "x", "dest": "/tmp/x"}
    assert parse_args("stat", {"path": "/etc", "get_checksum": False}) == {
        "path": "/etc",
        "get_checksum": False,
    }
    assert parse_args("ping", None) == parse_args("ping", "") == {}


@pytest.mark.parametrize(
    ("module", "args", "reason"),
    [
        ("command", "", "needs a command"),
        ("shell", {"chdir": "/tmp"}, "needs a command"),
        ("shell", 'echo "open', "cannot be split"),
        ("copy", {"_ansible_check_mode": False}, "not an option name"),
        ("copy", {"dest": {"__ansible_unsafe": "x"}}, "a key of Ansible's own"),
        ("command", {"_raw_params": ["ls"]}, "a string"),
        ("ping", 42, "a string of key=value"),
    ],
)
def test_bad_args_say_why(module, args, reason):
    with pytest.raises(ValueError, match=reason):
        parse_args(module, args)


def test_allowed_modules_by_name_or_as_ansible_builtin():
    modules = ("ping", "copy", "community.general.ufw")
    assert allowed("ping", modules) and allowed("ansible.builtin.copy", modules)
    assert allowed("community.general.ufw", modules)
    assert not allowed("raw", modules) and not allowed("ansible.builtin.raw", modules)
    assert not allowed("ping; id", modules) and not allowed("", modules)
    assert ad_hoc_modules(None) == ad_hoc_modules(" ") == AD_HOC_MODULES_DEFAULT
    assert ad_hoc_modules("ping, command  ping community.general.ufw") == (
        "ping",
        "command",
        "community.general.ufw",
    )
    with pytest.raises(ValueError, match="OPSFLOW_AD_HOC_MODULES"):
        ad_hoc_modules("ping,bad name;")


def test_one_task_with_its_args_as_unsafe_data():
    command = AdHocCommand(
        "shell", parse_args("shell", f"echo {INJECTION} chdir=/tmp"), check=True, diff=True
    )
    compiled = compile_ad_hoc(command, TARGETS, Account("deploy", become=True))
    [play] = load(to_ansible(compiled.playbook))
    assert (play["hosts"], play["gather_facts"]) == ("all", False)
    [task] = play["tasks"]
    assert task["action"] == "shell" and task["name"] == "shell"
    assert task["args"] == {"_raw_params": ("UNSAFE", f"echo {INJECTION}"), "chdir": ("UNSAFE", "/tmp")}
    assert task["vars"] == {AD_HOC_VAR: True}
    assert compiled.options == ["--check", "--diff"] and compiled.task_count == 1
    inventory = load(to_ansible(compiled.inventory))["all"]
    assert inventory["vars"]["ansible_become"] is True
    assert set(inventory["children"]) == {"opsflow_ssh", "opsflow_local"}
    nested = compile_ad_hoc(
        AdHocCommand("copy", {"content": INJECTION, "dest": "/x", "mode": 420}), TARGETS, None
    )
    args = load(to_ansible(nested.playbook))[0]["tasks"][0]["args"]
    assert args == {"content": ("UNSAFE", INJECTION), "dest": ("UNSAFE", "/x"), "mode": 420}
    assert compile_ad_hoc(AdHocCommand("ping"), TARGETS, None).options == []


def test_reading_the_controllers_files_runs_only_in_a_sandbox():
    from_controller = AdHocCommand("copy", {"src": "/etc/hostname", "dest": "/tmp/h"})
    assert (
        controller_use(from_controller.module, from_controller.args)
        == "ad-hoc copy from files of the controller"
    )
    assert runs_on_controller(compile_ad_hoc(from_controller, TARGETS[:1], None)) == controller_use(
        from_controller.module, from_controller.args
    )
    for args in (
        {"content": "x", "dest": "/tmp/h"},
        {"src": "/etc/hostname", "dest": "/tmp/h", "remote_src": True},
    ):
        assert controller_use("ansible.builtin.copy", args) is None
    assert runs_on_controller(compile_ad_hoc(AdHocCommand("ping"), TARGETS[:1], None)) is None


def test_command_text_is_what_the_rules_read():
    assert command_text({"_raw_params": "mkfs /dev/sdz"}) == "mkfs /dev/sdz"
    assert command_text({"cmd": "ls"}) == "ls"
    assert command_text({"argv": ["rm", "-rf", "/"]}) == "rm -rf /"
    assert command_text({"path": "/"}) is None


def test_task_rows_and_host_statuses_of_task_results():
    event = {
        "seq": 3,
        "task": "greet",
        "role": "greeter",
        "action": "command",
        "outcome": "rescued",
        "changed": True,
        "rc": 1,
        "stdout": "",
        "stderr": "",
        "msg": "non-zero return code",
        "diff": "--- before\n+++ after\n",
        "start": 1.0,
        "end": 2.5,
    }
    row = task_row(7, event)
    assert (row["role"], row["changed"], row["diff"], row["outcome"]) == (
        "greeter",
        True,
        event["diff"],
        "rescued",
    )
    # Events of a plugin that sent none of the newer keys still make rows.
    old = task_row(7, {key: value for key, value in event.items() if key not in ("role", "changed", "diff")})
    assert (old["role"], old["changed"], old["diff"]) == (None, False, None)
    # A rescued failure keeps a playbook's host going and is no host's error.
    assert host_status("rescued", "non-zero return code", 0) == HostStatus.RUNNING
    assert error_of("rescued", "non-zero return code") is None
    assert error_of("failed", "non-zero return code") == "non-zero return code"
