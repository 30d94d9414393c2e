"""The compiler: a step and its hosts in, playbook and inventory data out.

Pure functions over plain data, so they are tested without hosts. User content
(script bodies, parameters, variable values) is wrapped in `Unsafe`, which the
writer marks as Ansible's unsafe data: Ansible never evaluates it as a Jinja
template, so `{{ lookup('pipe', 'id') }}` reaches a host as those characters.

A script reaches a host in one `raw` task: one remote command that decodes the
script from base64 into a private temporary directory, runs it, and removes it
(bench/script_delivery.py measures this against the `script` module). A script
too large for one command line goes through the `script` module instead.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from app.models.inventory import Connection

# Linux refuses a single argument of 128 KiB or more (MAX_ARG_STRLEN), and ssh receives
# the whole raw command, quoted once more for a shell (twice with become), as one argument.
RAW_COMMAND_MAX_BYTES = 96 * 1024

# Ansible's JSON reader takes a mapping holding one of these keys for a value of its own kind, and
# reads the whole file as YAML instead (every string trusted) when that value is not what it expects.
ANSIBLE_JSON_KEYS = ("__ansible_unsafe", "__ansible_vault", "__ansible_type")

# One group per way of reaching hosts: the command that runs a script differs between them.
GROUPS = {Connection.SSH: "opsflow_ssh", Connection.LOCAL: "opsflow_local", Connection.WINRM: "opsflow_winrm"}


@dataclass(frozen=True)
class Interpreter:
    command: str
    suffix: str


INTERPRETERS: dict[str, Interpreter] = {
    "shell": Interpreter("sh", ".sh"),
    "bash": Interpreter("bash", ".sh"),
    "python": Interpreter("python3", ".py"),
    "perl": Interpreter("perl", ".pl"),
    "powershell": Interpreter("pwsh -NoLogo -NoProfile -NonInteractive -File", ".ps1"),
}
LANGUAGES = tuple(INTERPRETERS)


class Unsafe(str):
    """A string Ansible must take literally."""

    __slots__ = ()


@dataclass(frozen=True)
class Account:
    username: str
    become: bool = False
    become_method: str = "sudo"
    become_user: str = "root"


@dataclass(frozen=True)
class Target:
    name: str
    address: str
    port: int | None = None
    connection: str = Connection.SSH
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScriptStep:
    language: str
    content: str
    params: list[str] = field(default_factory=list)
    # Environment variables of the script on every host; names are identifiers, values data.
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledStep:
    """What one run needs: the playbook, the inventory, and files beside the playbook.

    A user's playbook comes as `playbook_text`, written as it is rather than `playbook` dumped.
    `extra_vars` go to ansible-playbook with `-e`, and `options` are its command-line arguments.
    A `task_count` other than 1 means several tasks per host, whose recap decides each host's status.
    `on_controller` says what of the run reads user-chosen files of the controller, if anything does.
    """

    playbook: list[dict[str, Any]]
    inventory: dict[str, Any]
    files: dict[str, bytes]
    task_count: int
    playbook_text: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    on_controller: str | None = None
    # A repository's playbook runs in its revision's directory (workdir), by its path there, with the
    # repository's inventory file when it names one, and these variables set (None: unset).
    workdir: str | None = None
    playbook_path: str | None = None
    inventory_file: str | None = None
    environment: dict[str, str | None] = field(default_factory=dict)


def unsafe(value: Any) -> Any:
    """Value with every string in it marked as literal data; ValueError for a mapping that holds one
    of Ansible's own JSON keys, which no data can carry."""
    if isinstance(value, str):
        return Unsafe(value)
    if isinstance(value, dict):
        refused = next((key for key in value if key in ANSIBLE_JSON_KEYS), None)
        if refused:
            raise ValueError(f"{refused} is a key of Ansible's own: no value may hold a mapping with it")
        return {key: unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe(item) for item in value]
    return value


def posix_command(step: ScriptStep, over_ssh: bool) -> str:
    """The one shell command that delivers, runs and removes a script.

    The script runs in a session of its own (setsid). Over SSH a watcher waits
    for the connection's stdin to close, which happens when the controller ends
    the run (cancel, timeout) or dies, and then kills the script's whole process
    group, so nothing keeps running on the host. Locally, the run's marker
    already reaches every process.
    """
    interpreter = INTERPRETERS[step.language]
    payload = base64.b64encode(step.content.encode()).decode()
    args = " ".join(shlex.quote(param) for param in step.params)
    script = f'"$d/script{interpreter.suffix}"'
    command = posix_exports(step.environment) + (
        "d=$(mktemp -d) || exit 125; "
        f"printf %s '{payload}' | base64 -d > {script} || {{ rm -rf \"$d\"; exit 125; }}; "
    )
    if not over_ssh:
        return command + f'{interpreter.command} {script} {args}; rc=$?; rm -rf "$d"; exit $rc'
    return command + (
        # A background job's stdin is /dev/null unless redirected, so the watcher reads a copy on fd 3.
        "exec 3<&0; s=; command -v setsid >/dev/null 2>&1 && s=setsid; "
        f"$s {interpreter.command} {script} {args} </dev/null 3<&- & p=$!; "
        "{ cat <&3; kill -TERM -$p || kill -TERM $p; sleep 5; kill -KILL -$p || kill -KILL $p; } "
        ">/dev/null 2>&1 & "
        "w=$!; exec 3<&-; "
        'wait $p; rc=$?; kill $w 2>/dev/null; rm -rf "$d"; exit $rc'
    )


def posix_exports(environment: dict[str, str]) -> str:
    """Shell statements that export these variables, each value quoted as one literal word."""
    return "".join(f"export {name}={shlex.quote(value)}; " for name, value in environment.items())


def powershell_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def powershell_exports(environment: dict[str, str]) -> str:
    return "".join(f"$env:{name} = {powershell_quote(value)}; " for name, value in environment.items())


def windows_command(step: ScriptStep) -> str:
    """The PowerShell command that delivers, runs and removes a script on a Windows host."""
    payload = base64.b64encode(step.content.encode()).decode()
    args = " ".join(powershell_quote(param) for param in step.params)
    return powershell_exports(step.environment) + (
        "$d = Join-Path $env:TEMP ([guid]::NewGuid()); New-Item -ItemType Directory $d | Out-Null; "
        "$f = Join-Path $d 'script.ps1'; "
        f"[IO.File]::WriteAllBytes($f, [Convert]::FromBase64String('{payload}')); "
        f"& powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File $f {args}; "
        "$rc = $LASTEXITCODE; Remove-Item -Recurse -Force $d; exit $rc"
    )


def script_task(
    step: ScriptStep, connections: list[str], files: dict[str, bytes], per_host: bool = False
) -> dict[str, Any]:
    """The one task that runs the script on hosts of every connection: `raw` when each command fits
    one command line, else `script`.

    Where the hosts have more than one connection, each connection's command is a task variable
    marked unsafe, picked by the host's `ansible_connection`, so one play reaches every host: Ansible
    ends a playbook after a play in which every host failed, and the hosts of a later play would never
    run. Where they share one (the usual slice), the command is the task's own literal argument: a
    template costs each of Ansible's forks its compilation, a third more of a fork's CPU for a short
    script. With `per_host`, each host also exports its own variables (its `opsflow_environment` host
    variable), joined to the command by a template that only names variables, so none is evaluated.
    """
    commands = {
        str(connection): windows_command(step)
        if connection == Connection.WINRM
        else posix_command(step, connection == Connection.SSH)
        for connection in connections
    }
    if max(len(command.encode()) for command in commands.values()) <= RAW_COMMAND_MAX_BYTES:
        if len(commands) == 1 and not per_host:
            return {"name": "run script", "raw": unsafe(next(iter(commands.values())))}
        exports = "{{ opsflow_environment }}" if per_host else ""
        return {
            "name": "run script",
            "raw": exports + "{{ opsflow_commands[ansible_connection] }}",
            "vars": {"opsflow_commands": unsafe(commands)},
        }
    scripts = {str(connection): script_file(step, connection, files) for connection in connections}
    task: dict[str, Any] = {"name": "run script"}
    if len(scripts) == 1:
        task["script"] = unsafe(next(iter(scripts.values())))
    else:
        task["script"] = {
            "cmd": "{{ opsflow_scripts[ansible_connection].cmd }}",
            "executable": "{{ opsflow_scripts[ansible_connection].executable | default(omit) }}",
        }
        task["vars"] = {"opsflow_scripts": unsafe(scripts)}
    if step.environment or per_host:
        task["environment"] = "{{ opsflow_environment_vars }}" if per_host else unsafe(step.environment)
    return task


def script_file(step: ScriptStep, connection: str, files: dict[str, bytes]) -> dict[str, str]:
    """The `script` module's command line (and interpreter, but on Windows) for hosts of one
    connection; the script goes into `files` beside the playbook."""
    windows = connection == Connection.WINRM
    filename = "script" + (".ps1" if windows else INTERPRETERS[step.language].suffix)
    files[filename] = step.content.encode()
    quote = powershell_quote if windows else shlex.quote
    arguments = {"cmd": " ".join([filename, *(quote(param) for param in step.params)])}
    if not windows:
        arguments["executable"] = INTERPRETERS[step.language].command
    return arguments


def compile_script(
    step: ScriptStep,
    targets: list[Target],
    account: Account | None,
    host_environment: dict[str, dict[str, str]] | None = None,
) -> CompiledStep:
    """Playbook and inventory that run one script on every target; `host_environment` holds the
    variables each host has a value of its own for, by target name."""
    files: dict[str, bytes] = {}
    if host_environment:
        targets = [
            with_environment(target, step, host_environment.get(target.name, {})) for target in targets
        ]
    by_connection = _by_connection(targets)
    task = script_task(step, list(by_connection), files, per_host=bool(host_environment))
    playbook = [{"name": "script", "hosts": "all", "gather_facts": False, "tasks": [task]}]
    groups = {GROUPS[connection]: members for connection, members in by_connection.items()}
    return CompiledStep(playbook, inventory(groups, account), files, task_count=1)


def with_environment(target: Target, step: ScriptStep, own: dict[str, str]) -> Target:
    """The target with its own variables as host variables: export statements for a `raw` command,
    and every variable for the `script` module's environment."""
    exports = powershell_exports(own) if target.connection == Connection.WINRM else posix_exports(own)
    variables = {
        **target.variables,
        "opsflow_environment": exports,
        "opsflow_environment_vars": {**step.environment, **own},
    }
    return replace(target, variables=variables)


def compile_connection_test(targets: list[Target], account: Account | None) -> CompiledStep:
    """Playbook and inventory that log in to every target and run a no-op command there.

    A `raw` no-op needs nothing on the host but its shell (PowerShell on Windows), as a script
    run does, so a host this reaches is a host scripts can run on; with become, it checks become too.
    """
    playbook = [
        {
            "name": "reachability",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"name": "connect", "raw": "exit 0"}],
        }
    ]
    groups = {GROUPS[connection]: members for connection, members in _by_connection(targets).items()}
    return CompiledStep(playbook, inventory(groups, account), {}, task_count=1)


def _by_connection(targets: list[Target]) -> dict[str, list[Target]]:
    by_connection: dict[str, list[Target]] = {}
    for target in targets:
        by_connection.setdefault(target.connection, []).append(target)
    return by_connection


def become_user(name: Any) -> Unsafe:
    """A become user as it must reach Ansible, which pastes it unquoted into `sudo -u`, `su` and
    `doas -u`: quoted for the shell. A valid user name needs no quotes and is unchanged; anything
    else stays one word, which names no user."""
    return Unsafe(shlex.quote(str(name)))


def host_vars(target: Target) -> dict[str, Any]:
    values = unsafe(dict(target.variables))
    if "ansible_become_user" in values:
        values["ansible_become_user"] = become_user(values["ansible_become_user"])
    values["ansible_host"] = Unsafe(target.address)
    values["ansible_connection"] = str(target.connection)
    if target.port:
        values["ansible_port"] = target.port
    return values


def login_vars(account: Account | None) -> dict[str, Any]:
    """Variables every host of a run shares: how Ansible logs in and becomes another user.

    Without an account (local hosts only), Ansible runs as the service's own user.
    """
    # Without a tty, ssh keeps the remote stderr apart from stdout.
    common: dict[str, Any] = {"ansible_ssh_use_tty": False}
    if account is None:
        return common
    common["ansible_user"] = Unsafe(account.username)
    if account.become:
        common.update(
            ansible_become=True,
            ansible_become_method=Unsafe(account.become_method),
            ansible_become_user=become_user(account.become_user),
        )
    return common


def inventory(groups: dict[str, list[Target]], account: Account | None) -> dict[str, Any]:
    """Inventory data: every target under its group, the account as group-wide variables."""
    return {
        "all": {
            "vars": login_vars(account),
            "children": {
                group: {"hosts": {target.name: host_vars(target) for target in members}}
                for group, members in groups.items()
            },
        }
    }


def _marked(value: Any) -> Any:
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, dict):
        return {key: _marked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(item) for item in value]
    return value


def to_ansible(data: Any) -> str:
    """Text of compiled data for Ansible (playbook, inventory, extra vars): JSON, which Ansible reads
    before it tries YAML, with each `Unsafe` string written as `{"__ansible_unsafe": ...}`.

    Not YAML's `!unsafe` tag: Ansible resolves a tagged scalar again as if it were plain, so
    `!unsafe ''` loads as null, `!unsafe 'yes'` as true, `!unsafe '0x1'` as 1 and `!unsafe '*'`
    not at all. The JSON form keeps every string's characters and keeps it unsafe.
    """
    return json.dumps(_marked(data), ensure_ascii=False, allow_nan=False, indent=1)
