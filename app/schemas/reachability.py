"""Schema of a reachability check request."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.config import CHECK_TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.schemas.fields import Id, Integer
from app.schemas.job import TargetsSchema


class ReachabilityCheckSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    targets = fields.Nested(TargetsSchema, required=True)
    account_id = Id(
        strict=True,
        allow_none=True,
        load_default=None,
        metadata={"description": "needed unless every host is local"},
    )
    timeout = Integer(
        strict=True, load_default=CHECK_TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))
