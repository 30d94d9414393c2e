"""User and API token schemas."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from app.config import PASSWORD_MIN_LENGTH
from app.schemas.fields import email_or_empty
from app.schemas.query import FilterArgs

USERNAME = validate.Regexp(r"^[a-z][a-z0-9._-]*$", error="lower-case letters, digits, '.', '_', '-'")
PASSWORD_MAX_CHARS = 1024


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
        validate=validate.Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_CHARS),
        metadata={"description": "more than one kind of character, and not the user name"},
    )
    is_admin = fields.Boolean(load_default=False)
    disabled = fields.Boolean(
        dump_only=True, metadata={"description": "a disabled user's tokens and password do not work"}
    )
    created_at = fields.DateTime(dump_only=True)


class UserChangeSchema(Schema):
    display_name = fields.String(validate=validate.Length(max=128))
    email = fields.String(
        validate=[validate.Length(max=255), email_or_empty],
        metadata={"description": 'an email address, or "" for none'},
    )
    is_admin = fields.Boolean()
    disabled = fields.Boolean(metadata={"description": "true stops the user's tokens at their next request"})

    @pre_load
    def fixed_fields(self, data, **kwargs):
        if isinstance(data, dict) and "username" in data:
            raise ValidationError("a user name never changes: history refers to it", "username")
        if isinstance(data, dict) and "password" in data:
            raise ValidationError("a user changes their password at /users/me/password", "password")
        return data


class UserArgs(FilterArgs):
    username = fields.String(
        validate=validate.Length(min=1, max=64), metadata={"description": "exactly this user name"}
    )


class PasswordChangeSchema(Schema):
    current_password = fields.String(
        required=True, load_only=True, validate=validate.Length(max=PASSWORD_MAX_CHARS)
    )
    new_password = fields.String(
        required=True, load_only=True, validate=validate.Length(max=PASSWORD_MAX_CHARS)
    )
    revoke_other_tokens = fields.Boolean(
        load_default=True,
        metadata={
            "description": "revoke your other tokens (the default); the one making this call keeps working"
        },
    )


class PasswordChangedSchema(Schema):
    revoked_tokens = fields.Integer(metadata={"description": "how many of your tokens were revoked"})


class TokenSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=None)
    read_only = fields.Boolean(load_default=False)
    revoked_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class NewTokenSchema(TokenSchema):
    token = fields.String(dump_only=True, metadata={"description": "the token's value, shown this once"})
