"""Credential schemas: secrets go in, never out."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.models import CredentialKind
from app.schemas.account import validate_private_key
from app.schemas.fields import NAME

KINDS = [str(kind) for kind in CredentialKind]
# The fields each kind takes; a field of another kind is refused.
FIELDS_OF_KIND = {
    CredentialKind.GIT: ("username", "private_key", "token"),
    CredentialKind.VAULT: ("password", "vault_id"),
}
VAULT_ID = validate.Regexp(
    r"^[A-Za-z0-9_.-]+$", error="a vault id: letters, digits, '.', '_' and '-' (no '@')"
)


def shape_problem(kind: str, values: dict) -> tuple[str, str] | None:
    """(field, message) of what keeps these values from making a credential of `kind`, if anything;
    `values` holds the credential's fields as they would be saved (None: not set)."""
    kind = CredentialKind(kind)
    for other, names in FIELDS_OF_KIND.items():
        if other != kind:
            for name in names:
                if values.get(name) is not None:
                    return name, f"a {kind} credential has no {name}"
    if kind == CredentialKind.GIT:
        key, token = values.get("private_key"), values.get("token")
        if key is not None and token is not None:
            return "token", "give a private_key (ssh) or a username and token (https), not both"
        if key is None and token is None:
            return "private_key", "give a private_key (ssh) or a username and token (https)"
        if token is not None and not values.get("username"):
            return "username", "a token goes with the username it belongs to"
        if key is not None and values.get("username"):
            return (
                "username",
                "an ssh remote names its user in the URL (ssh://git@host/...): leave username out",
            )
    elif values.get("password") is None:
        return "password", "a vault credential needs the vault password"
    return None


class CredentialSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=128), NAME])
    kind = fields.String(
        required=True,
        validate=validate.OneOf(KINDS),
        metadata={
            "description": "git: a private_key, or a username and token; vault: a password and a "
            "vault_id (optional). It cannot change."
        },
    )
    description = fields.String(load_default="", validate=validate.Length(max=4096))
    username = fields.String(
        allow_none=True,
        validate=[
            validate.Length(min=1, max=255),
            validate.Regexp(r"^[^\x00-\x1f\x7f:]+$", error="no ':' or control characters"),
        ],
        metadata={"description": "git over https: the user the token belongs to"},
    )
    private_key = fields.String(
        load_only=True, allow_none=True, validate=validate_private_key,
        metadata={"description": "git over ssh: an unencrypted private key (PEM or OpenSSH)"},
    )  # fmt: skip
    token = fields.String(
        load_only=True, allow_none=True, validate=validate.Length(min=1, max=4096),
        metadata={"description": "git over https: a token or password"},
    )  # fmt: skip
    password = fields.String(
        load_only=True, allow_none=True, validate=validate.Length(min=1, max=4096),
        metadata={"description": "vault: the vault password"},
    )  # fmt: skip
    vault_id = fields.String(
        allow_none=True,
        validate=[validate.Length(min=1, max=128), VAULT_ID],
        metadata={"description": "vault: the vault id the password answers to (ansible-playbook --vault-id)"},
    )
    has_private_key = fields.Boolean(dump_only=True)
    has_token = fields.Boolean(dump_only=True)
    has_password = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @validates_schema
    def one_shape(self, data, partial=None, **kwargs) -> None:
        if partial or "kind" not in data:
            return  # a change is checked against the credential it changes (app/services/credentials.py)
        problem = shape_problem(data["kind"], data)
        if problem:
            raise ValidationError(problem[1], problem[0])
