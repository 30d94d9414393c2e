"""The file store: uploads written to disk as they arrive with their sha256, downloads, deletion, retention.

A stored file's bytes live at files/<project id>/<random name> under the data dir; the name the user gave
is kept in the database only, and becomes a path on target hosts, never on the controller.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import unicodedata
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Select, delete, or_, select

from app.config import Settings
from app.config import current as settings
from app.extensions import db
from app.models import JobInstance, Project, StoredFile
from app.models.base import utcnow
from app.services import records
from app.services.access import Action, Actor, require
from app.services.errors import Invalid, TooLarge
from app.status import RUN_FAILING, RUN_FINAL

CHUNK_BYTES = 1024 * 1024
NAME_MAX_BYTES = 255
# What a multipart body may hold beyond the file: boundaries, part headers, small fields.
MULTIPART_ENVELOPE_BYTES = 64 * 1024
FAILED_STAGING_KEPT = timedelta(days=1)


def checked_name(name: str | None, field: str = "name") -> str:
    """A file name that stays one plain entry in the target directory, or Invalid naming `field`.

    Spaces, quotes, unicode and leading dashes are fine; separators, NUL, control characters,
    "." and ".." are not, so no name can reach outside the directory it is written to.
    """
    if not name:
        raise Invalid("give the file a name", field)
    if "/" in name or "\\" in name:
        raise Invalid(f"{name!r} is a path: give a plain file name, without / or \\", field)
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise Invalid("a file name cannot hold NUL or other control characters", field)
    if name in (".", ".."):
        raise Invalid(f"{name!r} is not a file name", field)
    if len(name.encode()) > NAME_MAX_BYTES:
        raise Invalid(f"a file name is at most {NAME_MAX_BYTES} bytes of UTF-8", field)
    return name


class Incoming:
    """A file being written to the store as its bytes arrive, hashed and counted on the way."""

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.storage_name = secrets.token_hex(16)
        self.path = directory / self.storage_name
        self.limit = limit
        self.size = 0
        self.digest = hashlib.sha256()
        self.sha1 = hashlib.sha1()
        self.handle = self.path.open("xb")

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"the file is larger than the limit of {self.limit} bytes", "file")
        self.digest.update(chunk)
        self.sha1.update(chunk)
        return self.handle.write(chunk)

    def fill(self, stream: BinaryIO) -> None:
        while chunk := stream.read(CHUNK_BYTES):
            self.write(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def close(self) -> None:
        self.handle.close()

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)


def upload_body_limit() -> int:
    """The largest request body an upload may have: the file, and a multipart envelope around it."""
    return settings().file_max_bytes + MULTIPART_ENVELOPE_BYTES


def require_upload(actor: Actor, project_id: int, declared_bytes: int | None) -> None:
    """Refuse an upload before reading its body: no right to upload, or a declared size over the limit."""
    require(actor, project_id, Action.OPERATE)
    if declared_bytes is not None and declared_bytes > upload_body_limit():
        raise TooLarge(f"the file is larger than the limit of {settings().file_max_bytes} bytes", "file")


def receive(project_id: int) -> Incoming:
    config = settings()
    return Incoming(config.files_dir / str(project_id), config.file_max_bytes)


def store(actor: Actor, project_id: int, name: str | None, incoming: Incoming) -> StoredFile:
    """Record a fully received file; on any refusal its bytes are removed."""
    try:
        require(actor, project_id, Action.OPERATE)
        incoming.close()
        row = StoredFile(
            project_id=project_id,
            name=checked_name(name),
            storage_name=incoming.storage_name,
            size=incoming.size,
            sha256=incoming.digest.hexdigest(),
            sha1=incoming.sha1.hexdigest(),
            uploaded_by=actor.username,
        )
        db.session.add(row)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        incoming.discard()
        raise
    return row


def path_of(row: StoredFile, config: Settings | None = None) -> Path:
    return (config or settings()).files_dir / str(row.project_id) / row.storage_name


def files_query(project_id: int, filters: dict) -> Select:
    query = select(StoredFile).where(StoredFile.project_id == project_id)
    if "name" in filters:
        query = query.where(StoredFile.name == filters["name"])
    return query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc())


def remove(actor: Actor, project_id: int, file_id: int) -> None:
    require(actor, project_id, Action.OPERATE)
    row = records.get(StoredFile, file_id, project_id)
    path = path_of(row)
    records.delete(row)
    path.unlink(missing_ok=True)


def housekeep(config: Settings) -> int:
    """Delete stored files past the retention or of deleted projects, and staging dirs of ended
    transfers; returns how many stored files past the retention were deleted."""
    removed = 0
    if config.file_retention_days:
        cutoff = utcnow() - timedelta(days=config.file_retention_days)
        old = db.session.scalars(select(StoredFile).where(StoredFile.created_at < cutoff)).all()
        for row in old:
            path_of(row, config).unlink(missing_ok=True)
        db.session.execute(delete(StoredFile).where(StoredFile.id.in_([row.id for row in old])))
        db.session.commit()
        removed = len(old)
    if config.files_dir.is_dir():
        # A deleted project's rows went with it; its bytes go here.
        stored = {int(path.name): path for path in config.files_dir.iterdir() if path.name.isdigit()}
        alive = set(db.session.scalars(select(Project.id).where(Project.id.in_(stored))).all())
        for project_id in set(stored) - alive:
            shutil.rmtree(stored[project_id], ignore_errors=True)
    if config.staging_dir.is_dir():
        staged = {int(path.name): path for path in config.staging_dir.iterdir() if path.name.isdigit()}
        ended = db.session.scalars(
            select(JobInstance.id).where(
                JobInstance.id.in_(staged),
                JobInstance.status.in_(RUN_FINAL),
                # A failed step can be retried: its job keeps what it fetched for a while.
                or_(
                    JobInstance.status.not_in(RUN_FAILING),
                    JobInstance.ended_at < utcnow() - FAILED_STAGING_KEPT,
                ),
            )
        ).all()
        gone = set(staged) - set(
            db.session.scalars(select(JobInstance.id).where(JobInstance.id.in_(staged))).all()
        )
        for job_id in {*ended, *gone}:
            shutil.rmtree(staged[job_id], ignore_errors=True)
        db.session.rollback()
    return removed
