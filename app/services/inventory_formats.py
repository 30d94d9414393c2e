"""Ansible inventories in and out: INI, YAML and the JSON of `ansible-inventory --list`.

Pure functions over text and plain data. Parsing goes through Ansible's own ini and
yaml inventory plugins; the `--list` JSON is first turned into the data the yaml
plugin reads. Nothing is templated: values come out as the characters written.

How Ansible's inventory maps onto a project:
- `ansible_host`, `ansible_port` and `ansible_connection` become the host's address,
  port and connection (`paramiko` and `smart` are ssh; other connections are refused);
  every other host variable, `ansible_user` included, is kept in the host's variables;
- the hosts of `ungrouped` belong to no group;
- the variables of `all` are kept in a group named `all`, which has no members.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.models import Connection
from app.services.errors import Invalid

FORMATS = ("ini", "yaml", "json")
ALL = "all"
UNGROUPED = "ungrouped"
CONNECTIONS = {
    "ssh": Connection.SSH,
    "paramiko": Connection.SSH,
    "smart": Connection.SSH,
    "local": Connection.LOCAL,
    "winrm": Connection.WINRM,
}
# Variables Ansible adds to every host it reads from a file.
MAGIC_VARIABLES = frozenset({"inventory_file", "inventory_dir"})
RANGE = re.compile(r"\[([^\]]*)\]")
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass
class HostEntry:
    address: str
    port: int | None = None
    connection: str = Connection.SSH
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupEntry:
    variables: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    """Hosts and groups by name; a group's hosts and children are its direct members."""

    hosts: dict[str, HostEntry] = field(default_factory=dict)
    groups: dict[str, GroupEntry] = field(default_factory=dict)


def range_size(pattern: str) -> int:
    """How many names a host pattern such as `web[01:20].example.com` expands to, without expanding it."""
    size = 1
    for bounds in RANGE.findall(pattern):
        parts = bounds.split(":")
        try:
            step = int(parts[2]) if len(parts) == 3 else 1
            begin, end = parts[0] or "0", parts[1]
            if begin in string.ascii_letters and end in string.ascii_letters:
                first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
                size *= len(range(first, last + 1, step))
            else:
                size *= len(range(int(begin), int(end) + 1, step))
        except (IndexError, ValueError):
            continue  # not a range Ansible can expand either; its parser reports it
    return size


def parse(text: str, fmt: str, hosts_max: int) -> Inventory:
    """The inventory in `text`, or Invalid with the line and the reason Ansible gives."""
    if fmt == "json":
        text = json.dumps(list_to_yaml_data(_load_json(text)))
    with tempfile.TemporaryDirectory(prefix="opsflow-inventory-") as directory:
        path = Path(directory) / f"inventory.{fmt}"
        path.write_text(text)
        data = _parse_file(path, "ini" if fmt == "ini" else "yaml", hosts_max)
    return from_ansible(data, hosts_max)


def _load_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"line {exc.lineno}: {exc.msg}", "content", {"line": exc.lineno}) from exc
    if not isinstance(data, dict):
        raise Invalid("the JSON of ansible-inventory --list is an object", "content")
    return data


def list_to_yaml_data(data: dict[str, Any]) -> dict[str, Any]:
    """The `ansible-inventory --list` JSON as the data Ansible's yaml inventory plugin reads."""
    hostvars = (data.get("_meta") or {}).get("hostvars") or {}
    groups: dict[str, Any] = {}
    root: dict[str, Any] = {"children": groups}
    placed: set[str] = set()
    for name, body in data.items():
        if name == "_meta":
            continue
        if isinstance(body, list):  # the short form: a group as a list of its hosts
            body = {"hosts": body}
        if not isinstance(body, dict):
            raise Invalid(f"group {name!r} is neither an object nor a list of hosts", "content")
        unknown = set(body) - {"hosts", "vars", "children"}
        if unknown:
            raise Invalid(f"group {name!r} has unknown keys: {', '.join(sorted(unknown))}", "content")
        entry = root if name == ALL else groups.setdefault(name, {})
        if body.get("vars"):
            entry["vars"] = body["vars"]
        if body.get("hosts"):
            entry["hosts"] = {host: hostvars.get(host) or None for host in body["hosts"]}
            placed.update(body["hosts"])
        for child in body.get("children") or []:
            groups.setdefault(child, {})
            if name != ALL:
                entry.setdefault("children", {})[child] = None
    for host in hostvars.keys() - placed:
        root.setdefault("hosts", {})[host] = hostvars[host] or None
    return {ALL: root}


def _plugins() -> dict[str, type]:
    # Imported on use: Ansible's inventory machinery is heavy and only imports need it.
    from ansible.plugins.inventory.ini import InventoryModule as IniPlugin
    from ansible.plugins.inventory.yaml import InventoryModule as YamlPlugin

    class Limited:
        """Counts the names host ranges expand to, and refuses too many before expanding them."""

        hosts_max = 0
        expanded = 0
        line: int | None = None

        def _expand_hostpattern(self, hostpattern):
            size = range_size(hostpattern) if "[" in hostpattern else 1
            self.expanded += size if size > 1 else 0
            if size > self.hosts_max or self.expanded > self.hosts_max:
                raise Invalid(
                    f"host ranges expand to more than {self.hosts_max} hosts",
                    "content",
                    {"hosts_max": self.hosts_max},
                )
            return super()._expand_hostpattern(hostpattern)

    class Ini(Limited, IniPlugin):
        def _parse(self, lines):
            try:
                super()._parse(lines)
            finally:
                self.line = self._origin.line_num

    class Yaml(Limited, YamlPlugin):
        pass

    return {"ini": Ini, "yaml": Yaml}


def read_file(path: Path, plugin_name: str, hosts_max: int):
    """Ansible's InventoryData of an inventory file, read by its ini or yaml plugin; Invalid if it cannot."""
    return _parse_file(path, plugin_name, hosts_max)


def _parse_file(path: Path, plugin_name: str, hosts_max: int):
    from ansible.errors import AnsibleError
    from ansible.inventory.data import InventoryData
    from ansible.parsing.dataloader import DataLoader

    plugin = _plugins()[plugin_name]()
    plugin.hosts_max = hosts_max
    data = InventoryData()
    try:
        plugin.parse(data, DataLoader(), str(path), cache=False)
    except AnsibleError as exc:
        cause = _root_cause(exc)
        if isinstance(cause, Invalid):
            raise cause from exc
        line = plugin.line or _error_line(exc)
        reason = getattr(cause, "message", None) or str(cause)
        where = f"line {line}: " if line else ""
        raise Invalid(f"{where}{reason}", "content", {"line": line} if line else None) from exc
    return data


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _error_line(error: BaseException | None) -> int | None:
    while error is not None:
        line = getattr(getattr(error, "obj", None), "line_num", None)
        if line:
            return line
        error = error.__cause__ or error.__context__
    return None


def plain(value: Any) -> Any:
    """A value Ansible loaded, as plain JSON data (its tagged types and dates become str, int...)."""
    from ansible.parsing.vault import EncryptedString

    def text(item: Any) -> str:
        if isinstance(item, EncryptedString):
            raise Invalid("vault-encrypted values cannot be imported", "content")
        return str(item)

    return json.loads(json.dumps(value, default=text))


def from_ansible(data, hosts_max: int) -> Inventory:
    """Ansible's InventoryData as an Inventory."""
    if len(data.hosts) > hosts_max:
        raise Invalid(f"the inventory has more than {hosts_max} hosts", "content", {"hosts_max": hosts_max})
    inventory = Inventory()
    for name, host in data.hosts.items():
        variables = {key: value for key, value in plain(host.vars).items() if key not in MAGIC_VARIABLES}
        connection = str(variables.pop("ansible_connection", "ssh"))
        if connection not in CONNECTIONS:
            raise Invalid(
                f"host {name!r}: connection {connection!r} is not supported "
                f"(use one of {', '.join(CONNECTIONS)})",
                f"hosts.{name}.ansible_connection",
            )
        port = variables.pop("ansible_port", None)
        inventory.hosts[name] = HostEntry(
            address=str(variables.pop("ansible_host", name)),
            port=int(port) if isinstance(port, str) and port.isdigit() else port,
            connection=str(CONNECTIONS[connection]),
            variables=variables,
        )
    for name, group in data.groups.items():
        variables = plain(group.vars)
        if name == UNGROUPED or (name == ALL and not variables):
            continue
        if name == ALL:
            inventory.groups[ALL] = GroupEntry(variables=variables)
            continue
        inventory.groups[name] = GroupEntry(
            variables=variables,
            hosts=sorted(host.name for host in group.hosts),
            children=sorted(child.name for child in group.child_groups),
        )
    return inventory


def host_variables(name: str, host: HostEntry) -> dict[str, Any]:
    """The host's variables as Ansible reads them, with its address, port and connection."""
    values = dict(host.variables)
    if host.address != name:
        values["ansible_host"] = host.address
    if host.port:
        values["ansible_port"] = host.port
    if host.connection != Connection.SSH:
        values["ansible_connection"] = host.connection
    return values


def _ungrouped(inventory: Inventory) -> list[str]:
    grouped = {host for group in inventory.groups.values() for host in group.hosts}
    return [name for name in inventory.hosts if name not in grouped]


def _top_groups(inventory: Inventory) -> list[str]:
    children = {child for group in inventory.groups.values() for child in group.children}
    return [name for name in inventory.groups if name != ALL and name not in children]


def render(inventory: Inventory, fmt: str) -> str:
    """The inventory as INI, YAML or `--list` JSON text."""
    if fmt == "ini":
        return to_ini(inventory)
    if fmt == "json":
        return json.dumps(to_list_data(inventory), indent=2, sort_keys=True) + "\n"
    return yaml.dump(
        to_yaml_data(inventory), Dumper=DUMPER, sort_keys=False, allow_unicode=True, width=1 << 30
    )


def to_yaml_data(inventory: Inventory) -> dict[str, Any]:
    """Data for Ansible's yaml plugin: each group once under `all`, children named in their parents."""
    placed: set[str] = set()

    def hosts_of(names: list[str]) -> dict[str, Any]:
        entries = {}
        for name in names:
            entries[name] = None if name in placed else host_variables(name, inventory.hosts[name]) or None
            placed.add(name)
        return entries

    root: dict[str, Any] = {}
    if ALL in inventory.groups and inventory.groups[ALL].variables:
        root["vars"] = inventory.groups[ALL].variables
    ungrouped = _ungrouped(inventory)
    if ungrouped:
        root["hosts"] = hosts_of(ungrouped)
    children: dict[str, Any] = {}
    for name, group in inventory.groups.items():
        if name == ALL:
            continue
        entry: dict[str, Any] = {}
        if group.hosts:
            entry["hosts"] = hosts_of(group.hosts)
        if group.children:
            entry["children"] = {child: None for child in group.children}
        if group.variables:
            entry["vars"] = group.variables
        children[name] = entry or None
    if children:
        root["children"] = children
    return {ALL: root}


def to_list_data(inventory: Inventory) -> dict[str, Any]:
    """The shape `ansible-inventory --list` prints."""
    data: dict[str, Any] = {
        "_meta": {"hostvars": {name: host_variables(name, host) for name, host in inventory.hosts.items()}},
        ALL: {"children": [*_top_groups(inventory), UNGROUPED]},
    }
    if ALL in inventory.groups and inventory.groups[ALL].variables:
        data[ALL]["vars"] = inventory.groups[ALL].variables
    for name, group in inventory.groups.items():
        if name == ALL:
            continue
        entry: dict[str, Any] = {}
        for key, value in (("hosts", group.hosts), ("children", group.children), ("vars", group.variables)):
            if value:
                entry[key] = value
        data[name] = entry
    ungrouped = _ungrouped(inventory)
    data[UNGROUPED] = {"hosts": ungrouped} if ungrouped else {}
    return data


def ini_value(value: Any) -> str:
    """A value written so that Ansible's INI parser (Python literals, else text) reads it back the same."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if value == value.strip() and value and not set(value) & set("'\"#;\\"):
                return value
    return repr(value)


def to_ini(inventory: Inventory) -> str:
    placed: set[str] = set()

    def host_line(name: str) -> str:
        values = {} if name in placed else host_variables(name, inventory.hosts[name])
        placed.add(name)
        tokens = [name, *(f"{key}={ini_value(value)}" for key, value in values.items())]
        return " ".join(shlex.quote(token) for token in tokens)

    lines = [host_line(name) for name in _ungrouped(inventory)]
    for name, group in inventory.groups.items():
        if name == ALL:
            continue
        if group.hosts or not (group.children or group.variables):
            lines += ["", f"[{name}]", *(host_line(host) for host in group.hosts)]
        if group.children:
            lines += ["", f"[{name}:children]", *group.children]
        if group.variables:
            lines += ["", f"[{name}:vars]", *(f"{k}={ini_value(v)}" for k, v in group.variables.items())]
    if ALL in inventory.groups and inventory.groups[ALL].variables:
        variables = inventory.groups[ALL].variables
        lines += ["", "[all:vars]", *(f"{key}={ini_value(value)}" for key, value in variables.items())]
    return "\n".join(lines).lstrip("\n") + "\n"
