"""Host reachability: what the last check found on each host, and the host list's filters on it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, case, func, select, update

from app.extensions import db
from app.models import Host, HostResult, HostStatus, StepInstance
from app.models.base import UTCDateTime, utcnow

CHECK_JOB = "reachability_check"
CHECK_STEP = "reachability"
# Results that say nothing about the host: the check was cancelled or lost before reaching it.
NO_VERDICT = frozenset({HostStatus.WAITING, HostStatus.RUNNING, HostStatus.CANCELLED, HostStatus.ABNORMAL})
# The host answered and refused the account: the check is recorded, the host's verdict left as it was.
ACCOUNT_REFUSED = frozenset({HostStatus.AUTH_FAILED})

_hosts = Host.__table__.c
RECORD = (
    update(Host.__table__)
    .where(_hosts.id == bindparam("hid"))
    .values(
        reachable=bindparam("ok"),
        last_checked_at=bindparam("at", type_=UTCDateTime),
        last_check_error=bindparam("problem"),
        unreachable_since=case(
            (bindparam("ok"), None),
            else_=func.coalesce(_hosts.unreachable_since, bindparam("at", type_=UTCDateTime)),
        ),
    )
)
RECORD_CHECK_ONLY = (
    update(Host.__table__)
    .where(_hosts.id == bindparam("hid"))
    .values(last_checked_at=bindparam("at", type_=UTCDateTime), last_check_error=bindparam("problem"))
)


def record_results(step: StepInstance) -> None:
    """Write each checked host's verdict from the finished check step, in one statement."""
    results = db.session.execute(
        select(
            HostResult.host_id, HostResult.status, HostResult.error, HostResult.stderr, HostResult.ended_at
        )
        .where(HostResult.step_instance_id == step.id, HostResult.latest, HostResult.host_id.is_not(None))
        .where(HostResult.status.not_in(NO_VERDICT))
    ).all()
    now = utcnow()
    verdicts, checks = [], []
    for host_id, status, error, stderr, ended_at in results:
        ok = status == HostStatus.SUCCESS
        row = {
            "hid": host_id,
            "at": ended_at or now,
            "problem": None if ok else f"{status}: {error or stderr or 'no detail'}",
        }
        if status in ACCOUNT_REFUSED:
            checks.append(row)
        else:
            verdicts.append({**row, "ok": ok})
    if verdicts:
        db.session.execute(RECORD, verdicts)
    if checks:
        db.session.execute(RECORD_CHECK_ONLY, checks)


def hosts_query(project_id: int, filters: dict[str, Any]) -> Select:
    """The project's hosts, narrowed by the last check's verdict."""
    query = select(Host).where(Host.project_id == project_id).order_by(Host.id)
    if "reachable" in filters:
        query = query.where(Host.reachable.is_(filters["reachable"]))
    if "unreachable_since" in filters:
        query = query.where(Host.reachable.is_(False), Host.unreachable_since <= filters["unreachable_since"])
    return query
