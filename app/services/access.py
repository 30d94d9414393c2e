"""Who is acting, and whether they may: the one check every entry point goes through."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Select, false

from app.extensions import db
from app.models import Project
from app.services.errors import Forbidden, NotFound


class Action(StrEnum):
    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    """The user behind a request (or a CLI command, or a timed job)."""

    user_id: int
    username: str
    is_admin: bool
    read_only: bool = False
    address: str | None = None


def require_system_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("only a system administrator may do this")
    require_writable(actor, Action.ADMIN)


def require_writable(actor: Actor, action: Action) -> None:
    if actor.read_only and action is not Action.READ:
        raise Forbidden("this token is read-only")


def visible_projects(actor: Actor, query: Select) -> Select:
    """The query narrowed to the projects the actor can see."""
    return query if actor.is_admin else query.where(false())


def require(actor: Actor, project_id: int, action: Action) -> Project:
    """The project, if the actor may do `action` in it.

    A project the actor cannot see answers as missing, so its existence does not leak.
    """
    project = db.session.get(Project, project_id)
    if project is None or not actor.is_admin:
        raise NotFound(f"project {project_id} does not exist")
    require_writable(actor, action)
    return project
