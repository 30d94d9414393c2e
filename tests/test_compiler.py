"""The compiler is pure: step and hosts in, playbook and inventory data out."""

from __future__ import annotations

import base64
import json
import re
import subprocess

from app.execution.compiler import (
    RAW_COMMAND_MAX_BYTES,
    Account,
    ScriptStep,
    Target,
    compile_script,
    posix_command,
    to_ansible,
)

INJECTION = "{{ lookup('pipe', 'id') }}"


def _unsafe_as_pair(pairs: dict):
    return ("UNSAFE", pairs["__ansible_unsafe"]) if "__ansible_unsafe" in pairs else pairs


def load(text: str):
    """Compiled data as written for Ansible, each unsafe string as ("UNSAFE", its text)."""
    return json.loads(text, object_hook=_unsafe_as_pair)


def test_user_content_is_tagged_unsafe_everywhere():
    step = ScriptStep("bash", f"echo {INJECTION}", [INJECTION])
    target = Target("web1", "10.0.0.1", 2222, "ssh", {"motd": INJECTION})
    compiled = compile_script(step, [target], Account("deploy", become=True))
    playbook = load(to_ansible(compiled.playbook))
    inventory = load(to_ansible(compiled.inventory))
    task = playbook[0]["tasks"][0]
    assert task["raw"][0] == "UNSAFE"
    host = inventory["all"]["children"]["opsflow_ssh"]["hosts"]["web1"]
    assert host["motd"] == ("UNSAFE", INJECTION)
    assert host["ansible_host"] == ("UNSAFE", "10.0.0.1")
    assert host["ansible_port"] == 2222
    assert inventory["all"]["vars"]["ansible_user"] == ("UNSAFE", "deploy")
    assert inventory["all"]["vars"]["ansible_become"] is True
    assert inventory["all"]["vars"]["ansible_ssh_use_tty"] is False


def test_script_travels_as_base64_and_params_are_quoted():
    content = "#!/bin/sh\nprintf '%s' \"$@\"\n\x01\xff bytes ✓"
    command = posix_command(ScriptStep("shell", content, ["a b", "it's", "$(id)"]), over_ssh=True)
    payload = re.search(r"printf %s '([A-Za-z0-9+/=]+)'", command).group(1)
    assert base64.b64decode(payload).decode() == content
    assert "'a b' 'it'\"'\"'s' '$(id)'" in command


def test_raw_command_runs_and_returns_exit_code_and_streams(tmp_path):
    step = ScriptStep("bash", 'echo "out $1"; echo "err $2" >&2; exit 5', ["one two", "$HOME"])
    result = subprocess.run(["sh", "-c", posix_command(step, over_ssh=False)], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (5, "out one two\n", "err $HOME\n")


def test_one_play_for_every_connection_each_with_its_command():
    step = ScriptStep("shell", "true")
    targets = [Target("a", "10.0.0.1"), Target("b", "127.0.0.1", connection="local")]
    compiled = compile_script(step, targets, None)
    [play] = compiled.playbook
    assert play["hosts"] == "all"
    [task] = play["tasks"]
    assert task["raw"] == "{{ opsflow_commands[ansible_connection] }}"
    assert task["vars"]["opsflow_commands"] == {
        "ssh": posix_command(step, over_ssh=True),
        "local": posix_command(step, over_ssh=False),
    }
    assert list(compiled.inventory["all"]["children"]) == ["opsflow_ssh", "opsflow_local"]
    assert "ansible_user" not in compiled.inventory["all"]["vars"]
    assert compiled.task_count == 1


def test_windows_hosts_get_powershell():
    compiled = compile_script(
        ScriptStep("powershell", "Write-Output $args[0]", ["it's"]),
        [Target("w", "10.0.0.9", connection="winrm")],
        Account("Administrator"),
    )
    command = compiled.playbook[0]["tasks"][0]["raw"]
    assert "FromBase64String" in command and "'it''s'" in command


def test_large_script_goes_through_the_script_module():
    content = "echo x\n" + "#" * RAW_COMMAND_MAX_BYTES
    compiled = compile_script(ScriptStep("bash", content, ["a b"]), [Target("a", "10.0.0.1")], Account("u"))
    task = compiled.playbook[0]["tasks"][0]
    assert "script" in task and "raw" not in task
    assert task["script"] == {"cmd": "script.sh 'a b'", "executable": "bash"}
    assert "vars" not in task
    assert compiled.files == {"script.sh": content.encode()}


def test_hosts_of_one_connection_get_their_command_as_it_is():
    """No template for Ansible's forks to compile: the command is the task's literal argument."""
    step = ScriptStep("shell", "echo {{ hi }}")
    [task] = compile_script(step, [Target("a", "10.0.0.1"), Target("b", "10.0.0.2")], None).playbook[0][
        "tasks"
    ]
    assert task == {"name": "run script", "raw": posix_command(step, over_ssh=True)}
    assert type(task["raw"]).__name__ == "Unsafe"


def test_a_large_script_on_hosts_of_two_connections_picks_its_arguments_by_connection():
    content = "echo x\n" + "#" * RAW_COMMAND_MAX_BYTES
    targets = [Target("a", "10.0.0.1"), Target("b", "127.0.0.1", connection="local")]
    task = compile_script(ScriptStep("bash", content), targets, None).playbook[0]["tasks"][0]
    assert task["script"]["cmd"] == "{{ opsflow_scripts[ansible_connection].cmd }}"
    assert task["vars"]["opsflow_scripts"] == {
        "ssh": {"cmd": "script.sh", "executable": "bash"},
        "local": {"cmd": "script.sh", "executable": "bash"},
    }
