"""Deleting a project: its rows go with it through their cascades, and its files under the data dir."""

from __future__ import annotations

from sqlalchemy import select

from app.config import current as settings
from app.execution.sync import remove_tree
from app.extensions import db
from app.models import Repository
from app.services import records
from app.services.access import Action, Actor, require
from app.services.repositories import directory_of


def delete_project(actor: Actor, project_id: int) -> None:
    """Delete the project and everything in it: its repositories' revisions and archives, and the SSH
    host keys its runs recorded."""
    project = require(actor, project_id, Action.ADMIN)
    repository_ids = db.session.scalars(
        select(Repository.id).where(Repository.project_id == project_id)
    ).all()
    records.delete(project)
    for repository_id in repository_ids:
        remove_tree(directory_of(repository_id))
    remove_tree(settings().known_hosts_dir / str(project_id))
