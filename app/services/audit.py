"""Recording and reading the audit log. Entries are only ever added."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, inspect, select

from app.extensions import db
from app.models import AuditEvent, Membership, Role
from app.services.access import Actor

# The entry of the API call in progress, when the transaction that does what the call asks writes it.
EXPECTED = "opsflow.audit_expected"


def outcome_of(status_code: int) -> str:
    if status_code in (401, 403):
        return "denied"
    return "success" if status_code < 400 else "failed"


def record(
    actor: Actor | None,
    *,
    resource: str,
    action: str,
    status_code: int,
    project_id: int | None = None,
    resource_id: str | None = None,
    client_address: str | None = None,
) -> None:
    """Add one entry, in a transaction of its own so it survives the request's rollback."""
    write(
        AuditEvent(
            username=actor.username if actor else "",
            project_id=project_id,
            resource=resource,
            resource_id=resource_id,
            action=action,
            outcome=outcome_of(status_code),
            status_code=status_code,
            client_address=client_address,
        )
    )


def write(entry: AuditEvent) -> None:
    """Add this entry, in a transaction of its own so it survives the request's rollback."""
    db.session.rollback()
    db.session.add(entry)
    db.session.commit()


def expect(entry: AuditEvent) -> None:
    """Have the transaction that does what the call in progress asks write its entry too, `entry` as it
    reads when the call succeeds (add_expected), sparing the call a transaction of its own for it."""
    db.session.info[EXPECTED] = entry


def add_expected(resource_id: str) -> None:
    """Add the entry expected, if any, to the session's transaction, naming `resource_id` when the
    entry names no resource of its own."""
    entry = db.session.info.get(EXPECTED)
    if entry is not None and inspect(entry).transient:
        entry.resource_id = entry.resource_id or resource_id
        db.session.add(entry)


def expected_was_written() -> bool:
    """Whether the entry expected for the call was committed; the expectation ends with the call."""
    entry = db.session.info.pop(EXPECTED, None)
    return entry is not None and inspect(entry).persistent


def query(actor: Actor, filters: dict[str, Any]) -> Select:
    """Entries the actor may read, newest first: all of them for a system administrator,
    else those of the projects the actor administers."""
    rows = select(AuditEvent)
    if not actor.is_admin:
        administered = select(Membership.project_id).where(
            Membership.user_id == actor.user_id, Membership.role == Role.ADMIN
        )
        rows = rows.where(AuditEvent.project_id.in_(administered))
    if "since" in filters:
        rows = rows.where(AuditEvent.at >= filters["since"])
    if "until" in filters:
        rows = rows.where(AuditEvent.at < filters["until"])
    for name in ("username", "project_id", "action", "outcome"):
        if name in filters:
            rows = rows.where(getattr(AuditEvent, name) == filters[name])
    return rows.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
