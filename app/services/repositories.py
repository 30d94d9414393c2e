"""Playbook repositories: saving them, their archives, and what their revisions hold.

A repository's files live under repositories/<id>/ in the data dir: `archive` (the last upload),
`revisions/<revision>/` (one read-only directory per synced revision) and `requirements/` (roles and
collections installed from its requirements files, by checksum).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from sqlalchemy import select

from app.config import REPOSITORY_ENTRIES_MAX, Settings
from app.config import current as settings
from app.execution import archives
from app.execution.sync import remove_tree
from app.extensions import db
from app.models import CredentialKind, JobInstance, Repository, RepositoryRevision, SourceType
from app.models.base import utcnow
from app.services import credentials, files, records
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, TooLarge
from app.status import RUN_FINAL

DEFAULT_BRANCH = "main"
# user@host:path, as git reads an ssh remote without a scheme.
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
ARCHIVE_FILE = "archive"
REVISIONS_DIR = "revisions"
REQUIREMENTS_DIR = "requirements"
# The kinds of job instance that use a repository's revisions.
SYNC_KIND = "repository_sync"


def directory_of(repository_id: int, config: Settings | None = None) -> Path:
    return (config or settings()).repositories_dir / str(repository_id)


def revision_dir(repository_id: int, revision: str, config: Settings | None = None) -> Path:
    return directory_of(repository_id, config) / REVISIONS_DIR / revision


def check_git_url(url: str, allow_file: bool, field: str = "source.url") -> None:
    """A remote git can fetch from here: https, ssh (either spelling), or file:// where allowed."""
    if url.startswith("-") or any(ord(char) < 32 or ord(char) == 127 for char in url) or " " in url:
        raise Invalid("not a git URL: no spaces, control characters or leading '-'", field)
    if SCP_LIKE.match(url) and "://" not in url:
        return
    parts = urlsplit(url)
    if parts.scheme in ("https", "ssh"):
        if not parts.hostname:
            raise Invalid(f"{url!r} names no host", field)
        if parts.scheme == "https" and parts.password is not None:
            raise Invalid("keep the token out of the URL: give the repository a git credential", field)
        return
    if parts.scheme == "file":
        if not allow_file:
            raise Invalid("file:// remotes are refused on this server (OPSFLOW_GIT_ALLOW_FILE is off)", field)
        if not parts.path.startswith("/"):
            raise Invalid("a file:// URL names an absolute path", field)
        return
    raise Invalid("use an https://, ssh:// or user@host:path remote", field)


def columns(project_id: int, source: dict[str, Any]) -> dict[str, Any]:
    """The repository's columns for a checked source."""
    kind = SourceType(source["type"])
    if kind == SourceType.ARCHIVE:
        return {"source_type": kind, "url": None, "branch": None, "credential_id": None}
    check_git_url(source["url"], settings().git_allow_file)
    credential_id = source.get("credential_id")
    if credential_id is not None:
        credentials.of_kind(project_id, credential_id, CredentialKind.GIT, "source.credential_id")
    return {
        "source_type": kind,
        "url": source["url"],
        "branch": source.get("branch") or DEFAULT_BRANCH,
        "credential_id": credential_id,
    }


def create(actor: Actor, project_id: int, data: dict[str, Any]) -> Repository:
    require(actor, project_id, Action.ADMIN)
    source = data.pop("source")
    return records.save(
        Repository(project_id=project_id, created_by=actor.username, **data, **columns(project_id, source))
    )


def update(repository: Repository, changes: dict[str, Any]) -> Repository:
    if "source" in changes:
        source = changes.pop("source")
        if source["type"] != repository.source_type:
            raise Invalid("a repository's source type cannot change: make a new repository", "source.type")
        changes.update(columns(repository.project_id, source))
    return records.update(repository, changes)


def in_use(repository: Repository) -> list[int]:
    """The job instances not ended yet that run or sync the repository."""
    jobs = db.session.scalars(
        select(JobInstance).where(
            JobInstance.project_id == repository.project_id, JobInstance.status.not_in(RUN_FINAL)
        )
    ).all()
    return [
        job.id for job in jobs if any(step.spec.get("repository_id") == repository.id for step in job.steps)
    ]


def remove(repository: Repository) -> None:
    """Delete a repository no running job uses, with its files."""
    running = in_use(repository)
    if running:
        raise Conflict(
            f"job instance {', '.join(map(str, running))} uses repository {repository.name!r}: "
            "delete it once they have ended",
            "id",
        )
    directory = directory_of(repository.id)
    records.delete(repository)
    remove_tree(directory)


def receive_archive(
    actor: Actor, repository: Repository, declared_bytes: int | None, body: BinaryIO
) -> Repository:
    """Keep an uploaded archive for the next sync once every entry of it passed the checks; a refused one
    leaves nothing behind."""
    require(actor, repository.project_id, Action.ADMIN)
    if repository.source_type != SourceType.ARCHIVE:
        raise Conflict(f"repository {repository.name!r} takes its content from git", "source.type")
    config = settings()
    if declared_bytes is not None and declared_bytes > config.archive_max_bytes:
        raise TooLarge(f"the archive is larger than the limit of {config.archive_max_bytes} bytes", "archive")
    directory = directory_of(repository.id)
    incoming = files.Incoming(directory, config.archive_max_bytes)
    try:
        incoming.fill(body)
        incoming.close()
        try:
            archives.inspect(incoming.path, config.unpacked_max_bytes, REPOSITORY_ENTRIES_MAX)
        except archives.ArchiveRefused as exc:
            raise (TooLarge if exc.too_large else Invalid)(exc.message, "archive") from exc
        os.replace(incoming.path, directory / ARCHIVE_FILE)
    except BaseException:
        incoming.discard()
        raise
    repository.archive_sha256 = incoming.digest.hexdigest()
    repository.archive_size = incoming.size
    repository.archive_uploaded_at = utcnow()
    repository.archive_uploaded_by = actor.username
    db.session.commit()
    return repository


def revision_of(repository: Repository, revision: str | None, field: str = "revision") -> RepositoryRevision:
    """A kept revision of the repository (a commit id may be shortened to 7 characters or more), or the
    current one when none is named."""
    if revision is None:
        current = repository.current_revision
        if current is None:
            raise Conflict(f"repository {repository.name!r} has not been synced yet: sync it first", field)
        return current
    matches = [
        row for row in repository.revisions if row.revision == revision or (
            len(revision) >= 7 and row.revision.startswith(revision)
        )
    ]  # fmt: skip
    if len(matches) != 1:
        kept = ", ".join(row.revision[:12] for row in repository.revisions) or "none"
        raise Invalid(
            f"revision {revision!r} is not a kept revision of {repository.name!r} (kept: {kept})", field
        )
    return matches[0]


def discovery_of(actor: Actor, project_id: int, repository_id: int, revision: str | None) -> dict[str, Any]:
    """What a revision holds: playbooks, the other YAML files with why each is not one, inventories, and
    whether it has an ansible.cfg."""
    require(actor, project_id, Action.READ)
    row = revision_of(records.get(Repository, repository_id, project_id), revision)
    return {"revision": row.revision, **row.discovery}
