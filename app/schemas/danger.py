"""Dangerous-command rule schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.config import DANGER_PATTERN_MAX_CHARS
from app.execution.compiler import LANGUAGES
from app.models import RuleAction

ACTIONS = [str(action) for action in RuleAction]


class InForce(fields.Boolean):
    """`enabled` as given on input; on output, whether the rule is in force where it is read."""

    def _serialize(self, value, attr, obj, **kwargs):
        # The API description serializes the default without a rule.
        return super()._serialize(value if obj is None else obj.in_force, attr, obj, **kwargs)


class RuleMatchSchema(Schema):
    rule_id = fields.Integer()
    description = fields.String()
    action = fields.String(metadata={"enum": ACTIONS})
    line_number = fields.Integer()
    line = fields.String()


class DangerRuleSchema(Schema):
    id = fields.Integer(dump_only=True)
    scope = fields.String(dump_only=True, metadata={"enum": ["global", "project"]})
    pattern = fields.String(
        required=True,
        validate=validate.Length(min=1, max=DANGER_PATTERN_MAX_CHARS),
        metadata={"description": "an RE2 regular expression, matched against each line"},
    )
    languages = fields.List(
        fields.String(validate=validate.OneOf(LANGUAGES)),
        load_default=list,
        metadata={"description": "the languages it applies to; empty for all"},
    )
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    action = fields.String(
        required=True,
        validate=validate.OneOf(ACTIONS),
        metadata={"description": "scan: warn and go on; intercept: refuse"},
    )
    enabled = InForce(
        load_default=True,
        metadata={"description": "read in a project, a global rule's switch for that project"},
    )
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class CheckSchema(Schema):
    content = fields.String(required=True, validate=validate.Length(min=1))
    language = fields.String(load_default="shell", validate=validate.OneOf(LANGUAGES))


class VerdictSchema(Schema):
    verdict = fields.String(metadata={"enum": ["allow", "warn", "refuse"]})
    matches = fields.List(fields.Nested(RuleMatchSchema))
