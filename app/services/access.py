"""Who is acting, and whether they may: the one check every entry point goes through.

A system administrator may do everything. Everyone else acts in a project through
their role there: a viewer reads, an operator also launches and operates jobs and
manages hosts, groups and scripts (and later files), and an admin also manages the
project itself, its accounts, its members and its dangerous-command rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Select, select

from app.extensions import db
from app.models import Membership, Project, Role
from app.services.errors import Forbidden, NotFound


class Action(StrEnum):
    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"


ALLOWED = {
    Role.VIEWER: {Action.READ},
    Role.OPERATOR: {Action.READ, Action.OPERATE},
    Role.ADMIN: {Action.READ, Action.OPERATE, Action.ADMIN},
}


@dataclass(frozen=True)
class Actor:
    """The user behind a request (or a CLI command, or a timed job)."""

    user_id: int
    username: str
    is_admin: bool
    read_only: bool = False
    address: str | None = None
    # The API token the request came with (None: a password, the CLI, a timed job).
    token_id: int | None = None


def require_system_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("only a system administrator may do this")
    require_writable(actor, Action.ADMIN)


def require_scope(actor: Actor, project_id: int | None, action: Action) -> None:
    """A project's resources follow its roles; shared ones (no project): every user reads them,
    system administrators change them."""
    if project_id is not None:
        require(actor, project_id, action)
    elif action is not Action.READ:
        require_system_admin(actor)


def require_writable(actor: Actor, action: Action) -> None:
    if actor.read_only and action is not Action.READ:
        raise Forbidden("this token is read-only")


def role_in(actor: Actor, project_id: int) -> Role | None:
    role = db.session.scalar(
        select(Membership.role).where(
            Membership.project_id == project_id, Membership.user_id == actor.user_id
        )
    )
    return Role(role) if role else None


def member_projects(actor: Actor) -> Select:
    """The ids of the projects the actor holds a role in."""
    return select(Membership.project_id).where(Membership.user_id == actor.user_id)


def visible_projects(actor: Actor, query: Select) -> Select:
    """The query narrowed to the projects the actor can see."""
    if actor.is_admin:
        return query
    return query.where(Project.id.in_(member_projects(actor)))


def require(actor: Actor, project_id: int, action: Action) -> Project:
    """The project, if the actor may do `action` in it.

    A project the actor cannot see answers as missing, so its existence does not leak.
    """
    project = db.session.get(Project, project_id)
    role = None if project is None or actor.is_admin else role_in(actor, project_id)
    if project is None or not (actor.is_admin or role):
        raise NotFound(f"project {project_id} does not exist")
    if role is not None and action not in ALLOWED[role]:
        raise Forbidden(f"your role in project {project_id} ({role}) does not allow this ({action})")
    require_writable(actor, action)
    return project
