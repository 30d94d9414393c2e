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


# What Ansible searches when no ansible.cfg says otherwise (its defaults for roles_path and
# collections_path): installed requirements are added to them, not put in their place.
DEFAULT_ROLES_PATH = ("~/.ansible/roles", "/usr/share/ansible/roles", "/etc/ansible/roles")
DEFAULT_COLLECTIONS_PATH = ("~/.ansible/collections", "/usr/share/ansible/collections")
# Opsflow's settings a repository's ansible.cfg keeps when it sets them itself: (section, key) -> variable.
LEFT_TO_THE_REPOSITORY = {
    ("defaults", "timeout"): "ANSIBLE_TIMEOUT",
    ("defaults", "interpreter_python"): "ANSIBLE_PYTHON_INTERPRETER",
}
MODES = ("run", "syntax_check", "list_tasks", "list_hosts")


@dataclass(frozen=True)
class RepositoryConfig:
    """What a repository's ansible.cfg sets that Opsflow's own environment would otherwise replace."""

    path: str | None = None
    callbacks_enabled: tuple[str, ...] = ()
    callback_plugins: tuple[str, ...] = ()
    roles_path: tuple[str, ...] | None = None
    collections_path: tuple[str, ...] | None = None
    kept: tuple[str, ...] = ()


def repository_config(text: str | None, workdir: str) -> RepositoryConfig:
    """Read an ansible.cfg as Ansible does (its relative paths are relative to the file's directory)."""
    if text is None:
        return RepositoryConfig()
    import configparser
    import posixpath

    parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return RepositoryConfig(path=posixpath.join(workdir, "ansible.cfg"))

    def value(section: str, key: str) -> str | None:
        return parser.get(section, key, fallback=None)

    def paths(key: str, *aliases: str) -> tuple[str, ...] | None:
        raw = next((value("defaults", name) for name in (key, *aliases) if value("defaults", name)), None)
        if raw is None:
            return None
        return tuple(
            entry if entry.startswith(("/", "~")) else posixpath.normpath(posixpath.join(workdir, entry))
            for entry in (part.strip() for part in raw.split(":"))
            if entry
        )

    callbacks = value("defaults", "callbacks_enabled") or value("defaults", "callback_whitelist") or ""
    return RepositoryConfig(
        path=posixpath.join(workdir, "ansible.cfg"),
        callbacks_enabled=tuple(name.strip() for name in callbacks.split(",") if name.strip()),
        callback_plugins=paths("callback_plugins") or (),
        roles_path=paths("roles_path"),
        collections_path=paths("collections_path", "collections_paths"),
        kept=tuple(
            variable for (section, key), variable in LEFT_TO_THE_REPOSITORY.items() if value(section, key)
        ),
    )


@dataclass(frozen=True)
class RepositoryPlaybook:
    """A playbook of a synced revision and how to run it."""

    workdir: str
    playbook: str
    inventory_file: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    skip_tags: list[str] = field(default_factory=list)
    limit: str | None = None
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    become: bool | None = None
    mode: str = "run"
    vault_id: str | None = None


def repository_environment(
    config: RepositoryConfig, callback_dir: str, requirements: dict[str, str]
) -> dict[str, str | None]:
    """The variables a run of a repository playbook sets beyond (None: unsets of) a run's usual ones: the
    repository's own callbacks and plugin paths with Opsflow's added, its installed requirements after
    its own search paths, and its ansible.cfg read from where it is."""
    environment: dict[str, str | None] = {
        "ANSIBLE_CONFIG": config.path,
        "ANSIBLE_CALLBACKS_ENABLED": ",".join([*config.callbacks_enabled, "opsflow"]),
        "ANSIBLE_CALLBACK_PLUGINS": ":".join([*config.callback_plugins, callback_dir]),
        # Opsflow's own action plugins serve its file transfers; a repository keeps its own.
        "ANSIBLE_ACTION_PLUGINS": None,
        **dict.fromkeys(config.kept),
    }
    if "roles" in requirements:
        environment["ANSIBLE_ROLES_PATH"] = ":".join(
            [*(config.roles_path or DEFAULT_ROLES_PATH), requirements["roles"]]
        )
    if "collections" in requirements:
        environment["ANSIBLE_COLLECTIONS_PATH"] = ":".join(
            [*(config.collections_path or DEFAULT_COLLECTIONS_PATH), requirements["collections"]]
        )
    return environment


def compile_repository_playbook(
    run: RepositoryPlaybook,
    targets: list[Target],
    groups: dict[str, list[str]],
    account: Account | None,
    config: RepositoryConfig,
    callback_dir: str,
    requirements: dict[str, str],
) -> CompiledStep:
    """The run of a repository's playbook in its revision's directory: its roles, plugins, variables and
    ansible.cfg apply as they do for ansible-playbook run there. Opsflow adds the inventory (the targets,
    or the repository's inventory file), the login, and its callback."""
    options: list[str] = []
    if run.tags:
        options.append("--tags=" + ",".join(run.tags))
    if run.skip_tags:
        options.append("--skip-tags=" + ",".join(run.skip_tags))
    if run.limit:
        options.append(f"--limit={run.limit}")
    if run.check:
        options.append("--check")
    if run.diff:
        options.append("--diff")
    if run.verbosity:
        options.append("-" + "v" * run.verbosity)
    if run.mode != "run":
        options.append("--" + run.mode.replace("_", "-"))
    login = account
    if account is not None and run.become is not None:
        login = Account(account.username, run.become, account.become_method, account.become_user)
    if run.inventory_file is not None:
        # The repository's inventory names the hosts; the login comes as options, which its own host
        # variables override, as they would for ansible-playbook run there.
        inventory: dict[str, Any] = {}
        if login is not None:
            options.append(f"--user={login.username}")
            if login.become:
                options += [
                    "--become",
                    f"--become-method={login.become_method}",
                    f"--become-user={login.become_user}",
                ]
    else:
        inventory = playbook_inventory(targets, groups, login)
        if login is None and run.become:
            inventory["all"]["vars"]["ansible_become"] = True
    return CompiledStep(
        playbook=[],
        inventory=inventory,
        files={},
        task_count=PLAYBOOK_TASKS,
        extra_vars=unsafe(run.extra_vars),
        options=options,
        workdir=run.workdir,
        playbook_path=run.playbook,
        inventory_file=run.inventory_file,
        environment=repository_environment(config, callback_dir, requirements),
    )
