"""Playbook repositories: Ansible content brought in unchanged from git or an uploaded archive, and the
revisions it was synced to (one directory each under the data dir)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, utcnow


class SourceType(StrEnum):
    GIT = "git"
    ARCHIVE = "archive"


class Repository(db.Model):
    __tablename__ = "repository"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    source_type: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(Text)
    branch: Mapped[str | None] = mapped_column(String(255))
    credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("credential.id", ondelete="SET NULL"), index=True
    )
    # The last archive uploaded: what the next sync unpacks.
    archive_sha256: Mapped[str | None] = mapped_column(String(64))
    archive_size: Mapped[int | None] = mapped_column(BigInteger)
    archive_uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archive_uploaded_by: Mapped[str | None] = mapped_column(String(64))
    # A launch syncs first when the current revision is older than this many seconds.
    sync_on_launch: Mapped[bool] = mapped_column(Boolean, default=False)
    sync_cache_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # The revision runs use unless told otherwise (no foreign key: revisions point back at repositories).
    current_revision_id: Mapped[int | None] = mapped_column(Integer)
    last_sync_job_id: Mapped[int | None] = mapped_column(ForeignKey("job_instance.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def source(self) -> dict:
        if self.source_type == SourceType.GIT:
            return {
                "type": self.source_type,
                "url": self.url,
                "branch": self.branch,
                "credential_id": self.credential_id,
            }
        return {"type": self.source_type}

    @property
    def current_revision(self) -> RepositoryRevision | None:
        if self.current_revision_id is None:
            return None
        return db.session.get(RepositoryRevision, self.current_revision_id)

    @property
    def revisions(self) -> list[RepositoryRevision]:
        """The kept revisions, newest first."""
        return list(
            db.session.scalars(
                select(RepositoryRevision)
                .where(RepositoryRevision.repository_id == self.id)
                .order_by(RepositoryRevision.synced_at.desc(), RepositoryRevision.id.desc())
            )
        )

    @property
    def last_sync(self) -> dict | None:
        """The last sync: its job instance's status and times, its error and log."""
        from app.models.job import JobInstance

        job = db.session.get(JobInstance, self.last_sync_job_id) if self.last_sync_job_id else None
        if job is None or not job.steps:
            return None
        step = job.steps[0]
        errors = [piece.error for piece in step.slices if piece.error]
        return {
            "job_instance_id": job.id,
            "status": job.status,
            "launched_by": job.launched_by,
            "started_at": job.started_at,
            "ended_at": job.ended_at,
            "error": errors[0] if errors else None,
            "log": step.output,
        }


class RepositoryRevision(db.Model):
    """One synced revision: a commit of the branch, or an archive by its sha256."""

    __tablename__ = "repository_revision"
    __table_args__ = (UniqueConstraint("repository_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), index=True)
    revision: Mapped[str] = mapped_column(String(64))
    # The commit's subject, or the archive's size.
    summary: Mapped[str] = mapped_column(Text, default="")
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    synced_by: Mapped[str] = mapped_column(String(64), default="")
    job_instance_id: Mapped[int | None] = mapped_column(ForeignKey("job_instance.id", ondelete="SET NULL"))
    log: Mapped[str] = mapped_column(Text, default="")
    # What discovery found in it (app/execution/discovery.py), and the installed requirements' cache keys.
    discovery: Mapped[dict] = mapped_column(JSON, default=dict)
    requirements: Mapped[dict] = mapped_column(JSON, default=dict)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
