"""Global variables of job templates: their definitions, their values at launch, and how steps read them.

Values are data. A script reads each variable as an environment variable of the same name, a
playbook as an extra var (a namespace variable as a host variable); neither is ever substituted
into text that Jinja or a shell would read again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ansible.vars.reserved import is_reserved_name

from app.models import VariableType
from app.services.errors import Invalid

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names a script's environment or the service itself depends on.
RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "IFS", "PWD", "ENV", "BASH_ENV", "TMPDIR", "LANG", "TERM"}
)
RESERVED_PREFIXES = ("OPSFLOW_", "ANSIBLE_", "LD_", "opsflow_", "ansible_", "__ansible_")
VALUE_MAX_CHARS = 65536
ARRAY_MAX_ITEMS = 1000
VARIABLES_MAX = 100


@dataclass
class LaunchValues:
    """The values a job instance runs with."""

    public: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret: dict[str, str] = field(default_factory=dict)


def check_name(name: str, where: str) -> None:
    if not NAME.match(name):
        raise Invalid("a variable name is letters, digits and _, not starting with a digit", where)
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES) or is_reserved_name(name):
        raise Invalid(f"{name!r} is reserved: scripts or Ansible rely on it", where)


def check_definitions(definitions: list[dict[str, Any]], field_name: str = "variables") -> None:
    """Names valid and unique, defaults of the right type."""
    if len(definitions) > VARIABLES_MAX:
        raise Invalid(f"at most {VARIABLES_MAX} variables", field_name)
    seen = set()
    for index, definition in enumerate(definitions):
        where = f"{field_name}.{index}"
        check_name(definition["name"], f"{where}.name")
        if definition["name"] in seen:
            raise Invalid(f"variable {definition['name']!r} is defined twice", f"{where}.name")
        seen.add(definition["name"])
        if definition.get("default") is not None:
            check_value(definition["type"], definition["default"], f"{where}.default")


def check_value(kind: str, value: Any, where: str) -> Any:
    """The value if it has the variable's type, else Invalid naming `where`."""
    if kind in (VariableType.STRING, VariableType.SECRET, VariableType.NAMESPACE):
        if not isinstance(value, str):
            raise Invalid(f"a {kind} variable takes a string", where)
        if len(value) > VALUE_MAX_CHARS:
            raise Invalid(f"at most {VALUE_MAX_CHARS} characters", where)
    elif kind == VariableType.ARRAY:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise Invalid("an array variable takes a list of strings", where)
        if len(value) > ARRAY_MAX_ITEMS:
            raise Invalid(f"at most {ARRAY_MAX_ITEMS} items", where)
        if any("\n" in item for item in value):
            raise Invalid("array items are given to scripts one per line: they cannot hold a newline", where)
    elif kind == VariableType.HOST_LIST:
        keys = {"hosts", "groups", "dynamic_groups"}
        if (
            not isinstance(value, dict)
            or not set(value) <= keys
            or not all(isinstance(ids, list) and all(type(id) is int for id in ids) for ids in value.values())
        ):
            raise Invalid("a host list takes {hosts, groups, dynamic_groups}, each a list of ids", where)
    return value


def split_secrets(
    definitions: list[dict[str, Any]], values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Values as ({public name: value}, {secret name: value})."""
    kinds = {definition["name"]: definition["type"] for definition in definitions}
    public = {name: value for name, value in values.items() if kinds.get(name) != VariableType.SECRET}
    secret = {name: value for name, value in values.items() if kinds.get(name) == VariableType.SECRET}
    return public, secret


def check_values(
    definitions: list[dict[str, Any]], values: dict[str, Any], field_name: str, changing: bool = False
) -> None:
    """Every value names a defined variable and has its type; with `changing`, one changeable at launch."""
    kinds = {definition["name"]: definition for definition in definitions}
    for name, value in values.items():
        where = f"{field_name}.{name}"
        if name not in kinds:
            raise Invalid(f"there is no variable {name!r}", where)
        if changing and not kinds[name].get("changeable", True):
            raise Invalid(f"variable {name!r} cannot be changed at launch", where)
        check_value(kinds[name]["type"], value, where)


def launch_values(
    definitions: list[dict[str, Any]],
    defaults: dict[str, Any],
    secret_defaults: dict[str, str],
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """Each variable's value at launch: the override, else the default; a required one without either
    is Invalid naming it."""
    check_values(definitions, overrides, "variables", changing=True)
    values = {}
    for definition in definitions:
        name = definition["name"]
        if name in overrides:
            values[name] = overrides[name]
        elif name in secret_defaults:
            values[name] = secret_defaults[name]
        elif defaults.get(name) is not None:
            values[name] = defaults[name]
        elif definition.get("required"):
            raise Invalid(f"variable {name!r} is required: give it a value", f"variables.{name}")
    return values
