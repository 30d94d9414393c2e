"""Schemas of ad-hoc commands (`ansible -m`)."""

from __future__ import annotations

import json

from marshmallow import Schema, ValidationError, fields, validate, validates

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.schemas.fields import Id, Integer, validate_plain_data
from app.schemas.job import TargetsSchema

# The longest args string; an object of options (a copy's inline content) may be as large as an inline file.
ARGS_MAX_CHARS = 65536
ARGS_MAX_BYTES = 1024 * 1024


class AdHocRunSchema(Schema):
    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "a retried launch with the same key returns the first job instance"},
    )
    name = fields.String(validate=validate.Length(min=1, max=255))
    module = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "an allowed module (OPSFLOW_AD_HOC_MODULES), as `ansible -m` takes it"},
    )
    args = fields.Raw(
        load_default=None,
        metadata={
            "description": "the module's options: a string as `ansible -a` takes it (`key=value` words, or a "
            "free-form module's command line), or an object of them; data, never templated",
        },
    )
    targets = fields.Nested(TargetsSchema, required=True)
    account_id = Id(strict=True, allow_none=True, load_default=None)
    become = fields.Boolean(
        allow_none=True,
        load_default=None,
        metadata={"description": "become (true) or not (false); unset: as the account says"},
    )
    check = fields.Boolean(load_default=False, metadata={"description": "`--check`: change nothing on hosts"})
    diff = fields.Boolean(load_default=False, metadata={"description": "`--diff`: show what changes"})
    timeout = Integer(
        strict=True, load_default=TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))

    @validates("args")
    def plain_args(self, value, **kwargs) -> None:
        if value is None:
            return
        if isinstance(value, str):
            if len(value) > ARGS_MAX_CHARS:
                raise ValidationError(f"at most {ARGS_MAX_CHARS} characters")
            return
        if not isinstance(value, dict):
            raise ValidationError("a string of key=value options, or an object of them")
        validate_plain_data(value)
        try:
            text = json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValidationError("numbers must be finite") from None
        if len(text.encode()) > ARGS_MAX_BYTES:
            raise ValidationError(f"at most {ARGS_MAX_BYTES} bytes as JSON")
