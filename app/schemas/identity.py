"""User and API token schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.config import PASSWORD_MIN_LENGTH
from app.schemas.fields import email_or_empty

USERNAME = validate.Regexp(r"^[a-z][a-z0-9._-]*$", error="lower-case letters, digits, '.', '_', '-'")


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String(required=True, validate=[validate.Length(min=2, max=64), USERNAME])
    display_name = fields.String(load_default="", validate=validate.Length(max=128))
    email = fields.String(
        load_default="", validate=email_or_empty, metadata={"description": 'an email address, or "" for none'}
    )
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=PASSWORD_MIN_LENGTH, max=1024),
        metadata={"description": "more than one kind of character, and not the user name"},
    )
    is_admin = fields.Boolean(load_default=False)
    created_at = fields.DateTime(dump_only=True)


class TokenSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=None)
    read_only = fields.Boolean(load_default=False)
    revoked_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class NewTokenSchema(TokenSchema):
    token = fields.String(dump_only=True, metadata={"description": "the token's value, shown this once"})
