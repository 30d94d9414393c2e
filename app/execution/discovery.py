"""Discovery: what a repository's tree holds, as a pure function over a directory.

Every YAML file is a playbook (its top level a list of plays or `import_playbook`s) or comes with the
reason it is not one, so "why is my playbook not listed" answers itself. Directories that hold role
parts and variables (roles/, tasks/, handlers/, vars/, defaults/, group_vars/, host_vars/) and
dot-directories are not searched, and are listed as such. Inventories are the files of inventory/ and
inventories/ directories, files named hosts or inventory, *.ini files, and YAML files shaped as
Ansible's YAML inventory, each with its hosts as Ansible's own inventory plugins read them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from app.config import DISCOVERY_FILE_MAX_BYTES
from app.execution.playbook import IMPORT_PLAYBOOK, VAULT_HEADER, _kind, _yaml_message

SKIPPED_DIRECTORIES = {
    "roles": "roles: its parts are not playbooks",
    "tasks": "task files, included by plays",
    "handlers": "handler files, included by plays",
    "vars": "variable files",
    "defaults": "role defaults",
    "group_vars": "group variables",
    "host_vars": "host variables",
}
INVENTORY_DIRECTORIES = frozenset({"inventory", "inventories"})
INVENTORY_NAMES = frozenset({"hosts", "inventory"})
YAML_SUFFIXES = frozenset({".yml", ".yaml"})
REQUIREMENTS_KEYS = frozenset({"roles", "collections"})
INVENTORY_GROUP_KEYS = frozenset({"hosts", "children", "vars"})
# Words that make a list item a task rather than a play.
TASK_WORDS = frozenset({"name", "when", "register", "tags", "loop", "with_items", "notify", "become", "vars"})
# The most hosts one inventory file of a repository may list.
INVENTORY_HOSTS_MAX = 10000


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """yaml's safe loader that reads any tag (Ansible's !vault and !unsafe included) as plain data."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_Loader.add_multi_constructor("!", _construct_tagged)


def discover(root: Path) -> dict[str, Any]:
    """{playbooks, not_playbooks, skipped, inventories, ansible_cfg} of the tree at `root`."""
    root = root.resolve()
    found: dict[str, list] = {"playbooks": [], "not_playbooks": [], "skipped": [], "inventories": []}
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        relative = here.relative_to(root)
        for name in sorted(dirnames):
            reason = ".: a hidden directory" if name.startswith(".") else SKIPPED_DIRECTORIES.get(name)
            if reason:
                found["skipped"].append({"path": str(relative / name), "reason": reason.lstrip(".: ")})
                dirnames.remove(name)
        dirnames.sort()
        in_inventory = bool(INVENTORY_DIRECTORIES & set(relative.parts))
        for name in sorted(filenames):
            path = here / name
            shown = str(relative / name)
            if not inside(root, path):
                if path.suffix in YAML_SUFFIXES:
                    found["not_playbooks"].append(
                        {"path": shown, "reason": "a link that leads out of the tree"}
                    )
                continue
            if in_inventory or name in INVENTORY_NAMES or path.suffix == ".ini":
                found["inventories"].append(inventory(path, shown))
            elif path.suffix in YAML_SUFFIXES:
                classify(path, shown, found)
    found["ansible_cfg"] = (root / "ansible.cfg").is_file()
    return found


def inside(root: Path, path: Path) -> bool:
    resolved = path.resolve()
    return resolved.is_file() and root in resolved.parents


def classify(path: Path, shown: str, found: dict[str, list]) -> None:
    """Add the YAML file to the playbooks, the inventories or the files that are not playbooks."""
    data, problem, nodes = load(path)
    if problem is None and isinstance(data, dict) and looks_like_inventory(data):
        found["inventories"].append(inventory(path, shown))
        return
    if problem is None:
        problem = playbook_problem(path.name, data, nodes)
    if problem is not None:
        found["not_playbooks"].append({"path": shown, "reason": problem})
        return
    plays = [
        {"import_playbook": next(play[key] for key in IMPORT_PLAYBOOK if key in play)}
        if any(key in play for key in IMPORT_PLAYBOOK)
        else {"name": str(play.get("name") or ""), "hosts": play["hosts"]}
        for play in data
    ]
    found["playbooks"].append({"path": shown, "plays": plays})


def load(path: Path) -> tuple[Any, str | None, list]:
    """The file's data, what keeps it from being read, and the top-level list's item nodes."""
    size = path.stat().st_size
    if size > DISCOVERY_FILE_MAX_BYTES:
        return None, f"{size} bytes: larger than the {DISCOVERY_FILE_MAX_BYTES} bytes discovery reads", []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8 text", []
    if text.lstrip().startswith(VAULT_HEADER):
        return (
            None,
            "vault-encrypted as a whole: variables, not a playbook (a playbook is never encrypted)",
            [],
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        return None, _yaml_message(text, exc).replace("the playbook is", "it is"), []
    except yaml.YAMLError as exc:
        return None, f"it is not valid YAML: {exc}", []
    finally:
        loader.dispose()
    items = node.value if isinstance(node, yaml.SequenceNode) else []
    return data, None, items


def looks_like_inventory(data: dict) -> bool:
    groups = [value for value in data.values() if isinstance(value, dict)]
    return (
        bool(groups)
        and len(groups) == len(data)
        and all(set(group) <= INVENTORY_GROUP_KEYS and set(group) for group in groups)
    )


def playbook_problem(name: str, data: Any, nodes: list) -> str | None:
    """Why data loaded from a YAML file is not a playbook, or None when it is one."""
    if data is None:
        return "empty"
    if isinstance(data, dict):
        if name in ("requirements.yml", "requirements.yaml") or set(data) <= REQUIREMENTS_KEYS:
            return "a requirements file of ansible-galaxy, not a playbook"
        return "a mapping (variables?), not a list of plays: a playbook's top level is a list"
    if not isinstance(data, list):
        return f"a {_kind(data)}, not a list of plays"
    if not data:
        return "an empty list: a playbook has at least one play"
    for number, (item, node) in enumerate(zip(data, nodes, strict=True), start=1):
        where = f"item {number} (line {node.start_mark.line + 1})"
        if not isinstance(item, dict):
            return f"{where} is a {_kind(item)}, not a play"
        if any(key in item for key in IMPORT_PLAYBOOK):
            continue
        if "hosts" not in item:
            module = next((key for key in item if key not in TASK_WORDS), None)
            looks = f": it looks like a task ({module})" if module else ""
            return f"{where} is not a play: it has no hosts{looks}; a list of tasks is included, not run"
        if not item["hosts"]:
            return f"{where} has an empty hosts"
    return None


def inventory(path: Path, shown: str) -> dict[str, Any]:
    """An inventory file with its hosts (name and address) and groups, or the reason Ansible refused it."""
    from app.services.errors import Invalid
    from app.services.inventory_formats import read_file

    try:
        data = read_file(path, "yaml" if path.suffix in YAML_SUFFIXES else "ini", INVENTORY_HOSTS_MAX)
    except Invalid as exc:
        return {"path": shown, "hosts": [], "groups": [], "error": exc.message}
    hosts = [
        {
            "name": name,
            "address": address if isinstance(address := host.vars.get("ansible_host"), str) else name,
        }
        for name, host in sorted(data.hosts.items())
    ]
    groups = sorted(name for name in data.groups if name not in ("all", "ungrouped"))
    return {"path": shown, "hosts": hosts, "groups": groups, "error": None}
