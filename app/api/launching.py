"""Launch endpoints share this: a client's idempotency key, and the job instance they answer with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request

from app.api.auth import current_actor
from app.models import JobInstance
from app.services import executions, jobs
from app.services.access import Action, require
from app.services.errors import Invalid

HEADER = "Idempotency-Key"
KEY_MAX_CHARS = 255


def take_idempotency_key(data: dict[str, Any]) -> None:
    """The Idempotency-Key header, when given, becomes the body's idempotency_key (they must agree)."""
    header = request.headers.get(HEADER)
    if header is not None:
        if not 0 < len(header) <= KEY_MAX_CHARS:
            raise Invalid(f"{HEADER} holds 1 to {KEY_MAX_CHARS} characters", HEADER)
        if data.get("idempotency_key", header) != header:
            raise Invalid(f"the {HEADER} header and idempotency_key differ", "idempotency_key")
        data["idempotency_key"] = header


def launched(
    project_id: int, data: dict[str, Any], launch: Callable[[dict[str, Any]], JobInstance]
) -> tuple[JobInstance, int, dict[str, str]]:
    """Launch once per idempotency key (the Idempotency-Key header or the body's idempotency_key):
    a launch repeated with a key already used answers with the job instance the first one started."""
    take_idempotency_key(data)
    require(current_actor(), project_id, Action.OPERATE)
    first = executions.replayed(project_id, data.get("idempotency_key"))
    if first is not None:
        return jobs.job_with_counts(project_id, first.id), 202, {"Idempotent-Replayed": "true"}
    job = launch(data)
    return jobs.job_with_counts(project_id, job.id), 202, {}
