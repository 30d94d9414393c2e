"""Script, script version and script usage schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.execution.compiler import LANGUAGES
from app.models import VersionState
from app.schemas.danger import RuleMatchSchema
from app.schemas.fields import NAME

VERSION_STATES = [str(state) for state in VersionState]
LABEL = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
    error="use letters, digits, '.', '_', '+' and '-', starting with a letter or digit",
)


class LibraryScriptSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True, allow_none=True, metadata={"description": "null: public"})
    name = fields.String(required=True, validate=[validate.Length(min=1, max=128), NAME])
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    language = fields.String(
        required=True,
        validate=validate.OneOf(LANGUAGES),
        metadata={"description": f"one of {', '.join(LANGUAGES)}; fixed once the script exists"},
    )
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class ScriptVersionSchema(Schema):
    id = fields.Integer(dump_only=True)
    script_id = fields.Integer(dump_only=True)
    version = fields.String(required=True, validate=[validate.Length(min=1, max=64), LABEL])
    content = fields.String(required=True, validate=validate.Length(min=1))
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    state = fields.String(dump_only=True, metadata={"enum": VERSION_STATES})
    created_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    warnings = fields.List(
        fields.Nested(RuleMatchSchema),
        dump_only=True,
        metadata={"description": "scan matches of dangerous-command rules (in the answer to a save)"},
    )


class VersionChangeSchema(Schema):
    content = fields.String(validate=validate.Length(min=1), metadata={"description": "drafts only"})
    description = fields.String(validate=validate.Length(max=4000))


class ScriptUseSchema(Schema):
    kind = fields.String(metadata={"description": "what used the script: job_instance"})
    id = fields.Integer()
    project_id = fields.Integer()
    name = fields.String()
    version_id = fields.Integer()
    version = fields.String()
    at = fields.DateTime()
