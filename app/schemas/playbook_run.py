"""Schemas of runs of a repository's playbooks."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.schemas.fields import IDENTIFIER, Id, Integer, validate_plain_data
from app.schemas.job import TargetsSchema

RELATIVE_PATH = validate.Regexp(
    r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\x00-\x1f\x7f]+$", error="a path inside the repository, without '..'"
)
CHECKS = ("syntax_check", "list_tasks", "list_hosts")


class RepositoryPlaybookSchema(Schema):
    """A playbook of a repository and how to run it: in a playbook run, a template step or a flow atom."""

    repository_id = Id(required=True, strict=True)
    playbook = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=1024), RELATIVE_PATH],
        metadata={"description": "its path in the repository, as GET .../playbooks lists it"},
    )
    revision = fields.String(
        allow_none=True,
        load_default=None,
        validate=validate.Length(min=7, max=64),
        metadata={"description": "a kept revision (commit id, or archive sha256); default the current one"},
    )
    inventory_file = fields.String(
        allow_none=True,
        load_default=None,
        validate=[validate.Length(min=1, max=1024), RELATIVE_PATH],
        metadata={
            "description": "run on the hosts of this inventory file of the repository instead of targets"
        },
    )
    extra_vars = fields.Dict(
        keys=fields.String(validate=IDENTIFIER), load_default=dict, validate=validate_plain_data,
        metadata={"description": "data: never templated, {{ ... }} stays text"},
    )  # fmt: skip
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=255)), load_default=list)
    skip_tags = fields.List(fields.String(validate=validate.Length(min=1, max=255)), load_default=list)
    limit = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=4096))
    check = fields.Boolean(load_default=False, metadata={"description": "ansible-playbook --check"})
    diff = fields.Boolean(load_default=False, metadata={"description": "ansible-playbook --diff"})
    verbosity = Integer(strict=True, load_default=0, validate=validate.Range(0, 4))
    become = fields.Boolean(
        allow_none=True, load_default=None, metadata={"description": "override the account's become"}
    )
    vault_credential_id = Id(
        strict=True, allow_none=True, load_default=None,
        metadata={"description": "a vault credential: the password for the repository's encrypted data"},
    )  # fmt: skip

    @validates_schema
    def plain_extra_vars(self, data, **kwargs) -> None:
        for name in data.get("extra_vars", {}):
            if name.startswith("ansible_"):
                raise ValidationError(f"{name}: ansible_* variables are set by Opsflow", "extra_vars")


class PlaybookRunSchema(RepositoryPlaybookSchema):
    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "a retried launch with the same key returns the first job instance"},
    )
    name = fields.String(validate=validate.Length(min=1, max=255))
    targets = fields.Nested(TargetsSchema)
    account_id = Id(strict=True, allow_none=True, load_default=None)
    timeout = Integer(
        strict=True, load_default=TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1, max=1000))
    syntax_check = fields.Boolean(
        load_default=False, metadata={"description": "only ansible-playbook --syntax-check"}
    )
    list_tasks = fields.Boolean(
        load_default=False, metadata={"description": "only ansible-playbook --list-tasks"}
    )
    list_hosts = fields.Boolean(
        load_default=False, metadata={"description": "only ansible-playbook --list-hosts"}
    )

    class Meta:
        openapi = {
            "oneOf": [
                {"required": ["targets"], "not": {"required": ["inventory_file"]}},
                {"required": ["inventory_file"], "not": {"required": ["targets"]}},
            ]
        }

    @validates_schema
    def one_inventory(self, data, **kwargs) -> None:
        if ("targets" in data) == (data.get("inventory_file") is not None):
            raise ValidationError("name targets or an inventory_file of the repository, not both", "targets")
        if sum(bool(data.get(name)) for name in CHECKS) > 1:
            raise ValidationError("ask for one of syntax_check, list_tasks and list_hosts", "syntax_check")
