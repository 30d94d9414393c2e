"""Granting and taking back roles in a project."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from app.extensions import db
from app.models import Membership, Role, User
from app.services import records
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, NotFound


def get(project_id: int, user_id: int) -> Membership:
    member = db.session.scalar(
        select(Membership).where(Membership.project_id == project_id, Membership.user_id == user_id)
    )
    if member is None:
        raise NotFound(f"user {user_id} is not a member of project {project_id}")
    return member


def grant(actor: Actor, project_id: int, data: dict[str, Any]) -> Membership:
    require(actor, project_id, Action.ADMIN)
    user = db.session.get(User, data["user_id"])
    if user is None or user.deleted_at is not None:
        raise Invalid(f"user {data['user_id']} does not exist", "user_id")
    member = Membership(project_id=project_id, granted_by=actor.username, **data)
    db.session.add(member)
    records.commit(f"user {data['user_id']} is already a member; change the role instead", "user_id")
    return member


def change(actor: Actor, project_id: int, user_id: int, role: str) -> Membership:
    require(actor, project_id, Action.ADMIN)
    member = get(project_id, user_id)
    if member.role == Role.ADMIN and role != Role.ADMIN:
        keep_an_admin(project_id)
    member.role = role
    member.granted_by = actor.username
    db.session.commit()
    return member


def revoke(actor: Actor, project_id: int, user_id: int) -> None:
    require(actor, project_id, Action.ADMIN)
    member = get(project_id, user_id)
    if member.role == Role.ADMIN:
        keep_an_admin(project_id)
    db.session.delete(member)
    db.session.commit()


def keep_an_admin(project_id: int) -> None:
    admins = db.session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.project_id == project_id, Membership.role == Role.ADMIN)
    )
    if admins <= 1:
        raise Conflict(
            f"this is the last admin of project {project_id}; make someone else admin first", "role"
        )
