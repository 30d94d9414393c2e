"""The compiler of playbook steps: a user's own playbook, run unchanged on the step's hosts.

The playbook text is the user's: its Jinja is theirs and Ansible evaluates it as usual, so it reaches
disk byte for byte. What Opsflow adds is data: the inventory (every host with its variables, and the
project's groups, so `hosts: web` and `groups['web']` mean what they mean in the user's own inventory)
and extra vars, whose every string is tagged `!unsafe`: an extra var holding
`{{ lookup('pipe', 'id') }}` reaches the playbook as those characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from app.config import PLAYBOOK_MAX_BYTES
from app.execution.compiler import Account, CompiledStep, Target, host_vars, login_vars, unsafe
from app.models.job import PLAYBOOK_TASKS

IMPORT_PLAYBOOK = ("import_playbook", "ansible.builtin.import_playbook", "ansible.legacy.import_playbook")
# Groups Ansible makes itself: `all` holds every host, `ungrouped` those in no other group.
IMPLICIT_GROUPS = ("all", "ungrouped")
VAULT_HEADER = "$ANSIBLE_VAULT;"
NO_VAULT = "Opsflow has no vault password to decrypt it"


@dataclass(frozen=True)
class PlaybookStep:
    """A stored playbook and how to run it: extra vars, tags, skip tags and a host limit."""

    content: str
    extra_vars: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    skip_tags: list[str] = field(default_factory=list)
    limit: str | None = None


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """yaml's safe loader with the two tags Ansible adds to YAML."""


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


def _refuse_vault(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise ValueError(
        f"the playbook has a vault-encrypted value at line {node.start_mark.line + 1}: {NO_VAULT}"
    )


_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _refuse_vault)


def check_playbook(content: str) -> list[dict[str, Any]]:
    """The plays of a playbook Ansible would load, or ValueError saying what is wrong and where.

    A stored playbook is one file, so `import_playbook` (which names another file) is refused.
    """
    size = len(content.encode())
    if size > PLAYBOOK_MAX_BYTES:
        raise ValueError(f"the playbook is {size} bytes; it may be {PLAYBOOK_MAX_BYTES} bytes at most")
    if content.lstrip().startswith(VAULT_HEADER):
        raise ValueError(f"the playbook is vault-encrypted: {NO_VAULT}")
    loader = _Loader(content)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ValueError(_yaml_message(content, exc)) from None
    except yaml.reader.ReaderError as exc:
        line = content.count("\n", 0, exc.position) + 1
        raise ValueError(
            f"the playbook is not valid YAML at line {line}: character #x{exc.character:04x}: {exc.reason}"
        ) from None
    finally:
        loader.dispose()
    if data is None:
        raise ValueError("the playbook is empty: it must be a list of plays")
    if not isinstance(data, list):
        raise ValueError(f"a playbook must be a list of plays, not a {_kind(data)}")
    if not data:
        raise ValueError("the playbook has no play: it must be a list of plays")
    for number, (play, play_node) in enumerate(zip(data, node.value, strict=True), start=1):
        problem = _play_problem(play)
        if problem:
            raise ValueError(f"play {number} (line {play_node.start_mark.line + 1}): {problem}")
    return data


def _yaml_message(content: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    reason = exc.problem or exc.context or "unreadable"
    if exc.problem and exc.context:
        reason += f" ({exc.context})"
    if mark is None:
        return f"the playbook is not valid YAML: {reason}"
    message = f"the playbook is not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {reason}"
    lines = content.splitlines()
    if mark.line < len(lines) and "{{" in lines[mark.line]:
        # Ansible's own hint for the most common mistake of all.
        message += "; a value that starts with {{ must be quoted"
    return message


def _play_problem(play: Any) -> str | None:
    """What keeps Ansible from loading one entry of a playbook as a play, if anything."""
    if not isinstance(play, dict):
        return f"a play must be a mapping, not a {_kind(play)}"
    imported = next((key for key in IMPORT_PLAYBOOK if key in play), None)
    if imported:
        return f"{imported} is not supported: a stored playbook is one file, with all its plays in it"
    if "hosts" not in play:
        return "a play needs hosts: the host pattern it runs on"
    hosts = play["hosts"]
    if not hosts:
        return "hosts is empty"
    patterns = hosts if isinstance(hosts, list) else [hosts]
    if not all(isinstance(pattern, str) for pattern in patterns):
        return "hosts must be a host pattern or a list of host patterns (strings)"
    return None


_KINDS = {
    type(None): "null",
    dict: "mapping",
    list: "list",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def playbook_inventory(
    targets: list[Target], groups: dict[str, list[str]], account: Account | None
) -> dict[str, Any]:
    """Inventory data: every target under `all.hosts` with its variables, and each project group
    with its members among the targets."""
    names = {target.name for target in targets}
    return {
        "all": {
            "vars": login_vars(account),
            "hosts": {target.name: host_vars(target) for target in targets},
            # A member outside the targets would join the inventory with no address.
            "children": {
                group: {"hosts": {member: None for member in members if member in names}}
                for group, members in groups.items()
                if group not in IMPLICIT_GROUPS
            },
        }
    }


def compile_playbook(
    step: PlaybookStep, targets: list[Target], groups: dict[str, list[str]], account: Account | None
) -> CompiledStep:
    """The run of a user's playbook on `targets`; `groups` maps a project group's name to the names of
    its members. The playbook is checked again (check_playbook), so a bad one fails with its reason."""
    check_playbook(step.content)
    # One argument each, joined by "=": a value that starts with "-" is not taken for an option.
    options: list[str] = []
    if step.tags:
        options.append("--tags=" + ",".join(step.tags))
    if step.skip_tags:
        options.append("--skip-tags=" + ",".join(step.skip_tags))
    if step.limit:
        options.append(f"--limit={step.limit}")
    return CompiledStep(
        playbook=[],
        inventory=playbook_inventory(targets, groups, account),
        files={},
        task_count=PLAYBOOK_TASKS,
        playbook_text=step.content,
        extra_vars=unsafe(step.extra_vars),
        options=options,
    )
