"""Host and group schemas."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from app.models import Connection
from app.schemas.fields import IDENTIFIER, NAME, Id, IdList, Integer, validate_variables
from app.schemas.query import FilterArgs
from app.services.inventory_formats import FORMATS

ADDRESS = validate.Regexp(r"^[A-Za-z0-9:._%\[\]-]+$", error="not a host name or an IP address")


class HostSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), NAME])
    address = fields.String(required=True, validate=[validate.Length(min=1, max=255), ADDRESS])
    port = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(1, 65535))
    connection = fields.String(load_default=Connection.SSH, validate=validate.OneOf(list(Connection)))
    labels = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=63)),
        values=fields.String(validate=validate.Length(max=255)),
        load_default=dict,
    )
    variables = fields.Dict(
        keys=fields.String(validate=IDENTIFIER), load_default=dict, validate=validate_variables
    )
    reachable = fields.Boolean(dump_only=True, allow_none=True)
    last_checked_at = fields.DateTime(dump_only=True, allow_none=True)
    last_check_error = fields.String(dump_only=True, allow_none=True)
    unreachable_since = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class KnownKeySchema(Schema):
    key_type = fields.String(metadata={"description": "e.g. ssh-ed25519"})
    fingerprint = fields.String(metadata={"description": "SHA256:..., as ssh-keygen -l shows it"})
    first_seen = fields.DateTime(
        allow_none=True,
        metadata={"description": "when a run first recorded it (none: not recorded by Opsflow)"},
    )


class HostKeySchema(Schema):
    host_id = fields.Integer()
    known_as = fields.String(metadata={"description": "the name in known_hosts: address, or [address]:port"})
    keys = fields.List(fields.Nested(KnownKeySchema), metadata={"description": "empty: none recorded yet"})


class GroupSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), NAME])
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    hosts = IdList(load_default=list)
    children = IdList(load_default=list)
    variables = fields.Dict(
        keys=fields.String(validate=IDENTIFIER), load_default=dict, validate=validate_variables
    )
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class HostListArgs(FilterArgs):
    reachable = fields.Boolean(metadata={"description": "the result of the last reachability check"})
    unreachable_since = fields.AwareDateTime(
        default_timezone=None,
        metadata={"description": "hosts unreachable at every check since this time or earlier"},
    )


class InventoryImportSchema(Schema):
    format = fields.String(
        validate=validate.OneOf(FORMATS),
        metadata={
            "description": "ini, yaml or json (ansible-inventory --list); from an upload's name if absent"
        },
    )
    content = fields.String(metadata={"description": "the inventory text, unless a file is uploaded"})
    dry_run = fields.Boolean(
        load_default=False, metadata={"description": "report the changes, write nothing"}
    )
    remove_missing = fields.Boolean(
        load_default=False,
        metadata={"description": "remove hosts, groups and memberships the file does not name"},
    )


class InventoryExportArgs(FilterArgs):
    format = fields.String(required=True, validate=validate.OneOf(FORMATS))
    group = Id(metadata={"description": "export this group and its descendants only"})


class ChangeSchema(Schema):
    added = fields.List(fields.Raw())
    updated = fields.List(fields.String())
    removed = fields.List(fields.Raw())


class ImportReportSchema(Schema):
    dry_run = fields.Boolean()
    hosts = fields.Nested(ChangeSchema)
    groups = fields.Nested(ChangeSchema)
    memberships = fields.Nested(ChangeSchema(only=("added", "removed")))


def validate_scalar(value: object) -> None:
    if not isinstance(value, str | int | float | bool):
        raise ValidationError("use a string, a number or a boolean")


class HostFilterSchema(Schema):
    """Hosts match when they meet every part given; an empty filter matches every host."""

    names = fields.List(
        fields.String(validate=validate.Length(min=1, max=255)),
        metadata={"description": "host name patterns, '*' and '?' as wildcards; any may match"},
    )
    labels = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "all must match"}
    )
    variables = fields.Dict(
        keys=fields.String(validate=IDENTIFIER),
        values=fields.Raw(validate=validate_scalar),
        metadata={
            "description": "host variables with these values (strings, numbers, booleans); all must match"
        },
    )
    groups = fields.List(
        Id(strict=True),
        metadata={"description": "static group ids, hosts of their child groups included; any may match"},
    )
    connection = fields.String(validate=validate.OneOf(list(Connection)))


class DynamicGroupSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=255), NAME])
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    filter = fields.Nested(HostFilterSchema, load_default=dict)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
