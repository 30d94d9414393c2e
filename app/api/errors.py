"""One JSON error shape for every failure: {"error": {"code", "message", "field"?, "details"?}}."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from marshmallow import Schema, fields
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.config import REDIS_RETRY_AFTER_SECONDS
from app.services.errors import ServiceError

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"enum": sorted({*CODES.values(), "error"})})
    message = fields.String(required=True)
    field = fields.String(metadata={"description": "the input it concerns, a dotted path (targets.hosts.0)"})
    details = fields.Dict(metadata={"description": "every field's messages, the ids missing..."})


class ErrorSchema(Schema):
    """The body of every error answer."""

    error = fields.Nested(ErrorBodySchema, required=True)


def error_response(status: int, message: str, field: str | None = None, details: Any = None, headers=None):
    body: dict[str, Any] = {"code": CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    if details:
        body["details"] = details
    response = jsonify(error=body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        return error_response(error.status, error.message, error.field, error.details, error.headers)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def redis_unreachable(error: Exception):
        app.logger.warning("Redis cannot be reached: %s", error)
        return error_response(
            503,
            "the service's queue (Redis) cannot be reached; nothing was changed, retry later",
            headers={"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
        )
