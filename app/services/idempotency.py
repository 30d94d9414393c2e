"""Idempotent launches: a client's key, scoped by project and launch endpoint, makes a retried launch
answer with the job instance the first one started, for as long as the key is kept."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select

from app.config import current as settings
from app.extensions import db
from app.models import IdempotencyKey, JobInstance
from app.models.base import utcnow
from app.services.errors import Conflict, Invalid

FIELD = "idempotency_key"


class KeyTaken(Exception):
    """A launch lost the race for its key to a simultaneous one, which committed first."""


def request_digest(body: dict[str, Any]) -> str:
    """SHA-256 of a launch's validated body: the same request however its JSON was spelled."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def launch_once(
    project_id: int,
    endpoint: str,
    key: str,
    body: dict[str, Any],
    launch: Callable[[dict[str, Any]], JobInstance],
) -> tuple[JobInstance, bool]:
    """The job instance this key launched on this endpoint (and True: a replay), else a new launch with
    the key claimed in the same transaction (and False). The same key with another body is refused."""
    now = utcnow()
    claim = IdempotencyKey(
        project_id=project_id,
        endpoint=endpoint,
        key=key,
        request_digest=request_digest(body),
        created_at=now,
        expires_at=now + timedelta(seconds=settings().idempotency_key_ttl),
    )
    first = launched_by(claim)
    if first is not None:
        return first, True
    try:
        return launch({**body, "idempotency": claim}), False
    except KeyTaken:
        first = launched_by(claim)
        if first is None:
            raise Conflict(f"a launch with key {key!r} is changing; retry it", FIELD) from None
        return first, True


def launched_by(claim: IdempotencyKey) -> JobInstance | None:
    """The job instance of a kept key like `claim`; an expired key is forgotten, and so free again."""
    kept = db.session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.project_id == claim.project_id,
            IdempotencyKey.endpoint == claim.endpoint,
            IdempotencyKey.key == claim.key,
        )
    )
    if kept is None:
        return None
    if kept.expires_at <= utcnow():
        db.session.delete(kept)
        db.session.commit()
        return None
    if kept.request_digest != claim.request_digest:
        raise Invalid(
            f"key {claim.key!r} was used for another request on {claim.endpoint}; use a new key", FIELD
        )
    return kept.job


def forget_expired() -> int:
    """Delete the keys past their expiry (the periodic housekeeping); returns how many."""
    forgotten = db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
    ).rowcount
    db.session.commit()
    return forgotten
