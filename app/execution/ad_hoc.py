"""The compiler of ad-hoc commands: one module on hosts, as `ansible HOSTS -m MODULE -a ARGS` runs it.

`ansible` builds a one-task play and runs it; so does Opsflow, through the same runner, callback plugin and
ingester as a script. The arguments are data: given as a string, they are split into `key=value` options
as `ansible -a` splits them (a free-form module such as `command` keeps its command line whole), and every
string of them is marked unsafe, so that `{{ lookup('pipe', 'id') }}` reaches the module as those characters.
Pure functions over plain data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from app.execution.compiler import GROUPS, Account, CompiledStep, Target, _by_connection, inventory, unsafe

# ansible.builtin's spellings a module name may carry.
BUILTIN_PREFIXES = ("ansible.builtin.", "ansible.legacy.")
# Modules whose string arguments are a command line, kept whole (`ansible` calls them MODULE_REQUIRE_ARGS).
FREE_FORM = frozenset({"command", "shell", "raw", "script"})
# A module's name, as Ansible spells it: words joined by dots (a collection's modules carry its name).
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# An option a module takes: a word. `_raw_params` is a free-form module's command line; the other names that
# start with `_` are Ansible's own (`_ansible_*`), which no request sets.
OPTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RAW_PARAMS = "_raw_params"
# The task variable that tells the callback plugin to show the module's result as `ansible` does.
AD_HOC_VAR = "opsflow_ad_hoc"
# Modules that read files of the controller: copy, unless its source is on the host.
READS_CONTROLLER = frozenset({"copy", "template", "unarchive", "script"})


@dataclass(frozen=True)
class AdHocCommand:
    module: str
    # As parsed (parse_args): the module's options, `_raw_params` for a free-form command line.
    args: dict[str, Any] = field(default_factory=dict)
    check: bool = False
    diff: bool = False


def short_name(module: str) -> str:
    """`ansible.builtin.copy` and `ansible.legacy.copy` are `copy`; other names stay as they are."""
    for prefix in BUILTIN_PREFIXES:
        if module.startswith(prefix):
            return module.removeprefix(prefix)
    return module


def allowed(module: str, modules: tuple[str, ...]) -> bool:
    """Whether `module` is one of `modules`, by its own name or as ansible.builtin's."""
    return MODULE_NAME.match(module) is not None and (module in modules or short_name(module) in modules)


def parse_args(module: str, args: str | dict[str, Any] | None) -> dict[str, Any]:
    """The module's options from the request's `args`, or ValueError saying what is wrong.

    A mapping is the options themselves. A string is read as `ansible -a` reads it: JSON when it is a JSON
    object, else `key=value` words (quotes group words; a free-form module keeps its command line as
    `_raw_params`, its own options such as `chdir=` apart).
    """
    if args is None or args == "":
        options: dict[str, Any] = {}
    elif isinstance(args, dict):
        options = dict(args)
    elif isinstance(args, str):
        options = _parse_string(module, args)
    else:
        raise ValueError("args is a string of key=value options, or an object of them")
    for name in options:
        if not isinstance(name, str) or not (OPTION_NAME.match(name) or name == RAW_PARAMS):
            raise ValueError(f"{name!r} is not an option name: letters, digits and _, starting with a letter")
    if RAW_PARAMS in options and not isinstance(options[RAW_PARAMS], str):
        raise ValueError(f"{RAW_PARAMS} is a command line: a string")
    if short_name(module) in FREE_FORM and not (
        options.get(RAW_PARAMS) or options.get("cmd") or options.get("argv")
    ):
        raise ValueError(f'{short_name(module)} needs a command: args such as "uptime"')
    # Every string marked unsafe, and no mapping with Ansible's own JSON keys (ValueError).
    unsafe(options)
    return options


def _parse_string(module: str, text: str) -> dict[str, Any]:
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            loaded = json.loads(stripped)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            return loaded
    # Ansible's own splitter, imported here: only a launch and a worker need it.
    from ansible.errors import AnsibleError
    from ansible.parsing.splitter import parse_kv

    try:
        parsed = parse_kv(text, check_raw=short_name(module) in FREE_FORM)
    except AnsibleError as exc:
        raise ValueError(f"args cannot be split into options: {exc.message}") from None
    return {str(key): str(value) for key, value in parsed.items()}


def command_text(args: dict[str, Any]) -> str | None:
    """The command line a free-form module runs, as text the dangerous-command rules read."""
    if isinstance(args.get(RAW_PARAMS), str):
        return args[RAW_PARAMS]
    if isinstance(args.get("cmd"), str):
        return args["cmd"]
    if isinstance(args.get("argv"), list):
        return " ".join(str(word) for word in args["argv"])
    return None


def reads_controller(module: str, args: dict[str, Any]) -> bool:
    """Whether the module reads a file of the controller: copy from `src` (unless `remote_src`), and the
    like. A free-form `script` runs a controller file on the host."""
    name = short_name(module)
    if name not in READS_CONTROLLER:
        return False
    if name == "copy":
        return "src" in args and str(args.get("remote_src", "")).lower() not in ("true", "yes", "1", "on")
    if name == "unarchive":
        return str(args.get("remote_src", "")).lower() not in ("true", "yes", "1", "on")
    return True


def controller_use(module: str, args: dict[str, Any]) -> str | None:
    """What of the command reads the controller's files (and so runs only in a sandbox), if anything."""
    if reads_controller(module, args):
        return f"ad-hoc {short_name(module)} from files of the controller"
    return None


def ad_hoc_task(command: AdHocCommand) -> dict[str, Any]:
    """The one task, built as `ansible` builds it: `action` names the module, `args` its options."""
    return {
        "name": command.module,
        "action": command.module,
        "args": unsafe(command.args),
        "vars": {AD_HOC_VAR: True},
    }


def compile_ad_hoc(command: AdHocCommand, targets: list[Target], account: Account | None) -> CompiledStep:
    """Playbook and inventory that run the module once on every target, with `--check` and `--diff` as
    asked; the account's become, or the request's, is in `account`."""
    playbook = [{"name": "ad-hoc", "hosts": "all", "gather_facts": False, "tasks": [ad_hoc_task(command)]}]
    groups = {GROUPS[connection]: members for connection, members in _by_connection(targets).items()}
    options = [flag for flag, on in (("--check", command.check), ("--diff", command.diff)) if on]
    return CompiledStep(
        playbook,
        inventory(groups, account),
        {},
        task_count=1,
        options=options,
        on_controller=controller_use(command.module, command.args),
    )
