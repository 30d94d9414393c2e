"""Errors of the domain operations; the API turns each into one JSON error shape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ServiceError(Exception):
    """A refused operation: what went wrong, and which input field it concerns."""

    status = 400

    def __init__(
        self,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooLarge(ServiceError):
    status = 413


class Invalid(ServiceError):
    status = 422


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class TooManyRequests(ServiceError):
    status = 429


def first_error(messages: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """The dotted path and text of the first validation message in webargs' nested errors."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        return first_error(value, (*path, str(key)))
    if isinstance(messages, list) and messages:
        if isinstance(messages[0], str):
            return (".".join(path) or None), messages[0]
        return first_error(messages[0], path)
    return (".".join(path) or None), str(messages)


@contextmanager
def fields_under(prefix: str, missing_is_invalid: bool = False) -> Iterator[None]:
    """Errors raised inside name their field under `prefix` (none: as they are); with
    `missing_is_invalid`, a reference to something missing is bad input (422) rather than a missing
    resource (404)."""
    try:
        yield
    except ServiceError as exc:
        field = ".".join(part for part in (prefix, exc.field) if part) or None
        details = exc.details
        if isinstance(details, dict) and isinstance(details.get("errors"), list) and prefix:
            # Every problem listed (a flow's, each with its path) is under the prefix too.
            details = {
                **details,
                "errors": [
                    {**problem, "path": f"{prefix}.{problem['path']}" if problem.get("path") else prefix}
                    if isinstance(problem, dict)
                    else problem
                    for problem in details["errors"]
                ],
            }
        if missing_is_invalid and isinstance(exc, NotFound):
            raise Invalid(exc.message, field, details) from exc
        exc.field = field
        exc.details = details
        raise
