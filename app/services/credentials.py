"""Git and vault credentials: encrypted at rest, never returned, masked wherever they are used."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import Credential, CredentialKind, Repository
from app.schemas.credential import FIELDS_OF_KIND, shape_problem
from app.services import records
from app.services.errors import Conflict, Invalid

SECRET_FIELDS = ("private_key", "token", "password")


def create(project_id: int, data: dict[str, Any]) -> Credential:
    return records.save(Credential(project_id=project_id, **data))


def update(row: Credential, changes: dict[str, Any]) -> Credential:
    """Change some fields; the result must still be a credential of its kind."""
    if "kind" in changes and changes["kind"] != row.kind:
        raise Invalid("a credential's kind cannot change: make a new one", "kind")
    values = {name: getattr(row, name) for names in FIELDS_OF_KIND.values() for name in names}
    values.update(changes)
    # Giving one way of logging in to git drops the other.
    if row.kind == CredentialKind.GIT and changes.get("private_key") is not None:
        values.update(token=None, username=None)
        changes = {**changes, "token": None, "username": None}
    elif row.kind == CredentialKind.GIT and changes.get("token") is not None:
        values["private_key"] = None
        changes = {**changes, "private_key": None}
    problem = shape_problem(row.kind, values)
    if problem:
        raise Invalid(problem[1], problem[0])
    return records.update(row, changes)


def remove(row: Credential) -> None:
    """Delete a credential no repository uses."""
    users = db.session.scalars(select(Repository.name).where(Repository.credential_id == row.id)).all()
    if users:
        raise Conflict(
            f"credential {row.name!r} is used by repository {', '.join(sorted(users))}: change that first",
            "id",
        )
    records.delete(row)


def of_kind(project_id: int, credential_id: int, kind: CredentialKind, field: str) -> Credential:
    """The project's credential of this kind, or Invalid naming `field`."""
    [row] = records.get_many(Credential, [credential_id], project_id, field)
    if row.kind != kind:
        raise Invalid(f"credential {row.name!r} is a {row.kind} credential, not a {kind} one", field)
    return row
