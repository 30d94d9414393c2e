"""Fields and validators shared by the schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from app.config import INTEGER_MAX
from app.execution.compiler import ANSIBLE_JSON_KEYS

NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    error="use letters, digits, '.', '_' and '-', starting with a letter or digit",
)
IDENTIFIER = validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$", error="not a valid variable name")
# A user to become: a POSIX user name, or user@domain as directory services name them. Ansible pastes
# it unquoted into `sudo -u`, `su` and `doas -u`, so it holds no character a shell would read.
USER_NAME_MAX = 128
USER_NAME = validate.Regexp(
    r"^[A-Za-z0-9_][A-Za-z0-9._@-]*$",
    error="not a user name: use letters, digits, '.', '_', '-' and '@', starting with a letter, digit or '_'",
)

# Host variables that reach Ansible as they are; other ansible_* names could redirect
# connections or run commands on the controller (ProxyCommand), so they are refused.
# A host's ansible_user logs in with the account's credentials under another name, as in Ansible.
ALLOWED_ANSIBLE_VARIABLES = frozenset(
    {
        "ansible_user",
        "ansible_python_interpreter",
        "ansible_shell_type",
        "ansible_shell_executable",
        "ansible_become_method",
        "ansible_become_user",
        "ansible_winrm_transport",
        "ansible_winrm_scheme",
        "ansible_winrm_server_cert_validation",
    }
)


# An interpreter or shell with its arguments, as `/usr/bin/env python3`: Ansible pastes it into the
# command lines it runs on the host as it is, so it holds words and spaces, nothing a shell would read.
COMMAND_WORDS = validate.Regexp(
    r"^[A-Za-z0-9_./+=:@%,-]+( [A-Za-z0-9_./+=:@%,-]+)*$",
    error="a command: words of letters, digits and '_./+=:@%,-', one space apart",
)

# Values of the allowed names that Ansible puts on a command line unquoted.
ANSIBLE_VARIABLE_VALUES = {
    "ansible_become_user": [validate.Length(min=1, max=USER_NAME_MAX), USER_NAME],
    "ansible_python_interpreter": [validate.Length(min=1, max=4096), COMMAND_WORDS],
    "ansible_shell_executable": [validate.Length(min=1, max=4096), COMMAND_WORDS],
}


ABSOLUTE_PATH = validate.Regexp(
    r"^/[^\x00-\x1f\x7f]*$", error="must be an absolute path, without NUL or other control characters"
)


def exactly_one_shape(*shapes: tuple[tuple[str, ...], tuple[str, ...]]) -> dict:
    """The JSON Schema of a body that takes exactly one of several shapes, each given as (the fields it
    requires, the fields it may add): every field of the other shapes is absent. For a schema's
    Meta.openapi, where a @validates_schema check does the same in code."""
    named = {name for required, optional in shapes for name in (*required, *optional)}
    return {
        "oneOf": [
            {
                "required": list(required),
                "not": {"anyOf": [{"required": [name]} for name in sorted(named - {*required, *optional})]},
            }
            for required, optional in shapes
        ]
    }


def email_or_empty(value: str) -> None:
    if value:
        validate.Email()(value)


def validate_variables(variables: dict) -> None:
    """Host and group variables: no name Opsflow sets itself, and values Ansible takes as data.
    An error names the variable."""
    for name, value in variables.items():
        try:
            if name.startswith("ansible_") and name not in ALLOWED_ANSIBLE_VARIABLES:
                raise ValidationError(f"{name} is set by Opsflow itself or not allowed")
            if name in ANSIBLE_VARIABLE_VALUES and not isinstance(value, str):
                raise ValidationError("must be a string")
            for validator in ANSIBLE_VARIABLE_VALUES.get(name, ()):
                validator(value)
        except ValidationError as exc:
            raise ValidationError({name: exc.messages}) from None
    validate_plain_data(variables)


def validate_plain_data(value: Any) -> None:
    """Refuse a mapping, at any depth, that holds one of Ansible's own JSON keys
    (compiler.ANSIBLE_JSON_KEYS); an error names the path to it."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        try:
            if key in ANSIBLE_JSON_KEYS:
                raise ValidationError(f"{key} is a key of Ansible's own")
            validate_plain_data(item)
        except ValidationError as exc:
            raise ValidationError({key: exc.messages}) from None


class Integer(fields.Integer):
    """An integer the database can hold: beyond an Integer column's range it is a 422 on the field, not a
    database error. Every integer the API reads is one of these (or an Id)."""

    bounds = validate.Range(-INTEGER_MAX - 1, INTEGER_MAX)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validators.insert(0, self.bounds)


class Id(Integer):
    """A reference to a row by its id."""

    bounds = validate.Range(1, INTEGER_MAX)


class IdList(fields.List):
    """Ids on input; on output, the ids of the related rows."""

    def __init__(self, **kwargs) -> None:
        super().__init__(Id(strict=True), **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else [row.id for row in value]


class Rendered(fields.List):
    """A list documented by its items' schema whose items the service has already rendered as JSON values:
    for reads of thousands of items, where dumping each field through marshmallow costs more than reading."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value
