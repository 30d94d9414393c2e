"""Project member schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import Role
from app.schemas.fields import Id

ROLES = [str(role) for role in Role]


class MemberSchema(Schema):
    user_id = Id(required=True, strict=True)
    username = fields.String(dump_only=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    granted_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


class RoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
