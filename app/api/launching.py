"""Launch endpoints share this: a client's idempotency key, and the job instance they answer with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request

from app.api import audit
from app.api.auth import current_actor
from app.models import JobInstance
from app.services import idempotency, jobs
from app.services.access import Action, require
from app.services.errors import Invalid

HEADER = "Idempotency-Key"
LAUNCHED = 202
KEY_MAX_CHARS = 255


def take_idempotency_key(data: dict[str, Any]) -> None:
    """The Idempotency-Key header, when given, becomes the body's idempotency_key (they must agree)."""
    header = request.headers.get(HEADER)
    if header is not None:
        if not 0 < len(header) <= KEY_MAX_CHARS:
            raise Invalid(f"{HEADER} holds 1 to {KEY_MAX_CHARS} characters", HEADER)
        if data.get(idempotency.FIELD, header) != header:
            raise Invalid(f"the {HEADER} header and idempotency_key differ", idempotency.FIELD)
        data[idempotency.FIELD] = header


def launched(
    project_id: int, data: dict[str, Any], launch: Callable[[dict[str, Any]], JobInstance]
) -> tuple[JobInstance, int, dict[str, str]]:
    """Launch once per idempotency key (the Idempotency-Key header or the body's idempotency_key) and
    endpoint: the same launch repeated with a kept key answers with the job instance the first one
    started, marked `Idempotent-Replayed: true`."""
    take_idempotency_key(data)
    key = data.pop(idempotency.FIELD, None)
    audit.expect_success(LAUNCHED)
    if key is None:
        job, replayed = launch(data), False
    else:
        # A replay launches nothing, so the launch's own check of the actor's rights would not guard it.
        require(current_actor(), project_id, Action.OPERATE)
        endpoint = request.path.removeprefix(f"/api/v1/projects/{project_id}/")
        job, replayed = idempotency.launch_once(project_id, endpoint, key, data, launch)
    if replayed:
        return jobs.job_with_counts(project_id, job.id), LAUNCHED, {"Idempotent-Replayed": "true"}
    return jobs.launched_with_counts(job), LAUNCHED, {}
