"""Account schemas: secrets go in, never out."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from app.schemas.fields import NAME, USER_NAME, USER_NAME_MAX


def validate_private_key(text: str) -> None:
    if "-----BEGIN " not in text or "PRIVATE KEY-----" not in text:
        raise ValidationError("not a PEM or OpenSSH private key")


class AccountSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=128), NAME])
    username = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=128),
            validate.Regexp(r"^[A-Za-z0-9._\\@-]+$", error="not a valid user name"),
        ],
    )
    private_key = fields.String(load_only=True, allow_none=True, validate=validate_private_key)
    password = fields.String(load_only=True, allow_none=True, validate=validate.Length(min=1, max=1024))
    become = fields.Boolean(load_default=False)
    become_method = fields.String(load_default="sudo", validate=validate.OneOf(["sudo", "su", "doas"]))
    become_user = fields.String(
        load_default="root", validate=[validate.Length(min=1, max=USER_NAME_MAX), USER_NAME]
    )
    become_password = fields.String(
        load_only=True, allow_none=True, validate=validate.Length(min=1, max=1024)
    )
    has_private_key = fields.Boolean(dump_only=True)
    has_password = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
